"""A campaign's figures come from counts the database keeps with every change of its deliveries
(campaign_counts, kept by triggers): after every kind of change they equal a recount of the
deliveries themselves, and a campaign's counts go when the campaign goes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from mailcast.campaigns import repository as campaigns_repo
from mailcast.db.models import CampaignCount, Delivery
from mailcast.delivery import repository as queue
from mailcast.tracking import service as tracking

LEASE = timedelta(seconds=60)


async def _recount(sessions, campaign_id: str) -> dict[str, int]:
    async with sessions() as session:
        by_status = dict((await session.execute(
            select(Delivery.status, func.count()).where(Delivery.campaign_id == campaign_id)
            .group_by(Delivery.status))).all())
    return {"total": sum(by_status.values()), "sent": by_status.get("sent", 0) + by_status.get("bounced", 0),
            "bounced": by_status.get("bounced", 0), "failed": by_status.get("failed", 0),
            "unknown": by_status.get("unknown", 0)}


async def _counted(sessions, campaign_id: str) -> dict[str, int]:
    async with sessions() as session:
        s = (await campaigns_repo.stats(session, [campaign_id]))[campaign_id]
    return {"total": s.total, "sent": s.sent, "bounced": s.bounced, "failed": s.failed, "unknown": s.unknown}


async def _count_rows(sessions, campaign_id: str) -> int:
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(CampaignCount)
                                      .where(CampaignCount.campaign_id == campaign_id))).scalar_one()


async def _agrees(tenant, sessions, campaign_id: str, expected: dict[str, int]) -> None:
    """The counts, the recount and what the test expects all agree, and so does the API."""
    assert await _recount(sessions, campaign_id) == expected
    assert await _counted(sessions, campaign_id) == expected
    stats = (await tenant.get(f"/v1/campaigns/{campaign_id}/stats")).json()
    assert (stats["total"], stats["sent"], stats["bounced"], stats["delivered"]) == (
        expected["total"], expected["sent"], expected["bounced"], expected["sent"] - expected["bounced"])


async def test_counts_follow_every_kind_of_change(tenant, sessions, worker, relay, clock):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=40)
    campaign = await tenant.campaign(audience, draft=None)
    cid = campaign["id"]
    zero = {"total": 40, "sent": 0, "bounced": 0, "failed": 0, "unknown": 0}
    await _agrees(tenant, sessions, cid, zero)  # the snapshot

    # A worker claims and marks a chunk, then dies: the recovery calls it unknown ...
    now = clock()
    async with sessions() as session:
        claimed = await queue.claim(session, "dead", now, 5, LEASE)
        await session.commit()
    async with sessions() as session:
        await queue.mark_sending(session, "dead", claimed, now, LEASE)
        await session.commit()
    await _agrees(tenant, sessions, cid, zero)  # `sending` is not a figure
    clock.advance(seconds=LEASE.total_seconds() + 1)
    await worker.schedule_once()
    await _agrees(tenant, sessions, cid, {**zero, "unknown": 5})
    # ... and its late answer still lands: unknown -> sent for three, failed for one.
    answers = [{"id": c.id, "status": "sent", "updated_at": clock(), "sent_at": clock()} for c in claimed[:3]]
    answers.append({"id": claimed[3].id, "status": "failed", "updated_at": clock()})
    async with sessions() as session:
        await queue.record(session, "dead", answers)
        await session.commit()
    await _agrees(tenant, sessions, cid, {**zero, "sent": 3, "failed": 1, "unknown": 1})

    # The rest through the relay: two rejected (bounced at once), one deferred (not a figure yet).
    rest = sorted(f"user{i}@{audience[-8:]}.example.org" for i in range(40)
                  if f"user{i}@{audience[-8:]}.example.org" not in {c.email for c in claimed})
    relay.handler.reject = set(rest[:2])
    relay.handler.defer_once = {rest[2]}
    await worker.run_until_idle()
    await _agrees(tenant, sessions, cid, {"total": 40, "sent": 3 + 34, "bounced": 2, "failed": 1, "unknown": 1})

    # A bounce report after the relay accepted a message: sent -> bounced (still sent).
    async with sessions() as session:
        delivery_id = (await session.execute(select(Delivery.id).where(
            Delivery.campaign_id == cid, Delivery.status == "sent").limit(1))).scalar_one()
        assert await tracking.record_bounce(session, delivery_id, True, "550 no such user", clock())
        await session.commit()
    await _agrees(tenant, sessions, cid, {"total": 40, "sent": 37, "bounced": 3, "failed": 1, "unknown": 1})

    # Pause and cancel: the deferred row, never handed over, is dropped.
    assert (await tenant.post(f"/v1/campaigns/{cid}/pause")).json()["status"] == "paused"
    assert (await tenant.post(f"/v1/campaigns/{cid}/cancel")).json()["status"] == "cancelled"
    await _agrees(tenant, sessions, cid, {"total": 39, "sent": 37, "bounced": 3, "failed": 1, "unknown": 1})

    # However many rows of counts the changes left, folding keeps the sums and leaves one row
    # (PostgreSQL: a row per counting statement; SQLite keeps one anyway).
    assert await _count_rows(sessions, cid) >= 1
    await worker.schedule_once()
    assert await _count_rows(sessions, cid) == 1
    await _agrees(tenant, sessions, cid, {"total": 39, "sent": 37, "bounced": 3, "failed": 1, "unknown": 1})

    assert (await tenant.request("DELETE", f"/v1/campaigns/{cid}")).status_code == 200
    assert await _count_rows(sessions, cid) == 0


async def test_many_rows_of_counts_read_as_their_sum(tenant, sessions, worker, relay, engine):
    """Each chunk a worker records adds a row of counts on PostgreSQL; the figures read between
    two folds are their sum, and a fold keeps it."""
    await tenant.verified_domain()
    campaign = await tenant.campaign(await tenant.audience(contacts=120), draft=None)
    worker.sender.concurrency = 10
    while await worker.sender.send_batch():
        pass
    expected = {"total": 120, "sent": 120, "bounced": 0, "failed": 0, "unknown": 0}
    await _agrees(tenant, sessions, campaign["id"], expected)
    if engine.dialect.name == "postgresql":
        assert await _count_rows(sessions, campaign["id"]) == 1 + 12  # the snapshot's and one a chunk
    await worker.schedule_once()
    assert await _count_rows(sessions, campaign["id"]) == 1
    await _agrees(tenant, sessions, campaign["id"], expected)
