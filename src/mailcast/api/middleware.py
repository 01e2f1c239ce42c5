"""Pure ASGI middleware: request body limit and API-key authentication.

Authentication runs before the body is parsed, so an anonymous caller learns nothing
(not even whether its JSON was valid) beyond the 401."""

from __future__ import annotations

import contextlib
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailcast.api.errors import error_response
from mailcast.errors import MailcastError, PayloadTooLarge, ValidationFailed

API_PREFIXES = ("/v1/", "/api/v1/")


class _TooLarge(Exception):
    pass


class NoNulInUrl:
    """A NUL in a path or query parameter can only be an attack or a bug; no database stores it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            await error_response(
                ValidationFailed("URLs must not contain NUL characters"),
                scope["path"].replace("\x00", ""),
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """`overrides`: other limits by path, each a pattern the whole path matches."""

    def __init__(self, app: ASGIApp, default_limit: int, overrides: dict[str, int]) -> None:
        self.app = app
        self.default_limit = default_limit
        self.overrides = [(re.compile(pattern), limit) for pattern, limit in overrides.items()]

    def _limit(self, path: str) -> int:
        for pattern, limit in self.overrides:
            if pattern.fullmatch(path):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"].rstrip("/"))
        too_large = PayloadTooLarge(
            f"The request body is larger than {limit} bytes", {"limit_bytes": limit}
        )
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await error_response(too_large, scope["path"])(scope, receive, send)
            return

        received = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Whatever the app makes of the cut-off body, the client gets the 413 below.
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if exceeded:
                if not replaced:
                    replaced = True
                    await error_response(too_large, scope["path"])(scope, receive, send)
                return
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if exceeded and not replaced:
            await error_response(too_large, scope["path"])(scope, receive, send)


class AddressLimit:
    """Unauthenticated posts (dashboard sign-in, unsubscribe) within a client address's limits."""

    _PATHS = (("/dashboard/login", "sign-in"), ("/u/", "unsubscribe"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = scope["app"].state.limits if scope["type"] == "http" else None
        if limits is not None and scope["method"] == "POST":
            for prefix, what in self._PATHS:
                if scope["path"].startswith(prefix):
                    try:
                        await limits.unauthenticated(what, client_address(scope))
                    except MailcastError as exc:
                        await error_response(exc, scope["path"])(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"
