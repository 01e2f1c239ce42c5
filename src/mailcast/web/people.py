"""The dashboard's audiences, contacts and CSV imports: the same services as `/v1/audiences`,
`/v1/contacts` and `/v1/contacts/imports`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.accounts.users import SignedIn
from mailcast.api.deps import ClockDep, SessionDep, SettingsDep
from mailcast.audiences import service as audiences
from mailcast.campaigns import repository as campaigns_repo
from mailcast.contacts import imports, uploads
from mailcast.contacts import service as contacts
from mailcast.contacts.schemas import ContactImportOut, ContactUpdate
from mailcast.web import auth
from mailcast.web.auth import Signed
from mailcast.web.pages import HEADERS, fragment, page
from mailcast.web.routes import PAGE, see

router = APIRouter(prefix="/dashboard/company/{account_id}", include_in_schema=False)


@router.get("/audiences", response_class=HTMLResponse)
async def audience_list(
    request: Request,
    account_id: str,
    signed: Signed,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    auth.in_account(signed, account_id)
    rows = await audiences.list_audiences(session, account_id, PAGE, cursor)
    items, more = rows[:PAGE], len(rows) > PAGE
    counts = await audiences.member_counts(session, items)
    return page(
        request,
        "people/audiences.html",
        signed,
        audiences=items,
        counts=counts,
        next_cursor=items[-1].id if more else None,
    )


@router.get("/contacts", response_class=HTMLResponse)
async def contact_list(
    request: Request,
    account_id: str,
    signed: Signed,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=320)] = None,
    audience_id: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    auth.in_account(signed, account_id)
    rows = await contacts.list_contacts(
        session, account_id, PAGE, cursor, q or None, audience_id or None
    )
    items, more = rows[:PAGE], len(rows) > PAGE
    return page(
        request,
        "people/contacts.html",
        signed,
        contacts=items,
        q=q or "",
        audience_id=audience_id or "",
        next_cursor=items[-1].id if more else None,
    )


@router.get("/contact/{contact_id}", response_class=HTMLResponse)
async def contact_page(
    request: Request,
    account_id: str,
    contact_id: str,
    signed: Signed,
    session: SessionDep,
    notice: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    auth.in_account(signed, account_id)
    contact = await contacts.get_contact(session, account_id, contact_id)
    member_of = await audiences.audiences_of(session, account_id, contact_id)
    history = await campaigns_repo.deliveries_of_contact(session, account_id, contact_id)
    return page(
        request,
        "people/contact.html",
        signed,
        contact=contact,
        member_of=member_of,
        history=history,
        notice={"saved": "Saved."}.get(notice or ""),
    )


@router.post("/contact/{contact_id}/subscription")
async def subscription(
    request: Request,
    account_id: str,
    contact_id: str,
    signed: Signed,
    session: SessionDep,
    clock: ClockDep,
) -> Response:
    """Unsubscribe or resubscribe by hand (an import never resubscribes; a person can be)."""
    form = await auth.changing(request, signed)
    auth.in_account(signed, account_id)
    body = ContactUpdate(unsubscribed=form.get("unsubscribed") == "yes")
    await contacts.update_contact(session, account_id, contact_id, body, clock())
    return see(f"/dashboard/company/{account_id}/contact/{contact_id}?notice=saved")


@router.get("/imports", response_class=HTMLResponse)
async def import_list(
    request: Request, account_id: str, signed: Signed, session: SessionDep
) -> Response:
    auth.in_account(signed, account_id)
    jobs = await imports.list_imports(session, account_id, PAGE, None)
    found = await audiences.list_audiences(session, account_id, 100, None)
    return page(
        request,
        "people/imports.html",
        signed,
        jobs=[ContactImportOut.of(j) for j in jobs],
        audiences=found,
    )


@router.post("/imports")
async def upload(
    request: Request,
    account_id: str,
    signed: Signed,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> Response:
    """The CSV upload: streamed to disk as it arrives (CSRF checked from the header, before the
    file is read), then the same import job as the API's."""
    auth.in_account(signed, account_id)
    await auth.check_header(request, signed)
    job = await uploads.import_upload(request, session, settings, account_id, None, None, clock())
    return see(f"/dashboard/company/{account_id}/import/{job.id}")


async def _job(
    session: AsyncSession, signed: SignedIn, account_id: str, import_id: str
) -> ContactImportOut:
    auth.in_account(signed, account_id)
    return ContactImportOut.of(await imports.get_import(session, account_id, import_id))


@router.get("/import/{import_id}", response_class=HTMLResponse)
async def import_page(
    request: Request, account_id: str, import_id: str, signed: Signed, session: SessionDep
) -> Response:
    return page(
        request,
        "people/import.html",
        signed,
        job=await _job(session, signed, account_id, import_id),
    )


@router.get("/import/{import_id}/progress", response_class=HTMLResponse)
async def import_progress(
    account_id: str, import_id: str, signed: Signed, session: SessionDep
) -> Response:
    """The progress bar (an htmx fragment, polled until the import ends)."""
    job = await _job(session, signed, account_id, import_id)
    return HTMLResponse(
        fragment("people/progress.html", job=job, account_id=account_id), headers=HEADERS
    )


@router.get("/import/{import_id}/errors.csv")
async def import_errors(
    request: Request, account_id: str, import_id: str, signed: Signed, session: SessionDep
) -> Response:
    job = await _job(session, signed, account_id, import_id)
    sessions = request.app.state.sessions

    async def rows() -> AsyncIterator[str]:
        yield "line,email,reason\r\n"
        async with sessions() as reading:
            async for chunk in imports.rejected_rows(reading, job.id):
                yield uploads.csv_lines(chunk)

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{job.id}-errors.csv"'},
    )
