from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mailcast.db import owned
from mailcast.db.functions import analyze
from mailcast.db.models import AudienceMember, Contact
from mailcast.db.owned import paginate_query

_CHUNK = 500


async def get(session: AsyncSession, account_id: str, contact_id: str) -> Contact | None:
    return await owned.get(session, Contact, account_id, contact_id)


async def by_email(session: AsyncSession, account_id: str, email: str) -> Contact | None:
    stmt = select(Contact).where(Contact.account_id == account_id, Contact.email == email)
    return (await session.execute(stmt)).scalar_one_or_none()


async def by_emails(
    session: AsyncSession, account_id: str, emails: list[str]
) -> dict[str, Contact]:
    found: dict[str, Contact] = {}
    for start in range(0, len(emails), _CHUNK):
        chunk = emails[start : start + _CHUNK]
        stmt = select(Contact).where(Contact.account_id == account_id, Contact.email.in_(chunk))
        for contact in (await session.execute(stmt)).scalars():
            found[contact.email] = contact
    return found


async def ids_owned(session: AsyncSession, account_id: str, contact_ids: Iterable[str]) -> set[str]:
    """Those of the ids that are the account's contacts, held (FOR KEY SHARE, as a foreign key's
    check would) until the transaction ends: a membership added for them cannot outlive them."""
    ids = list(contact_ids)
    owned: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        stmt = (
            select(Contact.id)
            .where(Contact.account_id == account_id, Contact.id.in_(ids[start : start + _CHUNK]))
            .with_for_update(read=True, key_share=True)
        )
        owned.update((await session.execute(stmt)).scalars())
    return owned


async def list_page(
    session: AsyncSession,
    account_id: str,
    limit: int,
    cursor: str | None,
    email: str | None = None,
    audience_id: str | None = None,
) -> list[Contact]:
    stmt = select(Contact).where(Contact.account_id == account_id)
    if email:
        escaped = email.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Contact.email.like(f"%{escaped}%", escape="\\"))
    if audience_id:
        stmt = stmt.join(AudienceMember, AudienceMember.contact_id == Contact.id).where(
            AudienceMember.audience_id == audience_id
        )
    return list((await session.execute(paginate_query(stmt, Contact.id, limit, cursor))).scalars())


async def refresh_statistics(session: AsyncSession | AsyncConnection) -> None:
    """PostgreSQL plans with the statistics of the last ANALYZE: during a large import into a new
    database they still describe an empty table (autovacuum comes late, or never when it is
    off), and the address lookup gets planned as a scan of the account's contacts. ANALYZE
    samples a bounded number of rows and holds a lock only another ANALYZE or VACUUM waits for."""
    await analyze(session, "contacts", "audience_members")


@dataclass
class ImportChanges:
    inserts: list[dict[str, Any]] = field(default_factory=list)  # new contacts' rows
    updates: list[dict[str, Any]] = field(default_factory=list)  # "id" and the columns to set
    contact_ids: list[str] = field(default_factory=list)  # every contact the import names


# An import that created this many contacts refreshes the planner's statistics.
STATISTICS_AFTER = 1_000


async def write_import(session: AsyncSession, changes: ImportChanges) -> None:
    for start in range(0, len(changes.inserts), _CHUNK):
        await session.execute(insert(Contact), changes.inserts[start : start + _CHUNK])
    for start in range(0, len(changes.updates), _CHUNK):  # the ORM's bulk UPDATE by primary key
        await session.execute(update(Contact), changes.updates[start : start + _CHUNK])
    if len(changes.inserts) >= STATISTICS_AFTER:
        await refresh_statistics(session)  # the next lookups are planned for the table as it is


async def delete_one(session: AsyncSession, account_id: str, contact_id: str) -> bool:
    """The contact and its memberships (no foreign key does it on PostgreSQL)."""
    if not await owned.delete_one(session, Contact, account_id, contact_id):
        return False
    await session.execute(delete(AudienceMember).where(AudienceMember.contact_id == contact_id))
    return True


async def count(session: AsyncSession, account_id: str) -> int:
    stmt = select(func.count()).select_from(Contact).where(Contact.account_id == account_id)
    return (await session.execute(stmt)).scalar_one()
