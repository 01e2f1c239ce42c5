"""Queries on rows that belong to an account. Every lookup by id is scoped here, in one place:
an id of another account is simply not found."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db.rows import changed


class _Owned(Protocol):
    id: Any
    account_id: Any


M = TypeVar("M", bound=_Owned)


def paginate_query(
    stmt: Select[Any], id_column: Any, limit: int, cursor: str | None
) -> Select[Any]:
    # The cursor is the last id of the previous page: any string is a well-defined position
    # ("everything older than this"), so there is no malformed cursor to refuse.
    if cursor:
        stmt = stmt.where(id_column < cursor)
    return stmt.order_by(id_column.desc()).limit(limit + 1)


async def get(session: AsyncSession, model: type[M], account_id: str, row_id: str) -> M | None:
    stmt = select(model).where(model.id == row_id, model.account_id == account_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def page(
    session: AsyncSession,
    model: type[M],
    account_id: str,
    limit: int,
    cursor: str | None,
    *where: Any,
) -> list[M]:
    stmt = select(model).where(model.account_id == account_id, *where)
    return list((await session.execute(paginate_query(stmt, model.id, limit, cursor))).scalars())


async def delete_one(
    session: AsyncSession, model: type[_Owned], account_id: str, row_id: str
) -> bool:
    stmt = delete(model).where(model.id == row_id, model.account_id == account_id)
    return changed(await session.execute(stmt)) > 0
