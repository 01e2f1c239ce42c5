"""FastAPI dependencies: the request's session (the commit boundary), clock, settings, caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, cast

from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.clock import Clock
from mailcast.config import Settings
from mailcast.errors import InsufficientScope, Unauthorized
from mailcast.scopes import Principal, Scope


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        try:
            yield session
            # Commit before the response goes out (scope="function"), so a failed commit
            # is an error response, never a 2xx for work that was not stored.
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def get_clock(request: Request) -> Clock:
    return cast(Clock, request.app.state.clock)


def get_app_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ClockDep = Annotated[Clock, Depends(get_clock)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

_bearer = HTTPBearer(
    auto_error=False, description="An API key: `Authorization: Bearer mc_live_...`"
)


def require(scope: Scope) -> Callable[..., Principal]:
    """The caller, if its key's scope is at least `scope` (authentication itself ran in
    middleware)."""

    def dependency(request: Request, _credentials: Any = Depends(_bearer)) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            raise Unauthorized()
        if not principal.allows(scope):
            raise InsufficientScope(
                details={"required": scope.value, "granted": principal.scope.value}
            )
        return principal

    return dependency


ReadKey = Annotated[Principal, Depends(require(Scope.READ_ONLY))]
SendKey = Annotated[Principal, Depends(require(Scope.SENDING_ACCESS))]
FullKey = Annotated[Principal, Depends(require(Scope.FULL_ACCESS))]


class PageParams:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=100, description="Items per page (1-100)")] = 20,
        cursor: Annotated[
            str | None, Query(max_length=64, description="next_cursor of the previous page")
        ] = None,
    ) -> None:
        self.limit = limit
        self.cursor = cursor


PageDep = Annotated[PageParams, Depends()]
