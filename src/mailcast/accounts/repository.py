from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db.models import Account, AccountUsage, ApiKey, LoginFailure, User, WebSession
from mailcast.db.owned import paginate_query
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


async def list_keys(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    return list((await session.execute(paginate_query(stmt, ApiKey.id, limit, cursor))).scalars())


async def get_key(session: AsyncSession, account_id: str, key_id: str) -> ApiKey | None:
    stmt = select(ApiKey).where(
        ApiKey.id == key_id, ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def usage(session: AsyncSession, account_id: str, period: str) -> int:
    stmt = select(AccountUsage.marketing_emails).where(
        AccountUsage.account_id == account_id, AccountUsage.period == period
    )
    return (await session.execute(stmt)).scalar_one_or_none() or 0


async def add_usage(session: AsyncSession, account_id: str, period: str, emails: int) -> None:
    insert = insert_for(session)
    stmt = insert(AccountUsage).values(
        account_id=account_id, period=period, marketing_emails=emails
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[AccountUsage.account_id, AccountUsage.period],
        set_={"marketing_emails": AccountUsage.marketing_emails + emails},
    )
    await session.execute(stmt)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def user(session: AsyncSession, account_id: str, user_id: str) -> User | None:
    stmt = select(User).where(User.id == user_id, User.account_id == account_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def users_of(session: AsyncSession, account_id: str) -> list[User]:
    stmt = select(User).where(User.account_id == account_id).order_by(User.email)
    return list((await session.execute(stmt)).scalars())


async def failures_since(
    session: AsyncSession, email: str, address: str, since: datetime
) -> tuple[int, int]:
    """Failed sign-ins since `since`: (for this email, from this address)."""
    by_email = (
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.email == email, LoginFailure.at > since)
    )
    by_address = (
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.address == address, LoginFailure.at > since)
    )
    return (await session.execute(by_email)).scalar_one(), (
        await session.execute(by_address)
    ).scalar_one()


async def oldest_failure_since(
    session: AsyncSession, email: str, address: str, since: datetime
) -> datetime | None:
    stmt = select(func.min(LoginFailure.at)).where(
        (LoginFailure.email == email) | (LoginFailure.address == address), LoginFailure.at > since
    )
    return (await session.execute(stmt)).scalar_one()


async def add_failure(
    session: AsyncSession, email: str, address: str, at: datetime, forget_before: datetime
) -> None:
    """Record a failed sign-in; the ones older than the window are forgotten on the way."""
    await session.execute(delete(LoginFailure).where(LoginFailure.at <= forget_before))
    await session.execute(insert(LoginFailure).values(email=email, address=address, at=at))


async def clear_failures(session: AsyncSession, email: str) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.email == email))


async def web_session(session: AsyncSession, session_id: str) -> tuple[WebSession, User] | None:
    stmt = (
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.id == session_id)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def delete_web_session(session: AsyncSession, session_id: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.id == session_id))


async def delete_web_sessions_of(session: AsyncSession, user_id: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
