from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep, SettingsDep
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES, put_and_patch
from mailcast.api.schemas import Deleted, ErrorOut
from mailcast.contacts import imports, service, uploads
from mailcast.contacts.schemas import (
    ContactCreate,
    ContactImportOut,
    ContactOut,
    ContactUpdate,
    ImportRequest,
    ImportResult,
)

router = APIRouter(prefix="/v1/contacts", tags=["Contacts"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=ContactOut)
async def create_contact(
    body: ContactCreate, principal: FullKey, session: SessionDep, clock: ClockDep
) -> ContactOut:
    """Create a contact (one per address per account; 409 if the address exists)."""
    return ContactOut.of(await service.create_contact(session, principal.account_id, body, clock()))


@router.get("", response_model=Page[ContactOut])
async def list_contacts(
    principal: ReadKey,
    session: SessionDep,
    page: PageDep,
    email: Annotated[str | None, Query(max_length=320, description="Part of the address")] = None,
    audience_id: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[ContactOut]:
    rows = await service.list_contacts(
        session, principal.account_id, page.limit, page.cursor, email, audience_id
    )
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[ContactOut](
        data=[ContactOut.of(c) for c in items], has_more=has_more, next_cursor=cursor
    )


class _RowsCountedFirst(APIRoute):
    """The JSON import's rows are counted while its body streams through a parser, before it is
    decoded whole: a body with more rows than allowed is refused without building them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def counted_first(request: Request) -> Response:
            limit = request.app.state.settings.import_max_rows
            if service.json_rows_over(await request.body(), "contacts", limit):
                raise service.too_many_rows(limit)
            return await handler(request)

        return counted_first


async def import_contacts(
    body: ImportRequest,
    principal: FullKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> ImportResult:
    """Create or update up to 10,000 contacts by address. Invalid addresses are reported per row
    (`errors[].index`) and skipped; valid rows are kept. Existing contacts are never
    re-subscribed."""
    return await service.import_contacts(
        session,
        principal.account_id,
        body.contacts,
        body.audience_id,
        clock(),
        settings.import_max_rows,
    )


router.add_api_route(
    "/import",
    import_contacts,
    methods=["POST"],
    response_model=ImportResult,
    route_class_override=_RowsCountedFirst,
)


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "description": "The CSV file itself"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "audience_id": {"type": "string"},
                    },
                }
            },
        },
    }
}


@router.post(
    "/imports",
    status_code=202,
    response_model=ContactImportOut,
    openapi_extra=_UPLOAD_BODY,
    responses={
        415: {"model": ErrorOut, "description": "The body is not a file (CSV or a multipart form)"}
    },
)
async def start_import(
    request: Request,
    principal: FullKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    audience_id: Annotated[
        str | None,
        Query(
            max_length=40,
            description=(
                "Add every imported contact to this audience (or a form field of that name)"
            ),
        ),
    ] = None,
    filename: Annotated[str | None, Query(max_length=255)] = None,
) -> ContactImportOut:
    """Import a CSV file of any size (up to MAILCAST_IMPORT_MAX_FILE_BYTES, 1 GiB by default),
    sent as the request body (`Content-Type: text/csv`) or as the `file` part of a multipart form.
    The file is stored and a worker imports it; this answers 202 with the job at once. Follow it
    with `GET /v1/contacts/imports/{id}`; the rejected rows are at `.../errors`. Columns: email
    (required; "Email Address", "E-mail", ... are understood), first_name, last_name,
    unsubscribed; any other column becomes metadata. An import never re-subscribes anyone."""
    job = await uploads.import_upload(
        request, session, settings, principal.account_id, audience_id, filename, clock()
    )
    return ContactImportOut.of(job)


@router.get("/imports", response_model=Page[ContactImportOut])
async def list_imports(
    principal: ReadKey, session: SessionDep, page: PageDep
) -> Page[ContactImportOut]:
    """The account's imports, newest first."""
    rows = await imports.list_imports(session, principal.account_id, page.limit, page.cursor)
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[ContactImportOut](
        data=[ContactImportOut.of(j) for j in items], has_more=has_more, next_cursor=cursor
    )


@router.get("/imports/{import_id}", response_model=ContactImportOut)
async def get_import(import_id: str, principal: ReadKey, session: SessionDep) -> ContactImportOut:
    """Where an import stands: status, rows read, created, updated, rejected, and its progress
    through the file's bytes."""
    return ContactImportOut.of(await imports.get_import(session, principal.account_id, import_id))


@router.get(
    "/imports/{import_id}/errors",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "line,email,reason"}},
)
async def import_errors(import_id: str, principal: ReadKey, request: Request) -> Response:
    """The rejected rows as CSV: `line,email,reason` (the line in the file; the header is line
    1)."""
    sessions = request.app.state.sessions
    async with sessions() as session:
        job = await imports.get_import(session, principal.account_id, import_id)

    async def rows() -> AsyncIterator[str]:
        yield "line,email,reason\r\n"
        async with sessions() as session:
            async for chunk in imports.rejected_rows(session, job.id):
                yield uploads.csv_lines(chunk)

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job.id}-errors.csv"'},
    )


@router.get("/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: str, principal: ReadKey, session: SessionDep) -> ContactOut:
    return ContactOut.of(await service.get_contact(session, principal.account_id, contact_id))


async def update_contact(
    contact_id: str, body: ContactUpdate, principal: FullKey, session: SessionDep, clock: ClockDep
) -> ContactOut:
    """Update the given fields of a contact."""
    return ContactOut.of(
        await service.update_contact(session, principal.account_id, contact_id, body, clock())
    )


put_and_patch(router, "/{contact_id}", update_contact, response_model=ContactOut)


@router.delete("/{contact_id}", response_model=Deleted)
async def delete_contact(
    contact_id: str, principal: FullKey, session: SessionDep, clock: ClockDep
) -> Deleted:
    await service.delete_contact(session, principal.account_id, contact_id, clock())
    return Deleted(id=contact_id, object="contact")
