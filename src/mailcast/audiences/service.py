"""Audiences: named sets of contacts that campaigns target."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.audiences import repository as repo
from mailcast.audiences.schemas import AudienceCreate, AudienceUpdate
from mailcast.campaigns import repository as campaigns_repo
from mailcast.contacts import repository as contacts_repo
from mailcast.db.models import Audience, Contact
from mailcast.errors import Conflict, NotFound, ValidationFailed
from mailcast.ids import new_id


async def create_audience(
    session: AsyncSession, account_id: str, body: AudienceCreate, now: datetime
) -> Audience:
    audience = Audience(
        id=new_id("aud"),
        account_id=account_id,
        name=body.name,
        description=body.description,
        created_at=now,
        updated_at=now,
    )
    session.add(audience)
    await session.flush()
    return audience


async def get_audience(session: AsyncSession, account_id: str, audience_id: str) -> Audience:
    audience = await repo.get(session, account_id, audience_id)
    if audience is None:
        raise NotFound("No such audience")
    return audience


async def list_audiences(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[Audience]:
    return await repo.list_page(session, account_id, limit, cursor)


async def member_counts(session: AsyncSession, audiences: list[Audience]) -> dict[str, int]:
    return await repo.member_counts(session, [a.id for a in audiences])


async def audiences_of(session: AsyncSession, account_id: str, contact_id: str) -> list[Audience]:
    """The audiences a contact belongs to."""
    return await repo.audiences_of(session, account_id, contact_id)


async def update_audience(
    session: AsyncSession, account_id: str, audience_id: str, body: AudienceUpdate, now: datetime
) -> Audience:
    audience = await get_audience(session, account_id, audience_id)
    if "name" in body.model_fields_set:
        if body.name is None:
            raise ValidationFailed(
                "name: cannot be null", [{"field": "name", "message": "cannot be null"}]
            )
        audience.name = body.name
    if "description" in body.model_fields_set:
        audience.description = body.description
    audience.updated_at = now
    await session.flush()
    return audience


async def delete_audience(session: AsyncSession, account_id: str, audience_id: str) -> None:
    """Deleting an audience removes memberships, never contacts. An audience that a campaign
    still has to send to cannot go."""
    await get_audience(session, account_id, audience_id)
    users = await campaigns_repo.active_using_audience(session, account_id, audience_id)
    if users:
        raise Conflict(
            "Campaigns that have not finished still use this audience", {"campaign_ids": users}
        )
    await repo.delete_one(session, account_id, audience_id)


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
