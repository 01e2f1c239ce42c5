"""INSERT ... ON CONFLICT for the dialect the session is bound to (SQLite and PostgreSQL share the
syntax)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db.lists import is_postgresql


def insert_for(session: AsyncSession) -> Any:
    if is_postgresql(session):
        return postgresql.insert
    return sqlite.insert
