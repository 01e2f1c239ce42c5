"""`/v1/audiences/{id}/contacts`: an audience's members."""

from __future__ import annotations

from fastapi import APIRouter

from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES
from mailcast.api.schemas import Deleted
from mailcast.audiences.schemas import AddContacts, AddContactsResult
from mailcast.contacts.schemas import ContactOut
from mailcast.members import service

router = APIRouter(prefix="/v1/audiences", tags=["Audiences"], responses=ERROR_RESPONSES)


@router.post("/{audience_id}/contacts", response_model=AddContactsResult)
async def add_contacts(
    audience_id: str, body: AddContacts, principal: FullKey, session: SessionDep, clock: ClockDep
) -> AddContactsResult:
    """Add existing contacts by id (up to 1,000 per call); `added` counts the new memberships."""
    added = await service.add_contacts(
        session, principal.account_id, audience_id, body.contact_ids, clock()
    )
    return AddContactsResult(added=added)


@router.get("/{audience_id}/contacts", response_model=Page[ContactOut])
async def list_audience_contacts(
    audience_id: str, principal: ReadKey, session: SessionDep, page: PageDep
) -> Page[ContactOut]:
    rows = await service.list_members(
        session, principal.account_id, audience_id, page.limit, page.cursor
    )
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[ContactOut](
        data=[ContactOut.of(c) for c in items], has_more=has_more, next_cursor=cursor
    )


@router.delete("/{audience_id}/contacts/{contact_id}", response_model=Deleted)
async def remove_audience_contact(
    audience_id: str, contact_id: str, principal: FullKey, session: SessionDep
) -> Deleted:
    """Take a contact out of the audience (the contact itself stays)."""
    await service.remove_contact(session, principal.account_id, audience_id, contact_id)
    return Deleted(id=contact_id, object="audience_member")
