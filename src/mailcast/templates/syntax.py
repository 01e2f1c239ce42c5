"""Merge tags are Liquid (python-liquid: no code execution). Content is checked when saved."""

from __future__ import annotations

from liquid import Environment
from liquid.exceptions import LiquidError

from mailcast.errors import ValidationFailed

ENV = Environment()


def check_fields(**sources: str | None) -> None:
    """422 listing every field whose merge tags do not parse."""
    problems = []
    for field, source in sources.items():
        if not source:
            continue
        try:
            ENV.parse(source)
        except LiquidError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            problems.append({"field": field, "message": f"template syntax error: {first_line}"})
    if problems:
        raise ValidationFailed(f"{problems[0]['field']}: {problems[0]['message']}", problems)
