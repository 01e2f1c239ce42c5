"""Idempotency keys with Stripe's semantics on every POST of the API: the same key and the same
request within 24 hours replays the first answer (status and body) without doing it again; the
same key with another request is 422; a retry while the first is still running is 409. Keys are
per account. An answer of 5xx is not kept: the work did not happen, so a retry may do it."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailcast.api.errors import error_response
from mailcast.errors import Conflict, ValidationFailed
from mailcast.idempotency import repository as repo

HEADER = "idempotency-key"
KEPT = timedelta(hours=24)
RUNNING_AT_MOST = timedelta(minutes=10)  # a first request older than this died with its process
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_BODY_KEPT = 1 << 20  # a larger answer is not replayed (no API answer is that large)


class Idempotency:
    """After authentication (it needs the caller's account); before the endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = (
            Headers(scope=scope).get(HEADER)
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        principal = scope.get("state", {}).get("principal") if key is not None else None
        if principal is None or key is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not _KEY.match(key):
            await error_response(
                ValidationFailed.on(
                    "Idempotency-Key",
                    "1 to 255 printable characters",
                    "Idempotency-Key: 1 to 255 printable characters without spaces",
                ),
                path,
            )(scope, receive, send)
            return
        state = scope["app"].state
        account_id = principal.account_id
        now = state.clock()
        async with state.sessions() as session:
            found = await repo.get(session, account_id, key)
            if found is not None and (
                found.expires_at <= now
                or (found.status_code is None and now - found.created_at > RUNNING_AT_MOST)
            ):
                await repo.forget(session, account_id, key)
                await session.commit()
                found = None
            if found is None:
                began = await repo.begin(session, account_id, key, now, now + KEPT)
                await session.commit()
        if found is not None and found.status_code is None or found is None and not began:
            await error_response(
                Conflict(
                    "A request with this Idempotency-Key is still being answered; retry "
                    "it in a moment",
                    {"idempotency_key": key},
                ),
                path,
            )(scope, receive, send)
            return
        digest = hashlib.sha256(
            f"{scope['method']} "
            f"{path}?{scope.get('query_string', b'').decode('latin-1')}\n".encode()
        )
        if found is not None:  # answered before: the same request gets the same answer
            while True:
                message = await receive()
                digest.update(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            if digest.hexdigest() != found.request_hash:
                await error_response(
                    ValidationFailed.on(
                        "Idempotency-Key",
                        "used with another request",
                        "This Idempotency-Key was used with another request; use a new key for a "
                        "new request",
                    ),
                    path,
                )(scope, receive, send)
                return
            headers = [
                (b"content-type", (found.content_type or "application/json").encode()),
                (b"content-length", str(len(found.body or b"")).encode()),
                (b"idempotent-replayed", b"true"),
            ]
            await send(
                {"type": "http.response.start", "status": found.status_code, "headers": headers}
            )
            await send({"type": "http.response.body", "body": found.body or b""})
            return
        await self._first(scope, receive, send, key, account_id, digest)

    async def _first(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: str,
        account_id: str,
        digest: Any,
    ) -> None:
        state = scope["app"].state
        answer: dict[str, Any] = {
            "status": 500,
            "content_type": None,
            "body": bytearray(),
            "kept": True,
        }

        async def hashing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                digest.update(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["content_type"] = Headers(raw=message.get("headers", [])).get("content-type")
            elif message["type"] == "http.response.body" and answer["kept"]:
                answer["body"] += message.get("body", b"")
                if len(answer["body"]) > _BODY_KEPT:
                    answer["kept"], answer["body"] = False, bytearray()
            await send(message)

        try:
            await self.app(scope, hashing_receive, recording_send)
        finally:
            async with state.sessions() as session:
                if answer["status"] >= 500 or not answer["kept"]:
                    await repo.forget(session, account_id, key)
                else:
                    await repo.finish(
                        session,
                        account_id,
                        key,
                        digest.hexdigest(),
                        answer["status"],
                        answer["content_type"],
                        bytes(answer["body"]),
                    )
                await session.commit()
