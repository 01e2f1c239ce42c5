"""Which database a session talks to, `column IN (values)` for a list that changes with every call,
and rows passed to PostgreSQL as one array a column."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


def is_postgresql(executor: AsyncSession | AsyncConnection | AsyncEngine) -> bool:
    if isinstance(executor, AsyncSession):
        dialect = executor.get_bind().dialect
    else:
        dialect = executor.dialect
    return dialect.name == "postgresql"


def among(
    executor: AsyncSession | AsyncConnection, column: Any, values: Collection[Any]
) -> ColumnElement[bool]:
    """On PostgreSQL `column = ANY(:array)`: one statement whatever the number of values. An IN list
    is rendered again for every length, and each length is a statement of its own for the server
    to parse and plan (the tracking writer, the click look-up and the sender's chunks each ask
    with a list of up to a few hundred ids). SQLite has no arrays: an IN list there."""
    if is_postgresql(executor):
        array = bindparam(None, list(values), type_=ARRAY(column.type))
        return column == any_(array)  # type: ignore[no-any-return]
    return column.in_(list(values))  # type: ignore[no-any-return]


def unnest(table: Table, columns: Sequence[str]) -> str:
    """PostgreSQL: `unnest(...)` of one array parameter a column, each named after its column and
    cast to the column's type: the rows of a statement as arrays, so it is one prepared statement
    whatever their number (an executemany is a statement a row, a multi-row VALUES a new
    statement for every number of rows)."""
    dialect = PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated
    return (
        "unnest("
        + ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
        + ")"
    )
