"""API key authentication in front of the /v1 and /api/v1 routes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mailcast.accounts import service as accounts
from mailcast.api.errors import error_response
from mailcast.api.middleware import API_PREFIXES, client_address
from mailcast.errors import MailcastError, Unauthorized


class ApiKeyAuth:
    """Authenticates /v1 and /api/v1 callers, within their rate limits (`RateLimits`): an address
    past its failed key attempts is refused before any lookup, then each key and account."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        limits = state.limits
        address = client_address(scope)
        header = Headers(scope=scope).get("authorization", "")
        try:
            if limits is not None:
                await limits.refuse_failed_keys(address)
            try:
                async with state.sessions() as session:
                    principal = await accounts.authenticate(session, header, state.clock())
                    await session.commit()
            except Unauthorized:
                if limits is not None:
                    await limits.failed_key(address)
                raise
            if limits is not None:
                await limits.caller(
                    principal.key_id,
                    principal.account_id,
                    lambda: _plan(state.sessions, principal.account_id),
                )
        except MailcastError as exc:
            await error_response(exc, scope["path"])(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _plan(sessions: async_sessionmaker[AsyncSession], account_id: str) -> str:
    async with sessions() as session:
        return await accounts.plan_of(session, account_id)
