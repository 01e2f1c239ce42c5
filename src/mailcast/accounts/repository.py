from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db.owned import paginate_query
from mailcast.db.models import Account, AccountUsage, ApiKey
from mailcast.db.upsert import insert_for


async def get_account(session: AsyncSession, account_id: str) -> Account | None:
    return await session.get(Account, account_id)


async def lock_account(session: AsyncSession, account_id: str) -> Account | None:
    """Row lock on PostgreSQL; SQLite transactions already hold the write lock (BEGIN IMMEDIATE)."""
    stmt = select(Account).where(Account.id == account_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_accounts(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(Account))).scalar_one()


async def key_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    stmt = select(ApiKey).where(ApiKey.key_hash == key_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def touch_key(session: AsyncSession, key_id: str, now: datetime) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


async def list_keys(session: AsyncSession, account_id: str, limit: int, cursor: str | None) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    return list((await session.execute(paginate_query(stmt, ApiKey.id, limit, cursor))).scalars())


async def get_key(session: AsyncSession, account_id: str, key_id: str) -> ApiKey | None:
    stmt = select(ApiKey).where(ApiKey.id == key_id, ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    return (await session.execute(stmt)).scalar_one_or_none()


async def usage(session: AsyncSession, account_id: str, period: str) -> int:
    stmt = select(AccountUsage.marketing_emails).where(
        AccountUsage.account_id == account_id, AccountUsage.period == period
    )
    return (await session.execute(stmt)).scalar_one_or_none() or 0


async def add_usage(session: AsyncSession, account_id: str, period: str, emails: int) -> None:
    insert = insert_for(session)
    stmt = insert(AccountUsage).values(account_id=account_id, period=period, marketing_emails=emails)
    stmt = stmt.on_conflict_do_update(
        index_elements=[AccountUsage.account_id, AccountUsage.period],
        set_={"marketing_emails": AccountUsage.marketing_emails + emails},
    )
    await session.execute(stmt)
