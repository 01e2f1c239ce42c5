"""What a data-changing statement reports."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result


def changed(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched (`session.execute` types every result as a plain
    `Result`, though a data-changing statement's is a `CursorResult`)."""
    return cast("CursorResult[Any]", result).rowcount
