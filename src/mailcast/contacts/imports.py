"""CSV import jobs: a file (uploaded, or named on the command line) imported by a worker in
batches, each committed with the job's progress, resumed by another worker after a crash from
the last batch committed. One import of an account runs at a time; the next waits its turn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailcast.audiences import repository as audiences_repo
from mailcast.clock import Clock
from mailcast.config import Settings
from mailcast.contacts import imports_repository as repo
from mailcast.contacts import repository as contacts_repo
from mailcast.contacts.csvfile import CsvError, Layout, batches, read_layout
from mailcast.contacts.store import ContactStore
from mailcast.db.models import ContactImport
from mailcast.errors import NotFound
from mailcast.ids import new_id

log = logging.getLogger("mailcast.imports")

QUEUED, RUNNING, DONE, FAILED = repo.QUEUED, repo.RUNNING, repo.DONE, repo.FAILED
# An import that created this many contacts refreshes the planner's statistics when it ends.
STATISTICS_AFTER = 1_000


def import_dir(settings: Settings) -> Path:
    path = settings.import_dir or settings.data_dir / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_import_id() -> str:
    return new_id("imp")


async def create_import(session: AsyncSession, account_id: str, audience_id: str | None, path: Path,
                        filename: str | None, owns_file: bool, now: datetime, import_id: str | None = None
                        ) -> ContactImport:
    """A queued job for a file already in place (`owns_file`: delete it when the job ends)."""
    if audience_id and await audiences_repo.get(session, account_id, audience_id) is None:
        raise NotFound("No such audience", {"audience_id": audience_id})
    job = ContactImport(
        id=import_id or new_import_id(), account_id=account_id, audience_id=audience_id, status=QUEUED,
        path=str(path), owns_file=owns_file, filename=filename, file_bytes=path.stat().st_size, offset=0, line=1,
        rows_read=0, created=0, updated=0, rejected=0, created_at=now, updated_at=now)
    session.add(job)
    await session.flush()
    return job


async def get_import(session: AsyncSession, account_id: str, import_id: str) -> ContactImport:
    job = await repo.get(session, account_id, import_id)
    if job is None:
        raise NotFound("No such import")
    return job


async def list_imports(session: AsyncSession, account_id: str, limit: int, cursor: str | None
                       ) -> list[ContactImport]:
    return await repo.page(session, account_id, limit, cursor)


def rejected_rows(session: AsyncSession, job: ContactImport):
    """The rejected rows (line, email, reason), a chunk at a time."""
    return repo.errors(session, job.id)


class LeaseLost(Exception):
    """Another worker took the job over (this one was presumed dead): it writes nothing more."""


@dataclass
class Progress:
    offset: int
    file_bytes: int
    rows_read: int
    created: int
    updated: int
    rejected: int


class Importer:
    def __init__(self, engine: AsyncEngine, store: ContactStore, settings: Settings, clock: Clock,
                 owner: str, stop: asyncio.Event | None = None) -> None:
        """`stop`: once set, a running import is handed back to the queue after its current batch
        (a worker shutting down), to be resumed by the next worker to look."""
        self.stop = stop
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.store = store
        self.settings = settings
        self.clock = clock
        self.owner = owner
        self.lease = timedelta(seconds=settings.import_lease_seconds)

    async def take(self, import_id: str) -> bool:
        """Take this job if it may run now (no other import of its account is running)."""
        now = self.clock()
        async with self.sessions() as session:
            job = await repo.load(session, import_id)
            if job is None:
                return False
            await repo.lock_account(session, job["account_id"])
            if await repo.running_elsewhere(session, job["account_id"], import_id, now):
                return False
            taken = await repo.take(session, import_id, self.owner, now, now + self.lease)
            await session.commit()
            return taken

    async def run_next(self) -> str | None:
        """Take the oldest job that may run and run it to its end; its id, or None."""
        async with self.sessions() as session:
            candidates = await repo.candidates(session, self.clock())
        for import_id, _account in candidates:
            if await self.take(import_id):
                await self.run(import_id)
                return import_id
        return None

    async def run(self, import_id: str, on_progress: Callable[[Progress], None] | None = None) -> str:
        """Run a job this importer has taken; its final status (or `running` if the lease was lost
        or the database failed: another try resumes it)."""
        async with self.engine.connect() as connection:
            job = await repo.load(connection, import_id)
        if job is None or job["lease_owner"] != self.owner:
            return RUNNING
        path = Path(job["path"])
        try:
            handle = path.open("rb")
        except OSError as exc:
            return await self._finish(job, FAILED, f"The file cannot be read: {exc.strerror or exc}")
        try:
            with handle:
                return await self._read(job, handle, on_progress)
        except LeaseLost:
            log.warning("import %s was taken over by another worker", import_id)
            return RUNNING
        except CsvError as exc:
            return await self._finish(job, FAILED, str(exc))

    async def _read(self, job: dict[str, Any], handle, on_progress) -> str:
        if job["layout"] is None:
            layout = read_layout(handle)
            async with self.engine.begin() as connection:
                now = self.clock()
                if not await repo.set_layout(connection, job["id"], self.owner, layout.to_json(),
                                             layout.header_bytes, 2, now, now + self.lease):
                    raise LeaseLost
            job.update(offset=layout.header_bytes, line=2)
        else:
            layout = Layout.from_json(job["layout"])
        progress = Progress(job["offset"], job["file_bytes"], job["rows_read"], job["created"], job["updated"],
                            job["rejected"])
        reading = batches(handle, layout, job["offset"], job["line"], self.settings.import_batch_rows)
        # The next batch is read (in a thread) while this one is written: the parsing is Python's
        # work, the writing mostly the database's.
        ahead = asyncio.ensure_future(asyncio.to_thread(next, reading, None))
        created_total = 0
        try:
            while (batch := await ahead) is not None:
                if self.stop is not None and self.stop.is_set():
                    async with self.engine.begin() as connection:
                        await repo.release(connection, job["id"], self.owner, self.clock())
                    return QUEUED
                ahead = asyncio.ensure_future(asyncio.to_thread(next, reading, None))
                now = self.clock()
                async with self.engine.begin() as connection:
                    created, updated = await self.store.merge(connection, job["account_id"], job["audience_id"],
                                                              list(batch.rows.values()), now)
                    await repo.add_errors(connection, job["id"], batch.rejected)
                    if not await repo.advance(connection, job["id"], self.owner, progress.offset, batch.offset,
                                              batch.line, batch.records, created, updated + batch.repeats,
                                              len(batch.rejected), now, now + self.lease):
                        raise LeaseLost
                created_total += created
                progress.offset = batch.offset
                progress.rows_read += batch.records
                progress.created += created
                progress.updated += updated + batch.repeats
                progress.rejected += len(batch.rejected)
                if on_progress is not None:
                    on_progress(progress)
        finally:
            # The reading thread must be done with the file before it is closed.
            with contextlib.suppress(BaseException):
                await ahead
        if created_total >= STATISTICS_AFTER or progress.created >= STATISTICS_AFTER:
            async with self.engine.begin() as connection:
                await contacts_repo.refresh_statistics(connection)
        return await self._finish(job, DONE, None)

    async def _finish(self, job: dict[str, Any], status: str, error: str | None) -> str:
        async with self.engine.begin() as connection:
            finished = await repo.finish(connection, job["id"], self.owner, status, error, self.clock())
        if finished and job["owns_file"]:
            with contextlib.suppress(OSError):
                os.unlink(job["path"])
        log.info("import %s %s%s", job["id"], status, f": {error}" if error else "")
        return status if finished else RUNNING
