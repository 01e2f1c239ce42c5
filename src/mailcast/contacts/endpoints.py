from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep, SettingsDep
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES, put_and_patch
from mailcast.api.schemas import Deleted
from mailcast.contacts import service
from mailcast.contacts.schemas import ContactCreate, ContactOut, ContactUpdate, ImportRequest, ImportResult

router = APIRouter(prefix="/v1/contacts", tags=["Contacts"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=ContactOut)
async def create_contact(body: ContactCreate, principal: FullKey, session: SessionDep, clock: ClockDep):
    """Create a contact (one per address per account; 409 if the address exists)."""
    return ContactOut.of(await service.create_contact(session, principal.account_id, body, clock()))


@router.get("", response_model=Page[ContactOut])
async def list_contacts(
    principal: ReadKey, session: SessionDep, page: PageDep,
    email: Annotated[str | None, Query(max_length=320, description="Part of the address")] = None,
    audience_id: Annotated[str | None, Query(max_length=40)] = None,
):
    rows = await service.list_contacts(session, principal.account_id, page.limit, page.cursor, email, audience_id)
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[ContactOut](data=[ContactOut.of(c) for c in items], has_more=has_more, next_cursor=cursor)


@router.post("/import", response_model=ImportResult)
async def import_contacts(body: ImportRequest, principal: FullKey, session: SessionDep, clock: ClockDep,
                          settings: SettingsDep):
    """Create or update up to 10,000 contacts by address. Invalid addresses are reported per row
    (`errors[].index`) and skipped; valid rows are kept. Existing contacts are never re-subscribed."""
    return await service.import_contacts(session, principal.account_id, body.contacts, body.audience_id, clock(),
                                         settings.import_max_rows)


@router.get("/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: str, principal: ReadKey, session: SessionDep):
    return ContactOut.of(await service.get_contact(session, principal.account_id, contact_id))


async def update_contact(contact_id: str, body: ContactUpdate, principal: FullKey, session: SessionDep,
                         clock: ClockDep) -> ContactOut:
    """Update the given fields of a contact."""
    return ContactOut.of(await service.update_contact(session, principal.account_id, contact_id, body, clock()))


put_and_patch(router, "/{contact_id}", update_contact, response_model=ContactOut)


@router.delete("/{contact_id}", response_model=Deleted)
async def delete_contact(contact_id: str, principal: FullKey, session: SessionDep, clock: ClockDep):
    await service.delete_contact(session, principal.account_id, contact_id, clock())
    return Deleted(id=contact_id, object="contact")
