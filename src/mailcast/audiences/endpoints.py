from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES, put_and_patch
from mailcast.api.schemas import Deleted
from mailcast.audiences import service
from mailcast.audiences.schemas import (
    AudienceCreate,
    AudienceOut,
    AudienceUpdate,
)
from mailcast.db.models import Audience

router = APIRouter(prefix="/v1/audiences", tags=["Audiences"], responses=ERROR_RESPONSES)


def _out(audience: Audience, count: int) -> AudienceOut:
    return AudienceOut(
        id=audience.id,
        name=audience.name,
        description=audience.description,
        member_count=count,
        created_at=audience.created_at,
        updated_at=audience.updated_at,
    )


async def _one(session: AsyncSession, audience: Audience) -> AudienceOut:
    counts = await service.member_counts(session, [audience])
    return _out(audience, counts[audience.id])


@router.post("", status_code=201, response_model=AudienceOut)
async def create_audience(
    body: AudienceCreate, principal: FullKey, session: SessionDep, clock: ClockDep
) -> AudienceOut:
    return await _one(
        session, await service.create_audience(session, principal.account_id, body, clock())
    )


@router.get("", response_model=Page[AudienceOut])
async def list_audiences(
    principal: ReadKey, session: SessionDep, page: PageDep
) -> Page[AudienceOut]:
    rows = await service.list_audiences(session, principal.account_id, page.limit, page.cursor)
    items, has_more, cursor = page_of(rows, page.limit)
    counts = await service.member_counts(session, items)
    return Page[AudienceOut](
        data=[_out(a, counts[a.id]) for a in items], has_more=has_more, next_cursor=cursor
    )


@router.get("/{audience_id}", response_model=AudienceOut)
async def get_audience(audience_id: str, principal: ReadKey, session: SessionDep) -> AudienceOut:
    return await _one(
        session, await service.get_audience(session, principal.account_id, audience_id)
    )


async def update_audience(
    audience_id: str, body: AudienceUpdate, principal: FullKey, session: SessionDep, clock: ClockDep
) -> AudienceOut:
    """Rename an audience or change its description."""
    audience = await service.update_audience(
        session, principal.account_id, audience_id, body, clock()
    )
    return await _one(session, audience)


put_and_patch(router, "/{audience_id}", update_audience, response_model=AudienceOut)


@router.delete("/{audience_id}", response_model=Deleted)
async def delete_audience(audience_id: str, principal: FullKey, session: SessionDep) -> Deleted:
    """Delete an audience (its contacts stay). 409 while an unfinished campaign targets it."""
    await service.delete_audience(session, principal.account_id, audience_id)
    return Deleted(id=audience_id, object="audience")
