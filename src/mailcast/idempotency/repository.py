"""SQL of idempotency keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db.models import IdempotencyKey


async def get(session: AsyncSession, account_id: str, key: str) -> IdempotencyKey | None:
    stmt = select(IdempotencyKey).where(
        IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def begin(
    session: AsyncSession, account_id: str, key: str, now: datetime, expires: datetime
) -> bool:
    """Mark the key as running; False when another request holds it already (the key's row
    exists)."""
    try:
        async with session.begin_nested():
            await session.execute(
                insert(IdempotencyKey).values(
                    account_id=account_id, key=key, created_at=now, expires_at=expires
                )
            )
    except IntegrityError:
        return False
    return True


async def finish(
    session: AsyncSession,
    account_id: str,
    key: str,
    request_hash: str,
    status: int,
    content_type: str | None,
    body: bytes,
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
        .values(request_hash=request_hash, status_code=status, content_type=content_type, body=body)
    )


async def forget(session: AsyncSession, account_id: str, key: str) -> None:
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
        )
    )
