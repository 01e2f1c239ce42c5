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
delivery's loads of the interval in one row update, with no read (`_counted`,
`EventStore.add_loads`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from itertools import islice

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from mailcast.tracking.classify import Hit as Hit
from mailcast.tracking.classify import Known, MachineTest
from mailcast.tracking.store import EventStore

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


class EventWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: EventStore,
        machine_window_seconds: int,
        is_machine: MachineTest,
        flush_seconds: float = 0.0,
        max_buffered: int = 200_000,
        known_deliveries: int = KNOWN_DELIVERIES,
    ) -> None:
        self.sessions = sessions
        self.store = store
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
            await self.store.write(connection, hits, self.window, self.is_machine)

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
            one_per_chunk = not self.store.keeps_connection
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
                                    await self.store.add_loads(connection, loads[:LOADS_CHUNK])
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
                known = await self.store.write(connection, batch, self.window, self.is_machine)
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
