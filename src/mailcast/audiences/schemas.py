from __future__ import annotations

from pydantic import BaseModel, Field

from mailcast.api.schemas import Input, Output, SingleLine, Timestamp


class AudienceCreate(Input):
    name: SingleLine = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class AudienceUpdate(Input):
    name: SingleLine | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class AudienceOut(Output):
    id: str
    name: str
    description: str | None
    member_count: int
    created_at: Timestamp
    updated_at: Timestamp


class AddContacts(Input):
    contact_ids: list[str] = Field(min_length=1, max_length=1000)


class AddContactsResult(BaseModel):
    added: int
