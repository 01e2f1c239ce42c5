from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mailcast.db import owned
from mailcast.db.models import Audience, AudienceMember, Contact
from mailcast.db.rows import changed
from mailcast.db.upsert import insert_for

_CHUNK = 500


async def get(session: AsyncSession, account_id: str, audience_id: str) -> Audience | None:
    return await owned.get(session, Audience, account_id, audience_id)


async def hold(session: AsyncSession | AsyncConnection, account_id: str, audience_id: str) -> bool:
    """Whether the account has this audience, held (FOR KEY SHARE, as a foreign key's check
    would) until the transaction ends: memberships added meanwhile cannot outlive a delete of it."""
    stmt = (
        select(Audience.id)
        .where(Audience.id == audience_id, Audience.account_id == account_id)
        .with_for_update(read=True, key_share=True)
    )
    return (await session.execute(stmt)).first() is not None


async def list_page(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[Audience]:
    return await owned.page(session, Audience, account_id, limit, cursor)


async def member_counts(session: AsyncSession, audience_ids: Sequence[str]) -> dict[str, int]:
    if not audience_ids:
        return {}
    stmt = (
        select(AudienceMember.audience_id, func.count())
        .where(AudienceMember.audience_id.in_(list(audience_ids)))
        .group_by(AudienceMember.audience_id)
    )
    counts = {audience_id: 0 for audience_id in audience_ids}
    counts.update({row[0]: row[1] for row in await session.execute(stmt)})
    return counts


async def eligible_count(session: AsyncSession, audience_id: str) -> int:
    """Members who would receive a campaign now: subscribed and not suppressed."""
    stmt = (
        select(func.count())
        .select_from(AudienceMember)
        .join(Contact, Contact.id == AudienceMember.contact_id)
        .where(
            AudienceMember.audience_id == audience_id,
            Contact.unsubscribed.is_(False),
            Contact.suppressed_reason.is_(None),
        )
    )
    return (await session.execute(stmt)).scalar_one()


async def audiences_of(session: AsyncSession, account_id: str, contact_id: str) -> list[Audience]:
    stmt = (
        select(Audience)
        .join(AudienceMember, AudienceMember.audience_id == Audience.id)
        .where(AudienceMember.contact_id == contact_id, Audience.account_id == account_id)
        .order_by(Audience.name)
    )
    return list((await session.execute(stmt)).scalars())


async def reachable_members(session: AsyncSession, audience_id: str, limit: int) -> list[Contact]:
    """The first members (by contact id) who can be mailed: whom a preview is shown as."""
    stmt = (
        select(Contact)
        .join(AudienceMember, AudienceMember.contact_id == Contact.id)
        .where(
            AudienceMember.audience_id == audience_id,
            Contact.unsubscribed.is_(False),
            Contact.suppressed_reason.is_(None),
        )
        .order_by(AudienceMember.contact_id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def existing_members(
    session: AsyncSession, audience_id: str, contact_ids: Sequence[str]
) -> set[str]:
    found: set[str] = set()
    ids = list(contact_ids)
    for start in range(0, len(ids), _CHUNK):
        stmt = select(AudienceMember.contact_id).where(
            AudienceMember.audience_id == audience_id,
            AudienceMember.contact_id.in_(ids[start : start + _CHUNK]),
        )
        found.update((await session.execute(stmt)).scalars())
    return found


async def add_members(
    session: AsyncSession, audience_id: str, contact_ids: Sequence[str], now: datetime
) -> None:
    insert = insert_for(session)
    ids = list(dict.fromkeys(contact_ids))
    for start in range(0, len(ids), _CHUNK):
        rows = [
            {"audience_id": audience_id, "contact_id": cid, "created_at": now}
            for cid in ids[start : start + _CHUNK]
        ]
        await session.execute(insert(AudienceMember).values(rows).on_conflict_do_nothing())


async def remove_member(session: AsyncSession, audience_id: str, contact_id: str) -> bool:
    stmt = delete(AudienceMember).where(
        and_(AudienceMember.audience_id == audience_id, AudienceMember.contact_id == contact_id)
    )
    return changed(await session.execute(stmt)) > 0


async def delete_one(session: AsyncSession, account_id: str, audience_id: str) -> bool:
    """The audience and its memberships (no foreign key does it on PostgreSQL)."""
    if not await owned.delete_one(session, Audience, account_id, audience_id):
        return False
    await session.execute(delete(AudienceMember).where(AudienceMember.audience_id == audience_id))
    return True
