from __future__ import annotations

from typing import Literal

from pydantic import Field

from mailcast.api.schemas import Input, JsonObject, Output, SingleLine, Timestamp

Engine = Literal["liquid", "html"]


class TemplateCreate(Input):
    name: SingleLine = Field(min_length=1, max_length=200)
    subject: SingleLine | None = Field(default=None, max_length=998)
    html: str | None = Field(default=None, max_length=512_000)
    text: str | None = Field(default=None, max_length=512_000)
    engine: Engine = Field(
        default="liquid", description='"html" is accepted as a synonym: both use Liquid merge tags'
    )
    variables: JsonObject | None = None


class TemplateUpdate(Input):
    name: SingleLine | None = Field(default=None, min_length=1, max_length=200)
    subject: SingleLine | None = Field(default=None, max_length=998)
    html: str | None = Field(default=None, max_length=512_000)
    text: str | None = Field(default=None, max_length=512_000)
    engine: Engine | None = None
    variables: JsonObject | None = None


class TemplateOut(Output):
    id: str
    name: str
    subject: str | None
    html: str | None
    text: str | None
    engine: str
    variables: JsonObject | None
    created_at: Timestamp
    updated_at: Timestamp
