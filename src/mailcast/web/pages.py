"""Rendering the dashboard's templates (Jinja2, escaping on), with what every page shows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from mailcast.accounts.users import SignedIn
from mailcast.web.auth import CSRF_FIELD

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(),
    trim_blocks=True,
    lstrip_blocks=True,
)

# Every dashboard answer: no caching of account data, no framing by other sites, no referrer sent
# on.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
}


def when(value: datetime | None) -> str:
    """A time as the page shows it: UTC, to the minute (a script on the page shows it in the
    viewer's zone)."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def percent(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f}%" if whole else "0.0%"


_env.filters.update(when=when, iso=iso)
_env.globals.update(percent=percent, csrf_field=CSRF_FIELD)


def page(
    request: Request,
    template: str,
    signed: SignedIn | None = None,
    http_status: int = 200,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    context = {"request": request, "signed": signed, "path": request.url.path, **values}
    if signed is not None:
        context.update(account_id=signed.user.account_id, csrf=signed.session.csrf)
    return HTMLResponse(
        _env.get_template(template).render(**context),
        status_code=http_status,
        headers={**HEADERS, **(headers or {})},
    )


def fragment(template: str, **values: Any) -> str:
    return _env.get_template(template).render(**values)
