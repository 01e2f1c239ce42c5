"""SQL of CSV import jobs (contact_imports) and their rejected rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import ColumnElement

from mailcast.contacts.csvfile import Rejected
from mailcast.db import owned
from mailcast.db.models import Account, ContactImport, ContactImportError, table_of
from mailcast.db.rows import changed
from mailcast.db.types import UTCDateTime

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


async def get(session: AsyncSession, account_id: str, import_id: str) -> ContactImport | None:
    return await owned.get(session, ContactImport, account_id, import_id)


async def page(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[ContactImport]:
    return await owned.page(session, ContactImport, account_id, limit, cursor)


def _takeable(now: datetime) -> ColumnElement[bool]:
    """Waiting, or running under a lease that ran out (its worker stopped)."""
    return or_(
        ContactImport.status == QUEUED,
        and_(ContactImport.status == RUNNING, ContactImport.lease_expires_at < now),
    )


async def candidates(
    session: AsyncSession, now: datetime, limit: int = 10
) -> list[tuple[str, str]]:
    """(import, account) of jobs a worker may take, oldest first."""
    stmt = (
        select(ContactImport.id, ContactImport.account_id)
        .where(_takeable(now))
        .order_by(ContactImport.created_at, ContactImport.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in await session.execute(stmt)]


async def lock_account(session: AsyncSession, account_id: str) -> None:
    """Claims of one account's imports take turns (one import of an account runs at a time)."""
    await session.execute(select(Account.id).where(Account.id == account_id).with_for_update())


async def running_elsewhere(
    session: AsyncSession, account_id: str, import_id: str, now: datetime
) -> bool:
    stmt = (
        select(ContactImport.id)
        .where(
            ContactImport.account_id == account_id,
            ContactImport.id != import_id,
            ContactImport.status == RUNNING,
            ContactImport.lease_expires_at >= now,
        )
        .limit(1)
    )
    return (await session.execute(stmt)).first() is not None


async def take(
    session: AsyncSession, import_id: str, owner: str, now: datetime, expires: datetime
) -> bool:
    """Guarded: only while it is still takeable, so of two workers one gets it."""
    stmt = (
        update(ContactImport)
        .where(ContactImport.id == import_id, _takeable(now))
        .values(
            status=RUNNING,
            lease_owner=owner,
            lease_expires_at=expires,
            updated_at=now,
            started_at=func.coalesce(ContactImport.started_at, literal(now, UTCDateTime())),
        )
        .execution_options(synchronize_session=False)
    )
    return changed(await session.execute(stmt)) == 1


async def load(connection: AsyncConnection | AsyncSession, import_id: str) -> dict[str, Any] | None:
    row = (
        await connection.execute(
            select(table_of(ContactImport)).where(ContactImport.id == import_id)
        )
    ).first()
    return None if row is None else dict(row._mapping)


async def set_layout(
    connection: AsyncConnection,
    import_id: str,
    owner: str,
    layout: dict[str, Any],
    offset: int,
    line: int,
    now: datetime,
    expires: datetime,
) -> bool:
    stmt = (
        update(table_of(ContactImport))
        .where(
            ContactImport.id == import_id,
            ContactImport.lease_owner == owner,
            ContactImport.status == RUNNING,
        )
        .values(layout=layout, offset=offset, line=line, lease_expires_at=expires, updated_at=now)
    )
    return changed(await connection.execute(stmt)) == 1


async def advance(
    connection: AsyncConnection,
    import_id: str,
    owner: str,
    expected_offset: int,
    offset: int,
    line: int,
    read: int,
    created: int,
    updated: int,
    rejected: int,
    now: datetime,
    expires: datetime,
) -> bool:
    """The batch's progress, in the batch's transaction, and the lease renewed. Guarded on the
    owner and on where the job stood, so a worker that lost its lease writes nothing (the caller
    rolls back) and no batch is counted twice."""
    table = table_of(ContactImport)
    stmt = (
        update(table)
        .where(
            table.c.id == import_id,
            table.c.lease_owner == owner,
            table.c.status == RUNNING,
            table.c.offset == expected_offset,
        )
        .values(
            offset=offset,
            line=line,
            rows_read=table.c.rows_read + read,
            created=table.c.created + created,
            updated=table.c.updated + updated,
            rejected=table.c.rejected + rejected,
            lease_expires_at=expires,
            updated_at=now,
        )
    )
    return changed(await connection.execute(stmt)) == 1


async def add_errors(
    connection: AsyncConnection, import_id: str, rejected: Sequence[Rejected]
) -> None:
    if rejected:
        await connection.execute(
            insert(table_of(ContactImportError)),
            [
                {
                    "import_id": import_id,
                    "line": r.line,
                    "email": r.email[:320],
                    "reason": r.reason[:2000],
                }
                for r in rejected
            ],
        )


async def release(connection: AsyncConnection, import_id: str, owner: str, now: datetime) -> None:
    """Back to the queue, where it stands (its worker is stopping)."""
    table = table_of(ContactImport)
    await connection.execute(
        update(table)
        .where(table.c.id == import_id, table.c.lease_owner == owner, table.c.status == RUNNING)
        .values(status=QUEUED, lease_owner=None, lease_expires_at=None, updated_at=now)
    )


async def finish(
    connection: AsyncConnection | AsyncSession,
    import_id: str,
    owner: str | None,
    status: str,
    error: str | None,
    now: datetime,
) -> bool:
    table = table_of(ContactImport)
    where = [table.c.id == import_id, table.c.status.in_((QUEUED, RUNNING))]
    if owner is not None:
        where.append(table.c.lease_owner == owner)
    stmt = (
        update(table)
        .where(*where)
        .values(
            status=status,
            error=error,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    return changed(await connection.execute(stmt)) == 1


async def errors(
    session: AsyncSession, import_id: str, chunk: int = 5_000
) -> AsyncIterator[list[tuple[int, str, str]]]:
    """The rejected rows in line order, a chunk at a time (a file can have many)."""
    after = 0
    while True:
        stmt = (
            select(
                ContactImportError.id,
                ContactImportError.line,
                ContactImportError.email,
                ContactImportError.reason,
            )
            .where(ContactImportError.import_id == import_id, ContactImportError.id > after)
            .order_by(ContactImportError.id)
            .limit(chunk)
        )
        rows = (await session.execute(stmt)).all()
        if not rows:
            return
        after = rows[-1][0]
        yield [(line, email, reason) for _, line, email, reason in rows]
