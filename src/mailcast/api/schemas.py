"""Shapes shared by every resource of the API."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\u0085]")


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be a single line without control characters (CR, LF, ...)")
    return value


SingleLine = Annotated[str, AfterValidator(_single_line)]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(_iso, return_type=str)]


class Input(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
