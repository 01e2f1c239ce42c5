"""Shapes shared by every resource of the API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

_CONTROL_CLASS = r"\x00-\x08\x0a-\x1f\x7f\u2028\u2029\u0085"
_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be a single line without control characters (CR, LF, ...)")
    return value


# The pattern documents the rule in the OpenAPI schema; the validator gives the readable message.
SingleLine = Annotated[
    str,
    AfterValidator(_single_line),
    Field(json_schema_extra={"pattern": f"^[^{_CONTROL_CLASS}]*$"}),
]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(_iso, return_type=str)]


def _finite_json(value: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("must be JSON without NaN or Infinity") from None
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Input(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped; no string anywhere in
    them may hold a NUL character (no database stores one in text)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("strings must not contain NUL characters")
        return data


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every error response."""

    error: ErrorDetail


class SequenzyIssue(BaseModel):
    path: str
    message: str


class SequenzyErrorOut(BaseModel):
    """Every error response under /api/v1 (the Sequenzy dialect)."""

    success: bool = False
    error: str
    code: str
    issues: list[SequenzyIssue] | None = None
    retryable: bool
