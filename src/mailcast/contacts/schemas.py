from __future__ import annotations

from pydantic import BaseModel, Field

from mailcast.api.schemas import Input, JsonObject, Output, SingleLine, Timestamp

Name = SingleLine


class ContactCreate(Input):
    email: str = Field(max_length=320)
    first_name: Name | None = Field(default=None, max_length=200)
    last_name: Name | None = Field(default=None, max_length=200)
    metadata: JsonObject | None = None
    unsubscribed: bool = False
    audience_id: str | None = Field(default=None, description="Also add the new contact to this audience")


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
    def of(cls, c) -> "ContactOut":
        return cls(id=c.id, email=c.email, first_name=c.first_name, last_name=c.last_name, metadata=c.attributes,
                   unsubscribed=c.unsubscribed, suppressed=c.suppressed_reason is not None,
                   created_at=c.created_at, updated_at=c.updated_at)


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
