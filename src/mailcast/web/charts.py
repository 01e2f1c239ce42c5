"""Opens and clicks over time as a small SVG chart, drawn on the server (no script, no library)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class Bar:
    x: float
    opened_height: float
    clicked_height: float
    label: str
    opened: int
    clicked: int


@dataclass
class Chart:
    width: int
    height: int
    bar_width: float
    bars: list[Bar]
    top: int  # the largest bucket: the scale
    unit: str
    total_opened: int
    total_clicked: int


def series_chart(
    series: list[tuple[int, int]],
    start: datetime,
    seconds: int,
    unit: str,
    width: int = 720,
    height: int = 160,
) -> Chart:
    """`series`: (first opens, first clicks) per bucket of `seconds` from `start`."""
    top = max([max(o, c) for o, c in series] + [1])
    step = width / max(1, len(series))
    bars = []
    for i, (opened, clicked) in enumerate(series):
        at = start + timedelta(seconds=seconds * i)
        label = at.strftime("%d %b %H:00 UTC") if unit == "hour" else at.strftime("%d %b")
        bars.append(
            Bar(
                x=i * step,
                opened_height=height * opened / top,
                clicked_height=height * clicked / top,
                label=label,
                opened=opened,
                clicked=clicked,
            )
        )
    return Chart(
        width,
        height,
        max(1.0, min(step * 0.8, 40.0)),
        bars,
        top,
        unit,
        sum(o for o, _ in series),
        sum(c for _, c in series),
    )
