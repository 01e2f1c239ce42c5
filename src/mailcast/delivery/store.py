"""The send queue as the sender sees it: claim, prepare, mark, record, renew and end leases. One
implementation per database, chosen where the worker is assembled (`delivery_store`); the SQL
both share lives in `repository`."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import TextClause, bindparam, or_, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from mailcast.db.lists import unnest
from mailcast.db.models import Delivery, table_of
from mailcast.delivery import repository
from mailcast.delivery.repository import Claimed, Recipient
from mailcast.statuses import DeliveryStatus

# A message the relay accepted: (delivery id, the relay's reply, Message-ID).
Sent = tuple[int, str, str | None]


class SentWriter(Protocol):
    """A batch's fast path: messages the relay accepted recorded `sent` and the next rows marked
    `sending` in one atomic write (`DeliveryStore.record` and `mark_on_wire` at once)."""

    async def write(
        self,
        worker: str,
        sent: Sequence[Sent],
        marks: Sequence[int],
        now: datetime,
        lease: timedelta,
    ) -> set[int]:
        """The ids marked."""
        ...

    async def close(self) -> None:
        """The batch is done: what the writer holds goes back."""
        ...


class DeliveryStore(ABC):
    async def claim(
        self, session: AsyncSession, worker: str, now: datetime, limit: int, lease: timedelta
    ) -> list[Claimed]:
        return await repository.claim(session, worker, now, limit, lease)

    async def prepare(
        self,
        session: AsyncSession,
        worker: str,
        chunk: Sequence[Claimed],
        now: datetime,
        lease: timedelta,
    ) -> dict[int, Recipient]:
        return await repository.prepare(session, worker, chunk, now, lease)

    async def mark_on_wire(
        self,
        session: AsyncSession,
        worker: str,
        ids: Sequence[int],
        now: datetime,
        lease: timedelta,
    ) -> set[int]:
        return await repository.mark_on_wire(session, worker, ids, now, lease)

    async def renew(
        self,
        session: AsyncSession,
        worker: str,
        lease_ids: Iterable[int],
        now: datetime,
        lease: timedelta,
    ) -> None:
        await repository.renew(session, worker, lease_ids, now, lease)

    async def end_leases(
        self, session: AsyncSession, worker: str, lease_ids: Iterable[int], attempted: bool
    ) -> None:
        await repository.end_leases(session, worker, lease_ids, attempted)

    @abstractmethod
    async def record(
        self, session: AsyncSession, worker: str, results: list[dict[str, Any]], unsent: bool
    ) -> None:
        """Each dict: id, status, and the columns to set. A row marked `sending` is guarded by its
        owner (a row the recovery already called unknown still takes the real answer); `unsent`:
        rows never marked (nothing went on the wire), guarded by being still pending."""

    def sent_writer(self, engine: AsyncEngine) -> SentWriter | None:
        """The batch's fast path, where this database has one."""
        return None


def _groups(results: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """The rows by the set of columns they set: one statement each."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in results:
        groups.setdefault(tuple(sorted(k for k in values if k != "id")), []).append(values)
    return groups


class SqliteDeliveryStore(DeliveryStore):
    async def record(
        self, session: AsyncSession, worker: str, results: list[dict[str, Any]], unsent: bool
    ) -> None:
        for columns, rows in _groups(results).items():
            await session.execute(
                _record_by_row(columns, unsent),
                [
                    {"row_id": r["id"], "worker": worker, **{f"v_{c}": r[c] for c in columns}}
                    for r in rows
                ],
            )


@functools.cache
def _record_by_row(columns: tuple[str, ...], unsent: bool) -> Any:
    """An executemany's UPDATE of one row (statuses as OR, not IN: an expanding parameter cannot go
    into an executemany)."""
    table = table_of(Delivery)
    if unsent:
        guard = [
            or_(table.c.status == DeliveryStatus.QUEUED, table.c.status == DeliveryStatus.DEFERRED)
        ]
    else:
        guard = [
            table.c.lease_owner == bindparam("worker"),
            or_(table.c.status == DeliveryStatus.SENDING, table.c.status == DeliveryStatus.UNKNOWN),
        ]
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"), *guard)
        .values(
            {
                "lease_owner": None,
                "lease_expires_at": None,
                **{c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns},
            }
        )
    )


class PostgresDeliveryStore(DeliveryStore):
    async def record(
        self, session: AsyncSession, worker: str, results: list[dict[str, Any]], unsent: bool
    ) -> None:
        # One statement over arrays a set of columns: the campaign counts' trigger runs once for it.
        for columns, rows in _groups(results).items():
            await session.execute(
                _record_over_arrays(columns, unsent),
                {"worker": worker, **{c: [r[c] for r in rows] for c in ("id", *columns)}},
            )

    def sent_writer(self, engine: AsyncEngine) -> SentWriter:
        return _DriverSentWriter(engine)


@functools.cache
def _record_over_arrays(columns: tuple[str, ...], unsent: bool) -> TextClause:
    """`record`'s UPDATE of one set of columns, the rows' values as one array a column (coalesce:
    see `repository._pending`)."""
    guard = (
        "coalesce(d.status, '') IN ('queued', 'deferred')"
        if unsent
        else "d.lease_owner = :worker AND d.status IN ('sending', 'unknown')"
    )
    return text(
        f"UPDATE deliveries AS d SET {''.join(f'{c} = u.{c}, ' for c in columns)}"
        "lease_owner = NULL, lease_expires_at = NULL "
        f"FROM {unnest(table_of(Delivery), ('id', *columns))} AS "
        f"u(id{''.join(f', {c}' for c in columns)}) "
        f"WHERE d.id = u.id AND {guard}"
    )


# The sender's commonest write, as one statement on the driver's connection outside a transaction:
# atomic, and it skips the SQL layer's per-statement work. (coalesce: see `repository._pending`.)
_SENT_AND_MARK = """
WITH recorded AS (
    UPDATE deliveries AS d
       SET status = 'sent', smtp_response = u.smtp_response, message_id = u.message_id,
           sent_at = $6, updated_at = $6, lease_owner = NULL, lease_expires_at = NULL
    FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, smtp_response, message_id)
    WHERE d.id = u.id AND d.lease_owner = $5 AND d.status IN ('sending', 'unknown')
    RETURNING d.id
), marked AS (
    UPDATE deliveries AS d SET status = 'sending', attempts = d.attempts + 1, lease_owner = $5,
           lease_expires_at = $7, updated_at = $6
    WHERE d.id = ANY($4::bigint[]) AND coalesce(d.status, '') IN ('queued', 'deferred')
      AND EXISTS (SELECT 1 FROM delivery_leases AS l
                  WHERE l.campaign_id = d.campaign_id AND l.owner = $5
                    AND (d.next_attempt_at, d.id)
                        BETWEEN (l.first_at, l.first_id) AND (l.last_at, l.last_id))
    RETURNING d.id
)
SELECT id FROM marked
"""


class _DriverSentWriter:
    """asyncpg connections kept from a batch's first fast write to its end, each statement
    committing by itself."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Each pool connection with its driver's: reached once, not on every write.
        self._idle: list[tuple[AsyncConnection, Any]] = []

    async def write(
        self,
        worker: str,
        sent: Sequence[Sent],
        marks: Sequence[int],
        now: datetime,
        lease: timedelta,
    ) -> set[int]:
        if self._idle:
            connection, driver = self._idle.pop()
        else:
            connection = await self._engine.connect()
            driver = None
        try:
            if driver is None:
                driver = (await connection.get_raw_connection()).driver_connection
                assert driver is not None
                # One plan for every write: planning it again each time (PostgreSQL's choice for
                # this statement) was a quarter of the server's work per write. Reset in `close`.
                await driver.execute("SET plan_cache_mode = force_generic_plan")
            rows = await driver.fetch(
                _SENT_AND_MARK,
                [s[0] for s in sent],
                [s[1] for s in sent],
                [s[2] for s in sent],
                list(marks),
                worker,
                now,
                now + lease,
            )
        except BaseException:
            await connection.invalidate()  # its state is unknown: not back to the pool
            await connection.close()
            raise
        self._idle.append((connection, driver))
        return {row[0] for row in rows}

    async def close(self) -> None:
        while self._idle:
            connection, driver = self._idle.pop()
            reset = False
            try:
                await driver.execute("RESET plan_cache_mode")
                reset = True
            except Exception:
                pass  # the database went away, say: the batch's writes are done all the same
            finally:
                if not reset:  # dropped, never pooled with the setting
                    await connection.invalidate()
                await connection.close()


def delivery_store(engine: AsyncEngine) -> DeliveryStore:
    if engine.dialect.name == "postgresql":
        return PostgresDeliveryStore()
    return SqliteDeliveryStore()
