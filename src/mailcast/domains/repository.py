from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.api.pagination import paginate_query
from mailcast.db.models import Domain


async def get(session: AsyncSession, account_id: str, domain_id: str) -> Domain | None:
    stmt = select(Domain).where(Domain.id == domain_id, Domain.account_id == account_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def by_name(session: AsyncSession, account_id: str, name: str) -> Domain | None:
    stmt = select(Domain).where(Domain.account_id == account_id, Domain.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(session: AsyncSession, account_id: str, limit: int, cursor: str | None) -> list[Domain]:
    stmt = select(Domain).where(Domain.account_id == account_id)
    return list((await session.execute(paginate_query(stmt, Domain.id, limit, cursor))).scalars())


async def delete_one(session: AsyncSession, account_id: str, domain_id: str) -> bool:
    result = await session.execute(delete(Domain).where(Domain.id == domain_id, Domain.account_id == account_id))
    return result.rowcount > 0
