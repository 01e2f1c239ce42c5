"""Real processes that die (kill -9 of the workers, of the relay) lose no recipient: everyone
gets the campaign, only a row flagged `in_doubt` may get it twice, and there are at most as many
of those as the dead processes held relay connections."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from mailcast.accounts import service as accounts
from mailcast.app import create_app
from mailcast.clock import FixedClock
from mailcast.config import Settings
from mailcast.db.engine import create_engine, session_factory
from mailcast.db.migrate import upgrade
from mailcast.db.models import Delivery
from tests.conftest import Tenant

POOL = 4  # relay connections a process holds (MAILCAST_SMTP_POOL_SIZE)
LEASE = 10  # seconds (MAILCAST_WORKER_LEASE_SECONDS): a dead process's batch is taken over after it


def _env(settings, relay_url: str, extra: dict | None = None) -> dict:
    return {
        **os.environ,
        "MAILCAST_DATABASE_URL": settings.database_url,
        "MAILCAST_DATA_DIR": str(settings.data_dir),
        "MAILCAST_QUEUE_FILL_CHUNK": str(settings.queue_fill_chunk),
        "MAILCAST_SECRET_KEY": settings.secret_key.get_secret_value(),
        "MAILCAST_SMTP_URL": relay_url,
        "MAILCAST_SMTP_POOL_SIZE": str(POOL),
        "MAILCAST_WORKER_LEASE_SECONDS": str(LEASE),
        "MAILCAST_WORKER_BATCH_SIZE": "200",
        "MAILCAST_WORKER_CONCURRENCY": "50",
        "MAILCAST_WORKER_POLL_SECONDS": "0.2",
        "MAILCAST_RETRY_BASE_SECONDS": "1",
        # the campaign was queued at the tests' fixed time, long before the workers' now
        "MAILCAST_RETRY_LIFETIME_HOURS": "100000",
        **(extra or {}),
    }


def _spawn_worker(settings, relay, worker_env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mailcast.cli", "worker"],
        env=_env(settings, relay.url, worker_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _spawn_server(settings, relay) -> subprocess.Popen:
    """`mailcast serve` with its embedded worker (the SQLite default)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.Popen(
        [sys.executable, "-m", "mailcast.cli", "serve", "--port", str(port), "--no-access-log"],
        env=_env(settings, relay.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _senders(settings, relay, engine) -> list[subprocess.Popen]:
    """PostgreSQL: three `mailcast worker`; SQLite: one `mailcast serve` with its worker."""
    if engine.dialect.name == "sqlite":
        return [_spawn_server(settings, relay)]
    return [_spawn_worker(settings, relay) for _ in range(3)]


async def _kill(processes: list[subprocess.Popen], sig=signal.SIGKILL) -> None:
    for p in processes:
        p.send_signal(sig)
    for p in processes:
        await asyncio.to_thread(p.wait, 30)


async def _statuses(sessions, campaign_id: str) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.campaign_id == campaign_id)
            .group_by(Delivery.status)
        )
        return dict(rows.all())


async def _figures_agree(tenant, campaign_id: str, statuses: dict[str, int]) -> None:
    """The campaign's figures (counts the database keeps as several processes record) equal a
    recount of its deliveries."""
    stats = (await tenant.get(f"/v1/campaigns/{campaign_id}/stats")).json()
    bounced = statuses.get("bounced", 0)
    assert (stats["total"], stats["sent"], stats["bounced"]) == (
        sum(statuses.values()),
        statuses.get("sent", 0) + bounced,
        bounced,
    )


async def _books_balance(
    tenant, sessions, relay, campaign_id: str, n: int, connections: int, case: str, seconds: float
) -> None:
    """Asserts the promises, and prints the case's figures (docs/reliability.md reports them)."""
    statuses = await _statuses(sessions, campaign_id)
    assert sum(statuses.values()) == n
    assert sum(statuses.get(s, 0) for s in ("sent", "failed", "bounced", "unknown")) == n, statuses
    counts = relay.handler.counts()
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Delivery.email, Delivery.in_doubt).where(Delivery.campaign_id == campaign_id)
            )
        ).all()
    missing = [email for email, _ in rows if counts[email] == 0]
    assert not missing, f"{len(missing)} recipients never received the campaign"
    twice = [email for email, in_doubt in rows if counts[email] > 1 and not in_doubt]
    assert not twice, f"{len(twice)} recipients got it twice without being flagged in doubt"
    in_doubt = sum(1 for _, flagged in rows if flagged)
    print(
        f"\nFAULT {case}: recipients {n}, lost {len(missing)}, received twice "
        f"{sum(1 for email, _ in rows if counts[email] > 1)}, in doubt {in_doubt} (connections "
        f"{connections}), "
        f"unknown {statuses.get('unknown', 0)}, finished {seconds:.1f} s after the fault"
    )
    assert in_doubt <= connections, f"{in_doubt} rows in doubt, {connections} relay connections"
    await _figures_agree(tenant, campaign_id, statuses)


async def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.1)  # the relay runs on this loop: never block it
    raise AssertionError(f"timed out waiting for {what}")


async def _wait_until_sent(tenant, campaign: dict, timeout: float = 180) -> None:
    async def done():
        r = await tenant.get(f"/v1/campaigns/{campaign['id']}")
        return r.json() if r.status_code == 200 and r.json()["status"] == "sent" else None

    await _wait_for(done, timeout, "the campaign to finish")


async def _campaign(tenant, n: int) -> dict:
    await tenant.verified_domain()
    audience = (await tenant.post("/v1/audiences", json={"name": "Crash"})).json()["id"]
    rows = [{"email": f"r{i}@example.org", "first_name": f"R{i}"} for i in range(n)]
    assert (
        await tenant.post("/v1/contacts/import", json={"contacts": rows, "audience_id": audience})
    ).status_code == 200
    return await tenant.campaign(audience, draft=None)


async def _received(relay, n: int) -> bool:
    return len(relay.handler.messages) >= n


@pytest.mark.parametrize("at", [0.1, 0.5, 0.9], ids=["at-10%", "at-50%", "at-90%"])
async def test_kill_minus_nine_at_any_moment_loses_nobody(
    tenant, sessions, settings, relay, engine, at
):
    n = 3000
    settings.queue_fill_chunk = 700  # the workers queue the snapshot as they send, too
    campaign = await _campaign(tenant, n)
    first = _senders(settings, relay, engine)
    try:
        await _wait_for(lambda: _received(relay, int(n * at)), 120, f"{at:.0%} of the messages")
    finally:
        await _kill(first)
    assert len(relay.handler.messages) < n, "the campaign finished before it could be killed"

    restarted = time.monotonic()
    second = _senders(settings, relay, engine)
    try:
        await _wait_until_sent(tenant, campaign)
    finally:
        await _kill(second, signal.SIGTERM)
    seconds = time.monotonic() - restarted
    assert seconds < 60, "the campaign took more than a minute after the restart"
    await _books_balance(
        tenant,
        sessions,
        relay,
        campaign["id"],
        n,
        POOL * len(first),
        f"kill -9 at {at:.0%} ({engine.dialect.name})",
        seconds,
    )


async def test_a_relay_that_dies_and_comes_back_loses_nobody(
    tenant, sessions, settings, relay, engine
):
    n = 3000
    campaign = await _campaign(tenant, n)
    senders = _senders(settings, relay, engine)
    try:
        await _wait_for(lambda: _received(relay, n // 3), 120, "a third of the messages")
        await relay.kill()
        killed = time.monotonic()
        await asyncio.sleep(2)
        await relay.start()
        await _wait_until_sent(tenant, campaign)
        seconds = time.monotonic() - killed
    finally:
        await _kill(senders, signal.SIGTERM)
    await _books_balance(
        tenant,
        sessions,
        relay,
        campaign["id"],
        n,
        POOL * len(senders),
        f"relay killed, back after 2 s ({engine.dialect.name})",
        seconds,
    )


async def test_several_workers_share_one_campaign(tenant, sessions, settings, relay, engine):
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite runs one worker at a time; several workers need PostgreSQL")
    n = 3000
    settings.queue_fill_chunk = 700
    campaign = await _campaign(tenant, n)
    workers = [
        _spawn_worker(settings, relay, {"MAILCAST_WORKER_BATCH_SIZE": "100"}) for _ in range(3)
    ]
    try:
        await _wait_until_sent(tenant, campaign)
    finally:
        await _kill(workers, signal.SIGTERM)
    counts = relay.handler.counts()
    assert len(counts) == n and set(counts.values()) == {1}  # zero losses, zero duplicates
    assert await _statuses(sessions, campaign["id"]) == {"sent": n}
    await _figures_agree(tenant, campaign["id"], {"sent": n})


def _postgres_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, so it can be restarted under running workers."""

    def __init__(self, directory, port: int) -> None:
        self.directory, self.port = directory, port
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [
                *self.as_owner,
                _postgres_tool("pg_ctl"),
                "-D",
                str(self.directory),
                "-w",
                "-l",
                str(self.directory / "log"),
                "-o",
                f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off",
                *args,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )


@pytest.fixture
def private_postgres():
    if not _postgres_tool("initdb") or not _postgres_tool("pg_ctl"):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    # Not under pytest's folder: the cluster's owner (postgres, when the tests run as root) must
    # reach it.
    directory = Path(tempfile.mkdtemp(prefix="mailcast-cluster-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster = PrivatePostgres(directory, port)
    if cluster.as_owner:
        shutil.chown(directory, "postgres", "postgres")
    subprocess.run(
        [
            *cluster.as_owner,
            _postgres_tool("initdb"),
            "-D",
            str(directory),
            "-U",
            "postgres",
            "--auth=trust",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    cluster.ctl("start")
    try:
        yield cluster
    finally:
        cluster.ctl("stop", "-m", "immediate")
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_postgresql_restart_loses_nobody(private_postgres, tmp_path, dns_server, relay):
    """Three workers send while their database restarts under them."""
    engine = create_engine(private_postgres.url)
    await upgrade(engine)
    clock = FixedClock(datetime.now(UTC))
    settings = Settings(
        data_dir=tmp_path,
        database_url=private_postgres.url,
        dns_nameservers=dns_server.nameserver,
        secret_key="test-secret-key-0123456789abcdef",
        queue_fill_chunk=700,
    )
    sessions = session_factory(engine)
    app = create_app(settings, engine=engine, clock=clock)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mailcast.test"
        ) as client:
            async with sessions() as session:
                account, _key, raw = await accounts.create_account(
                    session, "Restart", "business", clock()
                )
                await session.commit()
            tenant = Tenant(account.id, raw, client, sessions, clock, settings)
            n = 3000
            campaign = await _campaign(tenant, n)
            workers = [_spawn_worker(settings, relay) for _ in range(3)]
            try:
                await _wait_for(lambda: _received(relay, n // 3), 120, "a third of the messages")
                await asyncio.to_thread(private_postgres.ctl, "restart", "-m", "fast")
                restarted = time.monotonic()
                await _wait_until_sent(tenant, campaign)
            finally:
                await _kill(workers, signal.SIGTERM)
            seconds = time.monotonic() - restarted
            assert seconds < 60, "the campaign took more than a minute after the restart"
            await _books_balance(
                tenant,
                sessions,
                relay,
                campaign["id"],
                n,
                POOL * len(workers),
                "PostgreSQL restarted (postgresql)",
                seconds,
            )
    finally:
        await engine.dispose()
