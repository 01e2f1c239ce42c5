"""Worker processes that die (kill -9) or run side by side lose no recipient and send nobody
two messages."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from mailcast.db.models import Delivery


def _spawn_worker(settings, relay, worker_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "MAILCAST_DATABASE_URL": settings.database_url, "MAILCAST_DATA_DIR": str(settings.data_dir),
           "MAILCAST_QUEUE_FILL_CHUNK": str(settings.queue_fill_chunk),
           "MAILCAST_SECRET_KEY": settings.secret_key.get_secret_value(), "MAILCAST_SMTP_URL": relay.url,
           "MAILCAST_WORKER_LEASE_SECONDS": "10", "MAILCAST_WORKER_BATCH_SIZE": "200",
           "MAILCAST_WORKER_CONCURRENCY": "50", "MAILCAST_WORKER_POLL_SECONDS": "0.2", **(worker_env or {})}
    return subprocess.Popen([sys.executable, "-m", "mailcast.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _statuses(sessions, campaign_id: str) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(select(Delivery.status, func.count()).where(Delivery.campaign_id == campaign_id)
                                     .group_by(Delivery.status))
        return dict(rows.all())


async def _figures_agree(tenant, campaign_id: str, statuses: dict[str, int]) -> None:
    """The campaign's figures (counts the database keeps as several processes record) equal a
    recount of its deliveries."""
    stats = (await tenant.get(f"/v1/campaigns/{campaign_id}/stats")).json()
    bounced = statuses.get("bounced", 0)
    assert (stats["total"], stats["sent"], stats["bounced"]) == (
        sum(statuses.values()), statuses.get("sent", 0) + bounced, bounced)


async def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.2)  # the relay runs on this loop: never block it
    raise AssertionError(f"timed out waiting for {what}")


async def _wait_until_sent(tenant, campaign: dict) -> None:
    async def done():
        c = (await tenant.get(f"/v1/campaigns/{campaign['id']}")).json()
        return c if c["status"] == "sent" else None
    await _wait_for(done, 180, "the campaign to finish")


async def _campaign(tenant, n: int) -> dict:
    await tenant.verified_domain()
    audience = (await tenant.post("/v1/audiences", json={"name": "Crash"})).json()["id"]
    rows = [{"email": f"r{i}@example.org", "first_name": f"R{i}"} for i in range(n)]
    assert (await tenant.post("/v1/contacts/import", json={"contacts": rows, "audience_id": audience})).status_code == 200
    return await tenant.campaign(audience, draft=None)


# The recipient snapshot queued whole at the start, or a chunk at the start and the rest by the
# workers while they send (MAILCAST_QUEUE_FILL_CHUNK).
SNAPSHOTS = pytest.mark.parametrize("chunk", [10_000, 700], ids=["queued-at-start", "queued-by-the-workers"])


@SNAPSHOTS
async def test_kill_minus_nine_mid_campaign_loses_nobody(tenant, sessions, settings, relay, chunk):
    n = 5000
    settings.queue_fill_chunk = chunk
    campaign = await _campaign(tenant, n)
    first = _spawn_worker(settings, relay)
    try:
        await _wait_for(lambda: _count_at_least(relay, 1500), 120, "the first 1,500 messages")
    finally:
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 30)
    killed_at = len(relay.handler.messages)
    assert killed_at < n, "the worker finished before it could be killed"

    second = _spawn_worker(settings, relay)
    try:
        await _wait_until_sent(tenant, campaign)
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)

    statuses = await _statuses(sessions, campaign["id"])
    counts = relay.handler.counts()
    assert max(counts.values()) == 1, "somebody got two messages"
    assert sum(statuses.values()) == n
    assert statuses.get("sent", 0) + statuses.get("failed", 0) + statuses.get("bounced", 0) + \
        statuses.get("unknown", 0) == n
    # Everyone the database calls sent received exactly one message; unknown ones received at most one.
    async with sessions() as session:
        rows = (await session.execute(select(Delivery.email, Delivery.status)
                                      .where(Delivery.campaign_id == campaign["id"]))).all()
    for email_address, status in rows:
        if status == "sent":
            assert counts[email_address] == 1, email_address
        elif status == "unknown":
            assert counts[email_address] <= 1
    assert statuses.get("unknown", 0) <= 50  # at most one chunk was in flight when the worker died
    await _figures_agree(tenant, campaign["id"], statuses)


async def _count_at_least(relay, n: int) -> bool:
    return len(relay.handler.messages) >= n


@SNAPSHOTS
async def test_several_workers_share_one_campaign(tenant, sessions, settings, relay, engine, chunk):
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite runs one worker at a time; several workers need PostgreSQL")
    n = 3000
    settings.queue_fill_chunk = chunk
    campaign = await _campaign(tenant, n)
    workers = [_spawn_worker(settings, relay, {"MAILCAST_WORKER_BATCH_SIZE": "100"}) for _ in range(3)]
    try:
        await _wait_until_sent(tenant, campaign)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            await asyncio.to_thread(w.wait, 30)
    counts = relay.handler.counts()
    assert len(counts) == n and set(counts.values()) == {1}  # zero losses, zero duplicates
    assert await _statuses(sessions, campaign["id"]) == {"sent": n}
    await _figures_agree(tenant, campaign["id"], {"sent": n})
