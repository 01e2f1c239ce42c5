"""Opens and clicks, written in one of two ways.

Group commit (the default, `flush_seconds` 0): every request waits until its event is committed
(an acknowledged event is never lost, not even in a crash), but all the requests that arrive
while one transaction is being written share the next one. Under load a pixel costs a share of
one transaction instead of four statements and a commit of its own.

Buffered (`flush_seconds` > 0): a request is answered at once and its event is written with the
others of the last `flush_seconds`, and on shutdown. A clean shutdown loses nothing; a crash
(kill -9, power) loses what is not written yet: the last interval's events, or up to
`max_buffered` while hits arrive faster than they are written. A failed write is retried at the
next interval. When `max_buffered` events wait, a request waits until the next chunk is written
(back-pressure: one chunk's write, not the whole backlog; while writes fail it does not wait).
A pixel load of a delivery whose first open of the same kind (a person's, a machine's) a write of
this process has seen is not kept as a hit but counted by delivery: a flush adds each such
delivery's loads of the interval in one row update, with no read (`_counted`, `add_loads`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple, TypeVarTuple

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql import ColumnElement, Select

from mailcast.db.lists import among, is_postgresql, unnest
from mailcast.db.models import Delivery, Event, table_of

log = logging.getLogger("mailcast.tracking")
# Hits per transaction of a buffered write. Each chunk's Python work holds the event loop, so
# its size bounds the tracking endpoints' tail latency.
FLUSH_CHUNK = 250
# Buffered hits one chunk looks through at most (those already known are counted as it goes).
_SCANNED = 8 * FLUSH_CHUNK
# Deliveries per transaction of counted loads (`EventWriter._loads`): one statement and no Python
# work a row, so a chunk holds the event loop for the time it takes to build two lists.
LOADS_CHUNK = 5_000
# Deliveries whose first opens a process has written or read (`Known`): a pixel load of one of
# them is only a count to add.
KNOWN_DELIVERIES = 50_000


class Hit(NamedTuple):  # a tuple: made on every pixel load and click
    kind: str  # "open" (a pixel load) or "click"
    delivery_id: int
    at: datetime
    user_agent: str | None
    url: str | None = None


class Known(NamedTuple):
    """What a process knows of a delivery once a write of its hits committed: when it was sent,
    and whether its first open by a person and by a machine are recorded (they never stop being)."""

    sent_at: datetime
    person_opened: bool
    machine_opened: bool


# Whether a hit is a machine's: (user agent, when its message was sent, when, window seconds).
MachineTest = Callable[[str | None, datetime | None, datetime, int], bool]


class EventWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        machine_window_seconds: int,
        is_machine: MachineTest,
        flush_seconds: float = 0.0,
        max_buffered: int = 200_000,
        known_deliveries: int = KNOWN_DELIVERIES,
    ) -> None:
        self.sessions = sessions
        self.window = machine_window_seconds
        self.is_machine = is_machine
        self.flush_seconds = flush_seconds
        self.max_buffered = max_buffered
        self._pending: list[tuple[Hit, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._buffer: list[Hit] = []
        # Buffered: pixel loads that only add to their delivery's count (its first open of the
        # same kind is recorded already), by delivery. Counted here, not kept as hits: a flush
        # then adds each delivery's loads of the whole interval in one row update.
        self._loads: Counter[int] = Counter()
        self._known: dict[int, Known] = {}
        self._known_size = known_deliveries
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._wake = (
            asyncio.Event()
        )  # the buffer is full: write now, not at the end of the interval
        self._room = asyncio.Event()  # set after every chunk written (or failed)
        self._failing = False  # the last write failed: requests do not wait for room

    async def record(self, hit: Hit) -> None:
        """Group commit: returns once the hit is committed, raises if its transaction failed.
        Buffered: returns at once (or after a write when the buffer is full)."""
        if self.flush_seconds > 0:
            if self.take(hit):
                return
            self._buffer.append(hit)  # the buffer is full: wait for room
            while len(self._buffer) >= self.max_buffered and not self._failing:
                self._wake.set()
                self._room.clear()
                await self._room.wait()
            return
        future = asyncio.get_running_loop().create_future()
        self._pending.append((hit, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await asyncio.shield(future)  # a client that hangs up does not cancel the others' write

    def take(self, hit: Hit) -> bool:
        """Buffered, with room in the buffer: the hit is kept for the next write and True. Otherwise
        False, and the caller awaits `record`. (Not a coroutine: the pixel's path calls it.)"""
        if self.flush_seconds <= 0 or (
            len(self._buffer) + 1 >= self.max_buffered and not self._failing
        ):
            return False
        if not self._counted(hit):
            self._buffer.append(hit)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_every())
        return True

    def _counted(self, hit: Hit) -> bool:
        """A pixel load of a delivery known to have its first open of the same kind (a person's
        or a machine's) recorded: counted in `_loads`, and True."""
        if hit.kind != "open" or (known := self._known.get(hit.delivery_id)) is None:
            return False
        machine = self.is_machine(hit.user_agent, known.sent_at, hit.at, self.window)
        if not (known.machine_opened if machine else known.person_opened):
            return False
        self._loads[hit.delivery_id] += 1
        return True

    def _learn(self, known: dict[int, Known]) -> None:
        """After a commit: what it wrote and read. The oldest entries go first past the limit."""
        self._known.update(known)
        excess = len(self._known) - self._known_size
        if excess > 0:
            for delivery_id in list(islice(self._known, excess)):
                del self._known[delivery_id]

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._commit([hit for hit, _ in batch])
            except Exception as exc:  # every waiter learns; the next batch tries afresh
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved: the waiter may be gone
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    @property
    def _engine(self) -> AsyncEngine:
        return self.sessions.kw["bind"]  # type: ignore[no-any-return]  # the factory's: a test may swap the factory

    async def _commit(self, hits: list[Hit]) -> None:
        """Group commit: one transaction for a batch."""
        async with self._engine.begin() as connection:
            await write(connection, hits, self.window, self.is_machine)

    async def _flush_every(self) -> None:
        """A flush every `flush_seconds` from the start of the last (at once when the buffer is
        full)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.flush_seconds
        while self._buffer or self._loads:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, due - loop.time()))
            self._wake.clear()
            due = loop.time() + self.flush_seconds
            try:
                await self.flush()
            except Exception:  # kept; tried again at the next interval
                log.exception("could not write %d tracking events; retrying", len(self._buffer))

    async def flush(self) -> None:
        """Write the hits buffered when it starts (those that arrive meanwhile wait for the next
        one), then every load counted by then, so each flush adds up an interval's loads. On
        failure what is not written stays buffered and this raises."""
        async with self._flushing:
            engine = self._engine
            # PostgreSQL: one connection for all the chunks (a pool checkout per chunk adds its
            # liveness ping and its rollback on return). SQLite: the process has one connection,
            # given back after every chunk so that the API's requests are not held for a whole
            # flush.
            one_per_chunk = not is_postgresql(engine)
            hits = len(self._buffer)
            loads: list[tuple[int, int]] | None = None  # taken once the hits are written

            def left() -> bool:  # hits of those it started with, or loads, still to write
                return bool(hits or (self._loads if loads is None else loads))

            try:
                while left():
                    async with engine.connect() as connection:
                        while left():
                            if hits:
                                hits -= await self._write_hits(connection, hits)
                            else:
                                if loads is None:
                                    # Not sorted: the writers' lock (`_WRITERS`) leaves no
                                    # order to keep, and a sort would hold the event loop.
                                    loads, self._loads = list(self._loads.items()), Counter()
                                async with connection.begin():
                                    await add_loads(connection, loads[:LOADS_CHUNK])
                                del loads[:LOADS_CHUNK]
                            self._failing = False
                            self._room.set()
                            if one_per_chunk:
                                break
            except BaseException:
                self._failing = True
                self._room.set()
                raise
            finally:
                if loads:
                    self._loads.update(dict(loads))  # added to those counted meanwhile

    async def _write_hits(self, connection: AsyncConnection, count: int) -> int:
        """One transaction of up to FLUSH_CHUNK hits from the first `count` (a chunk: the requests
        answered meanwhile wait for one chunk's work on the event loop, not for the whole
        interval's); how many of them it took. A pixel load of a delivery that an earlier chunk
        made known is counted instead: in the first interval of a process most loads are of a
        delivery seen a moment before, and the chunks of first opens could not keep up."""
        buffer, taken = self._buffer, 0
        batch: list[Hit] = []
        count = min(count, _SCANNED)
        while taken < count and len(batch) < FLUSH_CHUNK:
            hit = buffer[taken]
            taken += 1
            if not self._counted(hit):
                batch.append(hit)
        del buffer[:taken]
        if not batch:
            await asyncio.sleep(0)  # the requests waiting meanwhile go first
            return taken
        try:
            async with connection.begin():
                known = await write(connection, batch, self.window, self.is_machine)
        except BaseException:
            buffer[:0] = batch
            raise
        self._learn(known)
        return taken

    async def close(self) -> None:
        """On shutdown: every acknowledged event is written before this returns."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._flusher is not None:
            async with self._flushing:  # never cancelled in the middle of a write
                self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        for attempt in range(3):
            try:
                while self._buffer or self._loads:
                    await self.flush()
                return
            except Exception:
                log.exception(
                    "could not write %d tracking events on shutdown (attempt %d of 3)",
                    len(self._buffer),
                    attempt + 1,
                )
                await asyncio.sleep(1)


_READ_COLUMNS = (
    Delivery.id,
    Delivery.sent_at,
    Delivery.opened_at.is_not(None),
    Delivery.machine_opened_at.is_not(None),
    Delivery.clicked_at.is_not(None),
)
# PostgreSQL: the loads added by one statement over arrays (not a statement per delivery, as an
# executemany would be). That statement's row locks come in
# whatever order its plan takes, so the rows it writes are locked first, in id order (`_locked`):
# two processes writing hits of the same deliveries then wait for each other instead of
# deadlocking (PostgreSQL breaks a deadlock only after its 1 s deadlock_timeout). FOR NO KEY
# UPDATE, the lock an UPDATE takes: it does not conflict with the key-share locks of other
# transactions' event inserts (their foreign key).
_ADD_LOADS_PG = text(
    "UPDATE deliveries AS d SET open_count = d.open_count + u.loads, opened_at = "
    "coalesce(d.opened_at, u.opened), "
    "clicked_at = coalesce(d.clicked_at, u.clicked), machine_opened_at = "
    "coalesce(d.machine_opened_at, u.machine) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:loads AS integer[]), CAST(:opened AS "
    "timestamptz[]), "
    "CAST(:clicked AS timestamptz[]), CAST(:machine AS timestamptz[])) AS u(id, loads, opened, "
    "clicked, machine) "
    "WHERE d.id = u.id"
)
# PostgreSQL: a chunk's events in one statement over arrays (one prepared statement whatever their
# number; a multi-row VALUES is a new statement of six parameters a row for each batch size).
_EVENT_COLUMNS = ("delivery_id", "type", "at", "url", "user_agent", "machine")
_INSERT_EVENTS_PG = text(
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) SELECT * FROM "
    f"{unnest(table_of(Event), _EVENT_COLUMNS)}"
)


# The transaction-level advisory lock a tracking write takes on PostgreSQL before it locks any
# delivery: those writes go one at a time, across all the HTTP processes. `_ADD_LOADS_PG` for the
# counted loads (`add_loads`) locks its rows in whatever order its plan takes; with this lock held
# first, no two tracking writes wait on each other's rows (a deadlock, broken by PostgreSQL only
# after its 1 s deadlock_timeout).
_WRITERS = 0x6D63_7472_6163_6B73  # "mctracks"
_TAKE_WRITERS = text(f"SELECT pg_advisory_xact_lock({_WRITERS})")


async def add_loads(session: AsyncSession | AsyncConnection, loads: list[tuple[int, int]]) -> None:
    """Pixel loads counted on deliveries (`(delivery id, loads)` pairs), in the caller's
    transaction. A delivery that no longer exists is skipped."""
    if not loads:
        return
    if is_postgresql(session):
        await session.execute(_TAKE_WRITERS)
    ids, counts = (list(column) for column in zip(*loads, strict=True))
    nothing: list[datetime | None] = [None] * len(ids)
    await _update_deliveries(session, ids, counts, nothing, nothing, nothing)


async def _update_deliveries(
    session: AsyncSession | AsyncConnection,
    ids: list[int],
    loads: list[int],
    opened: list[datetime | None],
    clicked: list[datetime | None],
    machine: list[datetime | None],
) -> None:
    """Adds each delivery's loads to its count and keeps its first open and first click by a
    person, and its first open by a machine, where none is kept yet (None: none to keep), in one
    statement. On PostgreSQL the caller holds the tracking writers' lock."""
    if is_postgresql(session):
        await session.execute(
            _ADD_LOADS_PG,
            {"ids": ids, "loads": loads, "opened": opened, "clicked": clicked, "machine": machine},
        )
        return
    table = table_of(Delivery)  # SQLite: one writer at a time, no lock order to keep

    def first(column: Any) -> ColumnElement[Any]:
        return func.coalesce(column, bindparam(column.name + "_new", type_=column.type))

    await session.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(
            open_count=table.c.open_count + bindparam("loads"),
            opened_at=first(table.c.opened_at),
            clicked_at=first(table.c.clicked_at),
            machine_opened_at=first(table.c.machine_opened_at),
        ),
        [
            {
                "row_id": i,
                "loads": n,
                "opened_at_new": o,
                "clicked_at_new": c,
                "machine_opened_at_new": m,
            }
            for i, n, o, c, m in zip(ids, loads, opened, clicked, machine, strict=True)
        ],
    )


_Ts = TypeVarTuple("_Ts")


def _locked(
    session: AsyncSession | AsyncConnection, stmt: Select[*_Ts], ids: list[int]
) -> Select[*_Ts]:
    return (
        stmt.where(among(session, Delivery.id, ids))
        .order_by(Delivery.id)
        .with_for_update(of=Delivery, key_share=True)
    )


async def write(
    session: AsyncSession | AsyncConnection,
    hits: list[Hit],
    window_seconds: int,
    is_machine: MachineTest,
) -> dict[int, Known]:
    """Each click is an event; the first open of a delivery (once as a machine's, once as a
    person's) is an event and every pixel load is counted; a click records the open too when
    none was recorded (images may be blocked). A person's first open and first click are also
    kept on the delivery (`opened_at`, `clicked_at`: the campaign's figures follow them). Hits
    of unknown deliveries are dropped. In the caller's transaction (a session's or a
    connection's). Returns what the deliveries' rows said, with this write's opens: once the
    transaction commits, a later load of the same kind is only a count to add."""
    postgres = is_postgresql(session)
    ids = sorted({hit.delivery_id for hit in hits})
    # Pixel loads always update their deliveries: locked as they are read. Clicks seldom do (only
    # a first open or a person's first click), so a chunk of clicks only locks the deliveries it
    # turns out to update. Either way, the tracking writers' lock first (`_WRITERS`).
    locked = postgres and any(hit.kind == "open" for hit in hits)
    if locked:
        await session.execute(_TAKE_WRITERS)
    read = (
        _locked(session, select(*_READ_COLUMNS), ids)
        if locked
        else select(*_READ_COLUMNS).where(among(session, Delivery.id, ids))
    )
    sent_at, seen = {}, set()  # seen: (delivery, machine) pairs whose first open is recorded
    clicked_before = set()  # deliveries with a person's click recorded (`clicked_at`)
    for delivery_id, sent, human_open, machine_open, human_click in await session.execute(read):
        sent_at[delivery_id] = sent
        if human_open:
            seen.add((delivery_id, False))
        if machine_open:
            seen.add((delivery_id, True))
        if human_click:
            clicked_before.add(delivery_id)
    events: list[dict[str, Any]] = []
    loads: Counter[int] = Counter()
    opened: dict[int, datetime] = {}
    clicked: dict[int, datetime] = {}
    machine_opened: dict[int, datetime] = {}
    for hit in hits:
        if hit.delivery_id not in sent_at:
            continue
        machine = is_machine(hit.user_agent, sent_at[hit.delivery_id], hit.at, window_seconds)
        agent = (hit.user_agent or "")[:1000] or None
        if (hit.delivery_id, machine) not in seen:
            seen.add((hit.delivery_id, machine))
            events.append(
                {
                    "delivery_id": hit.delivery_id,
                    "type": "open",
                    "at": hit.at,
                    "url": None,
                    "user_agent": agent,
                    "machine": machine,
                }
            )
            (machine_opened if machine else opened)[hit.delivery_id] = hit.at
        if hit.kind == "open":
            loads[hit.delivery_id] += 1
        else:
            events.append(
                {
                    "delivery_id": hit.delivery_id,
                    "type": "click",
                    "at": hit.at,
                    "url": (hit.url or "")[:2000],
                    "user_agent": agent,
                    "machine": machine,
                }
            )
            if not machine and hit.delivery_id not in clicked_before:
                clicked_before.add(hit.delivery_id)
                clicked[hit.delivery_id] = hit.at
    if events and postgres:
        await session.execute(
            _INSERT_EVENTS_PG, {c: [e[c] for e in events] for c in _EVENT_COLUMNS}
        )
    elif events:
        # Through the table, not the entity: the ORM's bulk insert asks for the new ids back and
        # writes one multi-row VALUES statement per batch size, a new statement of thousands of
        # parameters to parse and plan for nearly every chunk.
        await session.execute(insert(table_of(Event)), events)
    # All in one statement: the load count, the first human open and the first human click.
    known = {
        delivery_id: Known(sent, (delivery_id, False) in seen, (delivery_id, True) in seen)
        for delivery_id, sent in sent_at.items()
        if sent is not None
    }
    changed = sorted(loads.keys() | opened.keys() | clicked.keys() | machine_opened.keys())
    if not changed:
        return known
    if postgres and not locked:
        await session.execute(_TAKE_WRITERS)
        await session.execute(_locked(session, select(Delivery.id), changed))
    await _update_deliveries(
        session,
        changed,
        [loads[i] for i in changed],
        [opened.get(i) for i in changed],
        [clicked.get(i) for i in changed],
        [machine_opened.get(i) for i in changed],
    )
    return known
