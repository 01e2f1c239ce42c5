"""A CSV file arriving over HTTP (the API's and the dashboard's upload), written to the import
directory as it arrives, never whole in memory; and rejected rows written back out as CSV."""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException

from mailcast.config import Settings
from mailcast.contacts import imports
from mailcast.db.models import ContactImport
from mailcast.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed, problem

_CHUNK = 1 << 16
FILE_TYPES = {
    "text/csv",
    "text/plain",
    "application/csv",
    "application/vnd.ms-excel",
    "application/octet-stream",
    "multipart/form-data",
}


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than {limit} bytes", {"limit_bytes": limit})


FORM_FIELDS = {"file", "audience_id"}


async def receive(request: Request, destination: Path, limit: int) -> str | None:
    """The upload written to `destination`: the request's body itself, or the `file` part of a
    multipart form. Returns the form's audience_id, if any."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.split(";")[0].strip() not in FILE_TYPES:
        raise UnsupportedMediaType(
            "Send the CSV as the request body (Content-Type: text/csv) or as the file part of a "
            "multipart form",
            {"content_type": content_type or None},
        )
    written = 0
    with destination.open("wb") as out:
        if content_type.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=1, max_fields=50)
            except HTTPException as exc:  # Starlette's answer to a malformed form
                raise ValidationFailed.on(
                    "file",
                    str(exc.detail),
                    f"file: the multipart form cannot be read ({exc.detail})",
                ) from None
            try:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise ValidationFailed.on(
                        "file",
                        "required",
                        "file: a multipart upload needs a file part named 'file'",
                    )
                unknown = sorted(set(form.keys()) - FORM_FIELDS)
                if unknown:
                    raise ValidationFailed(
                        f"{unknown[0]}: not a field of the upload form (file, audience_id)",
                        [problem(name, "unknown field") for name in unknown],
                    )
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


async def import_upload(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    account_id: str,
    audience_id: str | None,
    filename: str | None,
    now: datetime,
) -> ContactImport:
    """The uploaded file stored and queued as an import job (nothing is left behind if it fails)."""
    import_id = imports.new_import_id()
    folder = imports.import_dir(settings)
    partial, final = folder / f"{import_id}.part", folder / f"{import_id}.csv"
    try:
        form_audience = await receive(request, partial, settings.import_max_file_bytes)
        os.replace(partial, final)
        return await imports.create_import(
            session,
            account_id,
            audience_id or form_audience,
            final,
            filename or None,
            True,
            now,
            import_id,
        )
    except BaseException:
        for leftover in (partial, final):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise


def csv_lines(rows: Iterable[tuple[int, str, str]]) -> str:
    """Rejected rows (line, email, reason) as CSV lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    # A leading =, +, - or @ is quoted away: a spreadsheet would run the cell as a formula.
    writer.writerows(
        (line, "'" + email if email[:1] in "=+-@" and email else email, reason)
        for line, email, reason in rows
    )
    return buffer.getvalue()
