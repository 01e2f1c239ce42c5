"""The PostgreSQL pool and connections that died while pooled (the server restarted, or an idle
connection was cut): the API's pool pings every connection before use; a worker's pings only one
idle for longer than a limit, and a connection it used a moment ago that died since fails its
statement once, after which the pool replaces it."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from mailcast.db.engine import create_engine, is_sqlite


@pytest.fixture
def pg_url(db_url) -> str:
    if is_sqlite(db_url):
        pytest.skip("SQLite has no connection to lose")
    return db_url


async def _backend(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def _cut(url: str, pid: int) -> None:
    """End that server process, as a restart would, and wait until it is gone."""
    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "ping_after_idle", [None, 0.0], ids=["every checkout", "idle past the limit"]
)
async def test_a_pooled_connection_that_died_is_replaced_before_use(pg_url, ping_after_idle):
    engine = create_engine(pg_url, ping_after_idle=ping_after_idle, pool_size=1)
    try:
        dead = await _backend(engine)
        await _cut(pg_url, dead)
        assert await _backend(engine) != dead
    finally:
        await engine.dispose()


async def test_a_connection_used_a_moment_ago_is_not_pinged(pg_url):
    engine = create_engine(pg_url, ping_after_idle=3600, pool_size=1)
    try:
        dead = await _backend(engine)
        await _cut(pg_url, dead)
        with pytest.raises(DBAPIError) as failed:
            await _backend(engine)
        assert failed.value.connection_invalidated
        assert await _backend(engine) != dead
    finally:
        await engine.dispose()
