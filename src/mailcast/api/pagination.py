"""Cursor pagination: {data, has_more, next_cursor}, newest first, ids as the cursor key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


def page_of(
    rows: Sequence[Any], limit: int, key: Callable[[Any], str] = lambda row: row.id
) -> tuple[list[Any], bool, str | None]:
    """Split a limit+1 fetch into (items, has_more, next_cursor)."""
    items = list(rows[:limit])
    has_more = len(rows) > limit
    return items, has_more, key(items[-1]) if has_more and items else None
