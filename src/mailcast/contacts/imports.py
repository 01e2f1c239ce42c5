"""CSV import jobs: a file (uploaded, or named on the command line) imported by a worker in
batches, each committed with the job's progress, resumed by another worker after a crash from
the last batch committed. One import of an account runs at a time; the next waits its turn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailcast.audiences import repository as audiences_repo
from mailcast.clock import Clock
from mailcast.config import Settings
from mailcast.contacts import imports_repository as repo
from mailcast.contacts import repository as contacts_repo
from mailcast.contacts.csvfile import Batch, CsvError, Layout, read_layout
from mailcast.contacts.reader import prepared
from mailcast.contacts.store import ContactStore
from mailcast.db.models import ContactImport
from mailcast.errors import NotFound
from mailcast.ids import new_id

log = logging.getLogger("mailcast.imports")

QUEUED, RUNNING, DONE, FAILED = repo.QUEUED, repo.RUNNING, repo.DONE, repo.FAILED


def import_dir(settings: Settings) -> Path:
    path = settings.import_dir or settings.data_dir / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_import_id() -> str:
    return new_id("imp")


async def create_import(
    session: AsyncSession,
    account_id: str,
    audience_id: str | None,
    path: Path,
    filename: str | None,
    owns_file: bool,
    now: datetime,
    import_id: str | None = None,
) -> ContactImport:
    """A queued job for a file already in place (`owns_file`: delete it when the job ends)."""
    if audience_id and await audiences_repo.get(session, account_id, audience_id) is None:
        raise NotFound("No such audience", {"audience_id": audience_id})
    job = ContactImport(
        id=import_id or new_import_id(),
        account_id=account_id,
        audience_id=audience_id,
        status=QUEUED,
        path=str(path),
        owns_file=owns_file,
        filename=filename,
        file_bytes=path.stat().st_size,
        offset=0,
        line=1,
        rows_read=0,
        created=0,
        updated=0,
        rejected=0,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await session.flush()
    return job


async def get_import(session: AsyncSession, account_id: str, import_id: str) -> ContactImport:
    job = await repo.get(session, account_id, import_id)
    if job is None:
        raise NotFound("No such import")
    return job


async def list_imports(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[ContactImport]:
    return await repo.page(session, account_id, limit, cursor)


def rejected_rows(
    session: AsyncSession, import_id: str
) -> AsyncIterator[list[tuple[int, str, str]]]:
    """The rejected rows (line, email, reason), a chunk at a time."""
    return repo.errors(session, import_id)


class AudienceGone(Exception):
    """The job's audience was deleted while it ran."""


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
    def __init__(
        self,
        engine: AsyncEngine,
        store: ContactStore,
        settings: Settings,
        clock: Clock,
        owner: str,
        stop: asyncio.Event | None = None,
    ) -> None:
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

    async def run(
        self, import_id: str, on_progress: Callable[[Progress], None] | None = None
    ) -> str:
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
            return await self._finish(
                job, FAILED, f"The file cannot be read: {exc.strerror or exc}"
            )
        try:
            with handle:
                return await self._read(job, handle, on_progress)
        except LeaseLost:
            log.warning("import %s was taken over by another worker", import_id)
            return RUNNING
        except CsvError as exc:
            return await self._finish(job, FAILED, str(exc))
        except AudienceGone:
            return await self._finish(
                job,
                FAILED,
                "The audience was deleted during the import; the rows before that are imported",
            )

    async def _read(
        self,
        job: dict[str, Any],
        handle: BinaryIO,
        on_progress: Callable[[Progress], None] | None,
    ) -> str:
        if job["layout"] is None:
            layout = read_layout(handle)
            async with self.engine.begin() as connection:
                now = self.clock()
                if not await repo.set_layout(
                    connection,
                    job["id"],
                    self.owner,
                    layout.to_json(),
                    layout.header_bytes,
                    2,
                    now,
                    now + self.lease,
                ):
                    raise LeaseLost
            job.update(offset=layout.header_bytes, line=2)
        else:
            layout = Layout.from_json(job["layout"])
        progress = Progress(
            job["offset"],
            job["file_bytes"],
            job["rows_read"],
            job["created"],
            job["updated"],
            job["rejected"],
        )
        async with (
            self.engine.connect() as connection,
            self._batches(handle, layout, job) as reading,
        ):
            async for batch in reading:
                if self.stop is not None and self.stop.is_set():
                    async with connection.begin():
                        await repo.release(connection, job["id"], self.owner, self.clock())
                    return QUEUED
                now = self.clock()
                async with connection.begin():
                    if job["audience_id"] and not await audiences_repo.hold(
                        connection, job["account_id"], job["audience_id"]
                    ):
                        raise AudienceGone
                    created, updated = await self.store.merge(
                        connection, job["account_id"], job["audience_id"], batch.prepared, now
                    )
                    await repo.add_errors(connection, job["id"], batch.rejected)
                    if not await repo.advance(
                        connection,
                        job["id"],
                        self.owner,
                        progress.offset,
                        batch.offset,
                        batch.line,
                        batch.records,
                        created,
                        updated + batch.repeats,
                        len(batch.rejected),
                        now,
                        now + self.lease,
                    ):
                        raise LeaseLost
                progress.offset = batch.offset
                progress.rows_read += batch.records
                progress.created += created
                progress.updated += updated + batch.repeats
                progress.rejected += len(batch.rejected)
                if on_progress is not None:
                    on_progress(progress)
        if progress.created >= contacts_repo.STATISTICS_AFTER:  # this run's creations included
            async with self.engine.begin() as connection:
                await contacts_repo.refresh_statistics(connection)
        return await self._finish(job, DONE, None)

    @contextlib.asynccontextmanager
    async def _batches(
        self, handle: BinaryIO, layout: Layout, job: dict[str, Any]
    ) -> AsyncIterator[AsyncIterator[Batch]]:
        """The file's batches from where the job stands, prepared for the store. A large rest is
        read by a process of its own (`contacts/reader.py`), one batch ahead of the writes:
        parsing is Python's work and, in this process, would hold the interpreter the database
        driver needs. A small one is read here (a process costs a start of its own)."""
        size, preparer = self.settings.import_batch_rows, self.store.preparer
        if job["file_bytes"] - job["offset"] < self.settings.import_reader_process_bytes:
            reading = prepared(handle, layout, job["offset"], job["line"], size, preparer)

            async def here() -> AsyncIterator[Batch]:
                while (batch := await asyncio.to_thread(next, reading, None)) is not None:
                    yield batch

            yield here()
            return
        reader = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mailcast.contacts.reader",
            job["path"],
            json.dumps(layout.to_json()),
            str(job["offset"]),
            str(job["line"]),
            str(size),
            preparer,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        assert reader.stdout is not None and reader.stderr is not None
        stream = _Pickles(reader.stdout)

        async def there() -> AsyncIterator[Batch]:
            while (batch := await stream.next()) is not None:
                yield batch

        try:
            yield there()
        finally:
            if reader.returncode is None:
                reader.kill()  # it may be blocked writing what nobody reads any more
            problem = (await reader.stderr.read()).decode(errors="replace").strip()
            await reader.wait()
            if stream.ended_early and problem:
                log.error("the import's reading process failed: %s", problem[-2000:])

    async def _finish(self, job: dict[str, Any], status: str, error: str | None) -> str:
        async with self.engine.begin() as connection:
            finished = await repo.finish(
                connection, job["id"], self.owner, status, error, self.clock()
            )
        if finished and job["owns_file"]:
            with contextlib.suppress(OSError):
                os.unlink(job["path"])
        log.info("import %s %s%s", job["id"], status, f": {error}" if error else "")
        return status if finished else RUNNING


class _Pickles:
    """The reading process's batches, as they arrive (each a pickle after its length)."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.ended_early = False

    async def next(self) -> Batch | None:
        try:
            size = int.from_bytes(await self.stream.readexactly(8), "big")
            batch: Batch = pickle.loads(await self.stream.readexactly(size))
            return batch
        except asyncio.IncompleteReadError:
            self.ended_early = True
            raise RuntimeError(
                "the import's reading process ended before the end of the file"
            ) from None
