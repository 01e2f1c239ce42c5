"""Where tracking hits are written: one interface (`EventStore`), a PostgreSQL and a SQLite
implementation, chosen once where the app is assembled (`event_store`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ColumnElement

from mailcast.db.lists import among, unnest
from mailcast.db.models import Delivery, Event, table_of
from mailcast.tracking.classify import (
    EVENT_COLUMNS,
    Changes,
    Hit,
    Known,
    MachineTest,
    Recorded,
    classify,
)

_READ_COLUMNS = (
    Delivery.id,
    Delivery.sent_at,
    Delivery.opened_at.is_not(None),
    Delivery.machine_opened_at.is_not(None),
    Delivery.clicked_at.is_not(None),
)


class EventStore(Protocol):
    # Whether a flush keeps one connection for all its chunks (or gives it back after each).
    keeps_connection: bool

    async def write(
        self,
        connection: AsyncConnection,
        hits: Sequence[Hit],
        window_seconds: int,
        is_machine: MachineTest,
    ) -> dict[int, Known]:
        """The hits' events and row changes (see `classify`), in the caller's transaction.
        Returns what the deliveries' rows say once it commits."""
        ...

    async def add_loads(self, connection: AsyncConnection, loads: list[tuple[int, int]]) -> None:
        """Pixel loads counted on deliveries (`(delivery id, loads)` pairs), in the caller's
        transaction. A delivery that no longer exists is skipped."""
        ...


class _RowStore(ABC):
    """The write both databases share: read the rows, classify, write the events and the rows.
    A subclass says how rows are read, locked and changed."""

    async def write(
        self,
        connection: AsyncConnection,
        hits: Sequence[Hit],
        window_seconds: int,
        is_machine: MachineTest,
    ) -> dict[int, Known]:
        ids = sorted({hit.delivery_id for hit in hits})
        # Pixel loads always change their rows: locked as they are read. Clicks seldom do (only
        # a first open or a person's first click): only the rows that change are locked, later.
        opens = any(hit.kind == "open" for hit in hits)
        recorded = {
            row[0]: Recorded(row[1], row[2], row[3], row[4])
            for row in await self._read(connection, ids, lock=opens)
        }
        changes = classify(hits, recorded, window_seconds, is_machine)
        if changes.events:
            await self._insert_events(connection, changes.events)
        changed = changes.changed()
        if changed:
            if not opens:
                await self._lock(connection, changed)
            await self._update(connection, changed, changes)
        return changes.known

    async def add_loads(self, connection: AsyncConnection, loads: list[tuple[int, int]]) -> None:
        if not loads:
            return
        await self._lock_writers(connection)
        changes = Changes()
        changes.loads.update(dict(loads))
        await self._update(connection, [delivery_id for delivery_id, _ in loads], changes)

    @abstractmethod
    async def _read(self, connection: AsyncConnection, ids: list[int], lock: bool) -> Any:
        """The rows of `ids` (`_READ_COLUMNS`); `lock`: held until the transaction ends."""

    @abstractmethod
    async def _lock_writers(self, connection: AsyncConnection) -> None:
        """Tracking writes go one at a time from here to the end of the transaction."""

    @abstractmethod
    async def _lock(self, connection: AsyncConnection, ids: list[int]) -> None:
        """The rows of `ids` held for an update, after the writers' lock."""

    @abstractmethod
    async def _insert_events(
        self, connection: AsyncConnection, events: list[dict[str, Any]]
    ) -> None: ...

    @abstractmethod
    async def _update(self, connection: AsyncConnection, ids: list[int], changes: Changes) -> None:
        """Each row of `ids`: its loads added, its first opens and first click kept where none
        is kept yet."""


# The transaction-level advisory lock a tracking write takes on PostgreSQL before it locks any
# delivery: those writes go one at a time, across all the HTTP processes. The loads' update locks
# its rows in whatever order its plan takes; with this lock held first, no two tracking writes
# wait on each other's rows (a deadlock, broken by PostgreSQL only after its deadlock_timeout).
_WRITERS = 0x6D63_7472_6163_6B73  # "mctracks"
_TAKE_WRITERS = text(f"SELECT pg_advisory_xact_lock({_WRITERS})")
# The loads added by one statement over arrays (not a statement per delivery). Its rows are locked
# first, in id order (`_locked`), FOR NO KEY UPDATE (the lock an UPDATE takes, which does not
# conflict with the key-share locks of other transactions' event inserts).
_ADD_LOADS = text(
    "UPDATE deliveries AS d SET open_count = d.open_count + u.loads, "
    "opened_at = coalesce(d.opened_at, u.opened), "
    "clicked_at = coalesce(d.clicked_at, u.clicked), "
    "machine_opened_at = coalesce(d.machine_opened_at, u.machine) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:loads AS integer[]), "
    "CAST(:opened AS timestamptz[]), CAST(:clicked AS timestamptz[]), "
    "CAST(:machine AS timestamptz[])) AS u(id, loads, opened, clicked, machine) "
    "WHERE d.id = u.id"
)
# A chunk's events in one statement over arrays (one prepared statement whatever their number).
_INSERT_EVENTS = text(
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) SELECT * FROM "
    f"{unnest(table_of(Event), EVENT_COLUMNS)}"
)


class PostgresEventStore(_RowStore):
    keeps_connection = True  # a pool checkout per chunk adds a liveness ping and a rollback

    async def _read(self, connection: AsyncConnection, ids: list[int], lock: bool) -> Any:
        stmt = select(*_READ_COLUMNS).where(among(connection, Delivery.id, ids))
        if lock:
            await connection.execute(_TAKE_WRITERS)
            stmt = stmt.order_by(Delivery.id).with_for_update(of=Delivery, key_share=True)
        return await connection.execute(stmt)

    async def _lock_writers(self, connection: AsyncConnection) -> None:
        await connection.execute(_TAKE_WRITERS)

    async def _lock(self, connection: AsyncConnection, ids: list[int]) -> None:
        await connection.execute(_TAKE_WRITERS)
        await connection.execute(
            select(Delivery.id)
            .where(among(connection, Delivery.id, ids))
            .order_by(Delivery.id)
            .with_for_update(of=Delivery, key_share=True)
        )

    async def _insert_events(
        self, connection: AsyncConnection, events: list[dict[str, Any]]
    ) -> None:
        await connection.execute(_INSERT_EVENTS, {c: [e[c] for e in events] for c in EVENT_COLUMNS})

    async def _update(self, connection: AsyncConnection, ids: list[int], changes: Changes) -> None:
        await connection.execute(
            _ADD_LOADS,
            {
                "ids": ids,
                "loads": [changes.loads[i] for i in ids],
                "opened": [changes.opened.get(i) for i in ids],
                "clicked": [changes.clicked.get(i) for i in ids],
                "machine": [changes.machine_opened.get(i) for i in ids],
            },
        )


def _first(column: Any) -> ColumnElement[Any]:
    return func.coalesce(column, bindparam(column.name + "_new", type_=column.type))


_DELIVERIES = table_of(Delivery)
_UPDATE_ROW = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("row_id"))
    .values(
        open_count=_DELIVERIES.c.open_count + bindparam("loads"),
        opened_at=_first(_DELIVERIES.c.opened_at),
        clicked_at=_first(_DELIVERIES.c.clicked_at),
        machine_opened_at=_first(_DELIVERIES.c.machine_opened_at),
    )
)


class SqliteEventStore(_RowStore):
    """One writer at a time (BEGIN IMMEDIATE): no lock order to keep."""

    # The process has one connection, given back after every chunk so that the API's requests are
    # not held for a whole flush.
    keeps_connection = False

    async def _read(self, connection: AsyncConnection, ids: list[int], lock: bool) -> Any:
        return await connection.execute(
            select(*_READ_COLUMNS).where(among(connection, Delivery.id, ids))
        )

    async def _lock_writers(self, connection: AsyncConnection) -> None:
        pass

    async def _lock(self, connection: AsyncConnection, ids: list[int]) -> None:
        pass

    async def _insert_events(
        self, connection: AsyncConnection, events: list[dict[str, Any]]
    ) -> None:
        # Through the table, not the entity: the ORM's bulk insert asks for the new ids back and
        # writes one multi-row VALUES statement per batch size.
        await connection.execute(insert(table_of(Event)), events)

    async def _update(self, connection: AsyncConnection, ids: list[int], changes: Changes) -> None:
        await connection.execute(
            _UPDATE_ROW,
            [
                {
                    "row_id": i,
                    "loads": changes.loads[i],
                    "opened_at_new": changes.opened.get(i),
                    "clicked_at_new": changes.clicked.get(i),
                    "machine_opened_at_new": changes.machine_opened.get(i),
                }
                for i in ids
            ],
        )


def event_store(engine: AsyncEngine) -> EventStore:
    if engine.dialect.name == "postgresql":
        return PostgresEventStore()
    return SqliteEventStore()
