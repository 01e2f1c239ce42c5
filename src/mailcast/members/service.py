"""Audience membership: contacts added to and taken out of an audience, and an audience's
contacts listed. Above both the audience and the contact packages, which it joins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.audiences import repository as repo
from mailcast.audiences.service import get_audience
from mailcast.contacts import repository as contacts_repo
from mailcast.db.models import Contact
from mailcast.errors import NotFound


async def add_contacts(
    session: AsyncSession, account_id: str, audience_id: str, contact_ids: list[str], now: datetime
) -> int:
    if not await repo.hold(session, account_id, audience_id):
        raise NotFound("No such audience")
    wanted = list(dict.fromkeys(contact_ids))
    owned = await contacts_repo.ids_owned(session, account_id, wanted)
    missing = [cid for cid in wanted if cid not in owned]
    if missing:
        raise NotFound("No such contact", {"contact_ids": missing})
    already = await repo.existing_members(session, audience_id, wanted)
    new = [cid for cid in wanted if cid not in already]
    await repo.add_members(session, audience_id, new, now)
    return len(new)


async def list_members(
    session: AsyncSession, account_id: str, audience_id: str, limit: int, cursor: str | None
) -> list[Contact]:
    await get_audience(session, account_id, audience_id)
    return await contacts_repo.list_page(
        session, account_id, limit, cursor, audience_id=audience_id
    )


async def remove_contact(
    session: AsyncSession, account_id: str, audience_id: str, contact_id: str
) -> None:
    await get_audience(session, account_id, audience_id)
    if not await repo.remove_member(session, audience_id, contact_id):
        raise NotFound("That contact is not in this audience")
