from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db import owned
from mailcast.db.models import Domain


async def get(session: AsyncSession, account_id: str, domain_id: str) -> Domain | None:
    return await owned.get(session, Domain, account_id, domain_id)


async def get_locked(session: AsyncSession, account_id: str, domain_id: str) -> Domain | None:
    """Locked until the transaction ends: a delete of it waits (SQLite's writers take turns
    anyway)."""
    stmt = (
        select(Domain)
        .where(Domain.id == domain_id, Domain.account_id == account_id)
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def by_name(session: AsyncSession, account_id: str, name: str) -> Domain | None:
    stmt = select(Domain).where(Domain.account_id == account_id, Domain.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[Domain]:
    return await owned.page(session, Domain, account_id, limit, cursor)


async def delete_one(session: AsyncSession, account_id: str, domain_id: str) -> bool:
    return await owned.delete_one(session, Domain, account_id, domain_id)


async def private_keys(session: AsyncSession) -> list[tuple[str, str]]:
    """Every domain's (id, stored DKIM private key), of every account."""
    rows = await session.execute(select(Domain.id, Domain.dkim_private_key).order_by(Domain.id))
    return [(domain_id, stored) for domain_id, stored in rows]


async def set_private_key(session: AsyncSession, domain_id: str, stored: str) -> None:
    await session.execute(
        update(Domain).where(Domain.id == domain_id).values(dkim_private_key=stored)
    )
