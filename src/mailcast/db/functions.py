"""What the two databases spell differently, below the stores: a transaction's try-lock, fresh
planner statistics and the seconds between two times."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mailcast.db.lists import is_postgresql
from mailcast.db.types import UTCDateTime

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
_TRY_LOCK_NAMED = text("SELECT pg_try_advisory_xact_lock(:key, hashtext(:name))")


async def try_lock(session: AsyncSession, key: int, name: str | None = None) -> bool:
    """Whether this transaction now holds the lock `key` (of `name`, if given) until it ends;
    False at once when another holds it. SQLite writes one transaction at a time, so there it is
    always True."""
    if not is_postgresql(session):
        return True
    if name is None:
        held = await session.execute(_TRY_LOCK, {"key": key})
    else:
        held = await session.execute(_TRY_LOCK_NAMED, {"key": key, "name": name})
    return bool(held.scalar())


async def analyze(executor: AsyncSession | AsyncConnection, *tables: str) -> None:
    """PostgreSQL: the planner's statistics of these tables sampled again. SQLite's planner keeps
    none that go stale, so there it does nothing."""
    if is_postgresql(executor):
        await executor.execute(text(f"ANALYZE {', '.join(tables)}"))


def seconds_since(session: AsyncSession, column: Any, start: datetime) -> ColumnElement[Any]:
    """The seconds from `start` to the time in `column`."""
    if is_postgresql(session):
        return func.extract("epoch", column - literal(start, UTCDateTime()))
    return func.strftime("%s", column) - int(start.timestamp())
