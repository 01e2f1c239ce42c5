from __future__ import annotations

import contextlib
import csv
import io
import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException

from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep, SettingsDep
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES, put_and_patch
from mailcast.api.schemas import Deleted, ErrorOut
from mailcast.contacts import imports, service
from mailcast.contacts.schemas import (
    ContactCreate, ContactImportOut, ContactOut, ContactUpdate, ImportRequest, ImportResult,
)
from mailcast.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed

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


_CHUNK = 1 << 16
_FILE_TYPES = {"text/csv", "text/plain", "application/csv", "application/vnd.ms-excel", "application/octet-stream",
               "multipart/form-data"}


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than {limit} bytes", {"limit_bytes": limit})


async def _receive(request: Request, destination: Path, limit: int) -> str | None:
    """The upload written to `destination` as it arrives (never whole in memory): the request's
    body itself, or the `file` part of a multipart form. Returns the form's audience_id, if any."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.split(";")[0].strip() not in _FILE_TYPES:
        raise UnsupportedMediaType(
            "Send the CSV as the request body (Content-Type: text/csv) or as the file part of a multipart form",
            {"content_type": content_type or None})
    written = 0
    with destination.open("wb") as out:
        if content_type.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=1, max_fields=50)
            except HTTPException as exc:  # Starlette's answer to a malformed form
                raise ValidationFailed(f"file: the multipart form cannot be read ({exc.detail})",
                                       [{"field": "file", "message": str(exc.detail)}]) from None
            try:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise ValidationFailed("file: a multipart upload needs a file part named 'file'",
                                           [{"field": "file", "message": "required"}])
                while chunk := await upload.read(_CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise _too_large(limit)
                    out.write(chunk)
                audience = form.get("audience_id")
                return audience if isinstance(audience, str) and audience else None
            finally:
                await form.close()
        async for chunk in request.stream():
            written += len(chunk)
            if written > limit:
                raise _too_large(limit)
            out.write(chunk)
    return None


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "description": "The CSV file itself"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}, "audience_id": {"type": "string"}}}},
}}}


@router.post("/imports", status_code=202, response_model=ContactImportOut, openapi_extra=_UPLOAD_BODY,
             responses={415: {"model": ErrorOut, "description": "The body is not a file (CSV or a multipart form)"}})
async def start_import(request: Request, principal: FullKey, session: SessionDep, clock: ClockDep,
                       settings: SettingsDep,
                       audience_id: Annotated[str | None, Query(max_length=40, description=(
                           "Add every imported contact to this audience (or a form field of that name)"))] = None,
                       filename: Annotated[str | None, Query(max_length=255)] = None):
    """Import a CSV file of any size (up to MAILCAST_IMPORT_MAX_FILE_BYTES, 1 GiB by default),
    sent as the request body (`Content-Type: text/csv`) or as the `file` part of a multipart form.
    The file is stored and a worker imports it; this answers 202 with the job at once. Follow it
    with `GET /v1/contacts/imports/{id}`; the rejected rows are at `.../errors`. Columns: email
    (required; "Email Address", "E-mail", ... are understood), first_name, last_name,
    unsubscribed; any other column becomes metadata. An import never re-subscribes anyone."""
    import_id = imports.new_import_id()
    folder = imports.import_dir(settings)
    partial, final = folder / f"{import_id}.part", folder / f"{import_id}.csv"
    try:
        form_audience = await _receive(request, partial, settings.import_max_file_bytes)
        os.replace(partial, final)
        name = filename or None
        job = await imports.create_import(session, principal.account_id, audience_id or form_audience, final,
                                          name, True, clock(), import_id)
    except BaseException:
        for leftover in (partial, final):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise
    return ContactImportOut.of(job)


@router.get("/imports", response_model=Page[ContactImportOut])
async def list_imports(principal: ReadKey, session: SessionDep, page: PageDep):
    """The account's imports, newest first."""
    rows = await imports.list_imports(session, principal.account_id, page.limit, page.cursor)
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[ContactImportOut](data=[ContactImportOut.of(j) for j in items], has_more=has_more,
                                  next_cursor=cursor)


@router.get("/imports/{import_id}", response_model=ContactImportOut)
async def get_import(import_id: str, principal: ReadKey, session: SessionDep):
    """Where an import stands: status, rows read, created, updated, rejected, and its progress
    through the file's bytes."""
    return ContactImportOut.of(await imports.get_import(session, principal.account_id, import_id))


@router.get("/imports/{import_id}/errors", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "line,email,reason"}})
async def import_errors(import_id: str, principal: ReadKey, request: Request):
    """The rejected rows as CSV: `line,email,reason` (the line in the file; the header is line 1)."""
    sessions = request.app.state.sessions
    async with sessions() as session:
        job = await imports.get_import(session, principal.account_id, import_id)

    async def rows():
        yield "line,email,reason\r\n"
        async with sessions() as session:
            async for chunk in imports.rejected_rows(session, job):
                yield _csv_lines(chunk)

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{job.id}-errors.csv"'})


def _csv_lines(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    # A leading =, +, - or @ is quoted away: a spreadsheet would run the cell as a formula.
    writer.writerows((line, "'" + email if email[:1] in "=+-@" and email else email, reason)
                     for line, email, reason in rows)
    return buffer.getvalue()


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
