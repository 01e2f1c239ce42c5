"""Cursor pagination: {data, has_more, next_cursor}, newest first, ids as the cursor key."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select

from mailcast.errors import ValidationFailed

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("cursor: not a cursor this API returned", [{"field": "cursor", "message": "invalid cursor"}])
    if not key or len(key) > 64:
        raise ValidationFailed("cursor: not a cursor this API returned", [{"field": "cursor", "message": "invalid cursor"}])
    return key


def paginate_query(stmt: Select, id_column: Any, limit: int, cursor: str | None) -> Select:
    if cursor:
        stmt = stmt.where(id_column < decode_cursor(cursor))
    return stmt.order_by(id_column.desc()).limit(limit + 1)


def page_of(rows: Sequence[Any], limit: int, key=lambda row: row.id) -> tuple[list[Any], bool, str | None]:
    """Split a limit+1 fetch into (items, has_more, next_cursor)."""
    items = list(rows[:limit])
    has_more = len(rows) > limit
    return items, has_more, encode_cursor(key(items[-1])) if has_more and items else None
