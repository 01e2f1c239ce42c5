"""Public tracking endpoints: no API key; they never fail toward the reader."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import State
from starlette.types import Scope, Send

from mailcast.errors import NotFound
from mailcast.tracking import service
from mailcast.tracking.classify import Hit

log = logging.getLogger("mailcast.tracking")
router = APIRouter(include_in_schema=False)
pages = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape()
)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


def _page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(
        pages.get_template(template).render(**values),
        status_code=status,
        headers={**_NO_STORE, "Referrer-Policy": "no-referrer"},
    )


@router.get("/t/o/{token}.gif")
async def open_pixel(token: str, request: Request) -> Response:
    """The open pixel: always the image, recorded or not."""
    await record_open(request.app.state, token, request.headers.get("user-agent"))
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@router.get("/t/c/{token}")
async def click(token: str, request: Request) -> Response:
    """302 to the link's stored target; a tampered or unknown token is a 404 and records nothing."""
    target = await record_click(request.app.state, token, request.headers.get("user-agent"))
    if target is None:
        return _page("invalid.html", 404, title="Link not valid")
    return RedirectResponse(target, status_code=302, headers=_NO_STORE)


async def record_open(state: State, token: str, user_agent: str | None) -> None:
    hit = service.open_hit(state.codec, token, user_agent, state.clock())
    if hit is not None:
        await _record_open(state, hit)


async def _record_open(state: State, hit: Hit) -> None:
    try:
        await state.events.record(hit)
    except Exception:  # the reader still gets the image
        log.exception("could not record an open")


async def record_click(state: State, token: str, user_agent: str | None) -> str | None:
    """The target, once the click is recorded; None for a link that is not valid."""
    try:
        hit: Hit = await state.clicks.resolve(state.sessions, token, user_agent, state.clock())
    except NotFound:
        return None
    try:
        await state.events.record(hit)
    except Exception:  # the reader still gets where the link goes
        log.exception("could not record a click")
    return hit.url


class TrackingFastPath:
    """The pixel and click routes above, matched with those routes' own patterns and methods and
    answered before the framework's routing, validation and dependency machinery. Everything
    else, any click whose link is not valid (the error page), and a click whose look-up failed go
    on to the application, whose routes answer them."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._opens: dict[str, int] = {}  # open tokens decoded: their delivery
        routes = {route.name: route for route in router.routes if isinstance(route, APIRoute)}
        # Each route's own pattern and methods (`Route.matches` would also build a child scope).
        self._served = tuple(
            (routes[name].path_regex, routes[name].methods or set(), serve)
            for name, serve in (("open_pixel", self._pixel), ("click", self._click))
        )

    def _open_hit(self, token: str, scope: Scope) -> Hit | None:
        """The pixel load; None for a token that is not an open token of ours. A token seen before
        is not decoded again (a mail client loads the image each time the message is shown)."""
        delivery_id = self._opens.get(token)
        if delivery_id is not None:
            return Hit("open", delivery_id, self.state.clock(), _user_agent(scope))
        hit = service.open_hit(self.state.codec, token, _user_agent(scope), self.state.clock())
        if hit is not None:
            if len(self._opens) >= _OPEN_TOKENS:
                self._opens.clear()
            self._opens[token] = hit.delivery_id
        return hit

    async def answer(self, scope: Scope, send: Send) -> bool:
        """True when the request was answered here."""
        if scope["type"] != "http":
            return False
        for pattern, methods, serve in self._served:
            match = pattern.match(scope["path"])
            if match is not None and scope["method"] in methods:
                return await serve(match["token"], scope, send)
        return False

    async def _pixel(self, token: str, scope: Scope, send: Send) -> bool:
        hit = self._open_hit(token, scope)
        if hit is not None and not self.state.events.take(hit):  # taken: buffered or counted
            await _record_open(self.state, hit)
        await send(_PIXEL_START)
        await send(_PIXEL_BODY)
        return True

    async def _click(self, token: str, scope: Scope, send: Send) -> bool:
        try:
            target = await record_click(self.state, token, _user_agent(scope))
        except Exception:  # the database: the application's route tries again and reports it
            log.exception("could not look up a click")
            return False
        if target is None:
            return False
        location = quote(target, safe=":/%#?=@[]!$&'()*+,;")  # what Starlette's redirect writes
        await _answer(send, 302, [(b"location", location.encode("latin-1")), *_FAST_NO_STORE], b"")
        return True


_OPEN_TOKENS = 50_000  # decoded open tokens a process keeps (forgotten all at once past that)
_FAST_NO_STORE = [(k.lower().encode(), v.encode()) for k, v in _NO_STORE.items()]
# The pixel's answer never changes: the same two messages every time (the server only reads them).
_PIXEL_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"image/gif"),
        *_FAST_NO_STORE,
        (b"content-length", str(len(PIXEL)).encode()),
    ],
}
_PIXEL_BODY = {"type": "http.response.body", "body": PIXEL}


_AGENTS: dict[bytes, str] = {}  # user agents decoded: one string for all the hits of each
_AGENTS_KEPT = 4_096  # mail clients send a few hundred distinct ones; past this, decoded every time


def _user_agent(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"user-agent":
            agent = _AGENTS.get(value)
            if agent is None:
                agent = value.decode("latin-1")
                if len(_AGENTS) < _AGENTS_KEPT:
                    _AGENTS[value] = agent
            return agent
    return None


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@router.get("/u/{token}")
async def unsubscribe_page(token: str, request: Request) -> Response:
    """Shows what the button will do; a GET never unsubscribes (link scanners follow GETs)."""
    try:
        async with request.app.state.sessions() as session:
            info = await service.unsubscribe_info(session, request.app.state.codec, token)
    except NotFound:
        return _page("invalid.html", 404, title="Link not valid")
    return _page(
        "unsubscribe.html",
        title="Unsubscribe",
        email=info.email,
        campaign=info.campaign_name,
        unsubscribe_url=info.unsubscribe_url,
        already=info.already,
        done=False,
    )


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
    return _page(
        "unsubscribe.html",
        title="Unsubscribed",
        email=info.email,
        campaign=info.campaign_name,
        unsubscribe_url=info.unsubscribe_url,
        already=info.already,
        done=True,
    )
