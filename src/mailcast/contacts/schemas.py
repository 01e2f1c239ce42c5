from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from mailcast.api.schemas import Input, JsonObject, Output, SingleLine, Timestamp

if TYPE_CHECKING:
    from mailcast.db.models import Contact, ContactImport

Name = SingleLine


class ContactCreate(Input):
    email: str = Field(max_length=320)
    first_name: Name | None = Field(default=None, max_length=200)
    last_name: Name | None = Field(default=None, max_length=200)
    metadata: JsonObject | None = None
    unsubscribed: bool = False
    audience_id: str | None = Field(
        default=None, description="Also add the new contact to this audience"
    )


class ContactUpdate(Input):
    email: str | None = Field(default=None, max_length=320)
    first_name: Name | None = Field(default=None, max_length=200)
    last_name: Name | None = Field(default=None, max_length=200)
    metadata: JsonObject | None = None
    unsubscribed: bool | None = None


class ContactOut(Output):
    id: str
    email: str
    first_name: str | None
    last_name: str | None
    metadata: JsonObject | None
    unsubscribed: bool
    suppressed: bool
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, c: Contact) -> ContactOut:
        return cls(
            id=c.id,
            email=c.email,
            first_name=c.first_name,
            last_name=c.last_name,
            metadata=c.attributes,
            unsubscribed=c.unsubscribed,
            suppressed=c.suppressed_reason is not None,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class ImportRow(Input):
    # Addresses are checked per row by the service, so one bad address does not sink the batch.
    email: str = Field(max_length=1000)
    first_name: Name | None = Field(default=None, max_length=200)
    last_name: Name | None = Field(default=None, max_length=200)
    metadata: JsonObject | None = None
    unsubscribed: bool | None = None


class ImportRequest(Input):
    contacts: list[ImportRow] = Field(min_length=1)
    audience_id: str | None = None


class ImportRowError(BaseModel):
    index: int
    email: str
    message: str


class ImportResult(BaseModel):
    created: int
    updated: int
    invalid: int
    total: int
    errors: list[ImportRowError]


class ContactImportOut(Output):
    """A CSV import job."""

    id: str
    object: str = "contact_import"
    status: str = Field(description="queued, running, done or failed")
    audience_id: str | None
    filename: str | None
    file_bytes: int
    bytes_read: int = Field(description="How far the committed batches reach into the file")
    progress: float = Field(description="bytes_read / file_bytes, 0 to 1")
    rows_read: int
    created: int
    updated: int = Field(
        description="Existing contacts updated, and rows merged into an earlier row of the file"
    )
    rejected: int
    error: str | None = Field(
        description="Why a failed import failed (its rows before that are kept)"
    )
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, job: ContactImport) -> ContactImportOut:
        done = job.status == "done"
        read = job.file_bytes if done else min(job.offset, job.file_bytes)
        return cls(
            id=job.id,
            status=job.status,
            audience_id=job.audience_id,
            filename=job.filename,
            file_bytes=job.file_bytes,
            bytes_read=read,
            progress=1.0 if done or not job.file_bytes else round(read / job.file_bytes, 4),
            rows_read=job.rows_read,
            created=job.created,
            updated=job.updated,
            rejected=job.rejected,
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )
