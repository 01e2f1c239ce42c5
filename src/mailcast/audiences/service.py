"""Audiences: named sets of contacts that campaigns target."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.audiences import repository as repo
from mailcast.audiences.schemas import AudienceCreate, AudienceUpdate
from mailcast.db import usage
from mailcast.db.models import Audience
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
            raise ValidationFailed.on("name", "cannot be null")
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
    users = await usage.campaigns_using_audience(session, account_id, audience_id)
    if users:
        raise Conflict(
            "Campaigns that have not finished still use this audience", {"campaign_ids": users}
        )
    await repo.delete_one(session, account_id, audience_id)
