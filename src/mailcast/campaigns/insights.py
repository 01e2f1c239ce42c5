"""What a campaign's page shows beside its counters: first opens and clicks over time, and
clicks per link. Both aggregate a campaign's opened and clicked deliveries (hundreds of
thousands on a large campaign), so a process keeps each campaign's for a while: half a minute
while it sends, five minutes after. The counters themselves are always read fresh."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.campaigns import repository as repo
from mailcast.campaigns.lifecycle import Status
from mailcast.db.models import Campaign

HOURLY_FOR_HOURS = 48  # then daily
MAX_DAYS = 90
_KEPT = 256
_FRESH_SECONDS = {Status.SENDING: 30.0, Status.PAUSED: 30.0}
_FRESH_DEFAULT = 300.0


@dataclass(frozen=True)
class Insights:
    start: datetime
    seconds: int  # a bucket's length: an hour or a day
    unit: str  # "hour" or "day"
    series: list[tuple[int, int]]  # (first opens, first clicks) per bucket
    links: list[tuple[str, int, int]]  # (url, clicks, people), most clicked first


_cache: dict[tuple[Any, ...], tuple[float, Insights]] = {}


def _window(campaign: Campaign, now: datetime) -> tuple[datetime, int, int, str] | None:
    """Hourly for the first two days after sending started, daily after."""
    if campaign.send_started_at is None:
        return None
    start = campaign.send_started_at.replace(minute=0, second=0, microsecond=0)
    hours = (now - start).total_seconds() / 3600
    if hours <= HOURLY_FOR_HOURS:
        return start, 3600, max(1, min(HOURLY_FOR_HOURS, int(hours) + 1)), "hour"
    return start.replace(hour=0), 86400, max(1, min(MAX_DAYS, int(hours / 24) + 1)), "day"


async def insights(session: AsyncSession, campaign: Campaign, now: datetime) -> Insights | None:
    """None until the campaign starts sending."""
    window = _window(campaign, now)
    if window is None:
        return None
    start, seconds, buckets, unit = window
    key = (campaign.id, start, seconds, buckets)
    kept = _cache.get(key)
    fresh = _FRESH_SECONDS.get(Status(campaign.status), _FRESH_DEFAULT)
    if kept is not None and time.monotonic() - kept[0] < fresh:
        return kept[1]
    found = Insights(
        start,
        seconds,
        unit,
        await repo.engagement_series(session, campaign.id, start, seconds, buckets),
        await repo.clicks_per_link(session, campaign.id),
    )
    if len(_cache) >= _KEPT:
        _cache.clear()
    _cache[key] = (time.monotonic(), found)
    return found
