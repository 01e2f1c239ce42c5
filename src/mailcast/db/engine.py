"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# The worker's pool pings a connection only once it sat idle this long (`create_engine`).
WORKER_PING_AFTER_IDLE = 1.0


def private_file(path: Path) -> None:
    """The file (and its folder, if new) created readable by this user only, before anything is
    written to it: a database or a key must not be world-readable even for a moment. (SQLite's
    journal files take the database file's mode.)"""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def create_engine(url: str, *, ping_after_idle: float | None = None, **kwargs: Any) -> AsyncEngine:
    """PostgreSQL: a pooled connection is pinged before use (`pool_pre_ping`), or with
    `ping_after_idle` only when it sat in the pool longer than that many seconds. A ping is a round
    trip, and a worker checks a connection out several times a batch; a connection a worker used a
    moment ago was alive a moment ago. One that died since (the server restarted in that moment)
    fails its statement once: the pool then replaces every connection, and the worker's loop tries
    again at its next turn."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            private_file(Path(database))
        # One process writes SQLite at a time anyway; a single pooled connection keeps
        # in-process requests from fighting over the write lock.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 30)
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", ping_after_idle is None)
    if make_url(url).get_driver_name() == "asyncpg":
        # No JIT compilation: nothing mailcast asks for runs long enough to gain what compiling
        # costs (docs/design.md).
        kwargs.setdefault("connect_args", {}).setdefault("server_settings", {}).setdefault(
            "jit", "off"
        )
    engine = create_async_engine(url, **kwargs)
    if ping_after_idle is not None:
        _ping_after_idle(engine, ping_after_idle)
    return engine


def _ping_after_idle(engine: AsyncEngine, seconds: float) -> None:
    """What `pool_pre_ping` does, for connections idle in the pool longer than `seconds`."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")  # none: a new connection
        if idle_since is None or time.monotonic() - idle_since <= seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # As the pre-ping does: every pooled connection is replaced.
                raise InvalidatePoolError() from exc
            raise


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so BEGIN IMMEDIATE below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY when
        # another process wrote in between; taking the write lock up front makes every
        # read-check-write sequence (plan limits, transitions) serialisable across processes.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
