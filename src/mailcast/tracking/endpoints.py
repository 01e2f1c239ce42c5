"""Public tracking endpoints: no API key; they never fail toward the reader."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from mailcast.errors import NotFound
from mailcast.tracking import service

log = logging.getLogger("mailcast.tracking")
router = APIRouter(include_in_schema=False)
pages = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


def _page(template: str, status: int = 200, **values) -> HTMLResponse:
    return HTMLResponse(pages.get_template(template).render(**values), status_code=status,
                        headers={**_NO_STORE, "Referrer-Policy": "no-referrer"})


@router.get("/t/o/{token}.gif")
async def open_pixel(token: str, request: Request) -> Response:
    """The open pixel: always the image, recorded or not."""
    state = request.app.state
    try:
        async with state.sessions() as session:
            if await service.record_open(session, state.codec, token, request.headers.get("user-agent"),
                                         state.clock(), state.settings.machine_open_window_seconds):
                await session.commit()
    except NotFound:
        pass
    except Exception:
        log.exception("could not record an open")
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@router.get("/t/c/{token}")
async def click(token: str, request: Request) -> Response:
    """302 to the link's stored target; a tampered or unknown token is a 404 and records nothing."""
    state = request.app.state
    try:
        async with state.sessions() as session:
            target = await service.resolve_click(session, state.codec, token, request.headers.get("user-agent"),
                                                 state.clock(), state.settings.machine_open_window_seconds)
            await session.commit()
    except NotFound:
        return _page("invalid.html", 404, title="Link not valid")
    return RedirectResponse(target, status_code=302, headers=_NO_STORE)


@router.get("/u/{token}")
async def unsubscribe_page(token: str, request: Request) -> Response:
    """Shows what the button will do; a GET never unsubscribes (link scanners follow GETs)."""
    try:
        async with request.app.state.sessions() as session:
            info = await service.unsubscribe_info(session, request.app.state.codec, token)
    except NotFound:
        return _page("invalid.html", 404, title="Link not valid")
    return _page("unsubscribe.html", title="Unsubscribe", email=info.email, campaign=info.campaign_name,
                 unsubscribe_url=info.unsubscribe_url, already=info.already, done=False)


@router.post("/u/{token}")
async def unsubscribe(token: str, request: Request) -> Response:
    """The button and RFC 8058 one-click (List-Unsubscribe=One-Click): idempotent, no cookies."""
    state = request.app.state
    try:
        async with state.sessions() as session:
            info = await service.unsubscribe(session, state.codec, token, state.clock())
            await session.commit()
    except NotFound:
        return _page("invalid.html", 404, title="Link not valid")
    return _page("unsubscribe.html", title="Unsubscribed", email=info.email, campaign=info.campaign_name,
                 unsubscribe_url=info.unsubscribe_url, already=info.already, done=True)
