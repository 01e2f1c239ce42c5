"""A campaign's figures come from counts the database keeps with every change of its deliveries
(campaign_counts, kept by triggers): after every kind of change they equal a recount of the
deliveries themselves (and, for readers, of the events), and a campaign's counts go when the
campaign goes."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import and_, distinct, func, or_, select

from mailcast.campaigns import counts
from mailcast.db.models import CampaignCount, Delivery, Event
from mailcast.delivery.store import delivery_store
from mailcast.tracking import service as tracking
from tests.delivery.test_queue import mark_sending

LEASE = timedelta(seconds=60)


async def _recount(sessions, campaign_id: str) -> dict[str, int]:
    async with sessions() as session:
        by_status = dict(
            (
                await session.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.campaign_id == campaign_id)
                    .group_by(Delivery.status)
                )
            ).all()
        )
    return {
        "total": sum(by_status.values()),
        "sent": by_status.get("sent", 0) + by_status.get("bounced", 0),
        "bounced": by_status.get("bounced", 0),
        "failed": by_status.get("failed", 0),
        "unknown": by_status.get("unknown", 0),
    }


async def _counted(sessions, campaign_id: str) -> dict[str, int]:
    async with sessions() as session:
        s = (await counts.stats(session, [campaign_id]))[campaign_id]
    return {
        "total": s.total,
        "sent": s.sent,
        "bounced": s.bounced,
        "failed": s.failed,
        "unknown": s.unknown,
    }


async def _count_rows(sessions, campaign_id: str) -> int:
    async with sessions() as session:
        return (
            await session.execute(
                select(func.count())
                .select_from(CampaignCount)
                .where(CampaignCount.campaign_id == campaign_id)
            )
        ).scalar_one()


async def _agrees(tenant, sessions, campaign_id: str, expected: dict[str, int]) -> None:
    """The counts, the recount and what the test expects all agree, and so does the API."""
    assert await _recount(sessions, campaign_id) == expected
    assert await _counted(sessions, campaign_id) == expected
    stats = (await tenant.get(f"/v1/campaigns/{campaign_id}/stats")).json()
    assert (stats["total"], stats["sent"], stats["bounced"], stats["delivered"]) == (
        expected["total"],
        expected["sent"],
        expected["bounced"],
        expected["sent"] - expected["bounced"],
    )


async def test_counts_follow_every_kind_of_change(tenant, sessions, engine, worker, relay, clock):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=40)
    campaign = await tenant.campaign(audience, draft=None)
    cid = campaign["id"]
    zero = {"total": 40, "sent": 0, "bounced": 0, "failed": 0, "unknown": 0}
    await _agrees(tenant, sessions, cid, zero)  # the snapshot

    # A worker claims and marks five, then dies: once its lease runs out they are due again, in
    # doubt (not a figure meanwhile), and a late answer of that worker no longer lands.
    now = clock()
    async with sessions() as session:
        claimed = await delivery_store(engine).claim(session, "dead", now, 5, LEASE)
        await session.commit()
    async with sessions() as session:
        await mark_sending(session, delivery_store(engine), "dead", claimed, now)
        await session.commit()
    await _agrees(tenant, sessions, cid, zero)  # `sending` is not a figure
    clock.advance(seconds=LEASE.total_seconds() + 1)
    await worker.schedule_once()
    await _agrees(tenant, sessions, cid, zero)
    async with sessions() as session:
        await delivery_store(engine).record(
            session,
            "dead",
            [
                {"id": c.id, "status": "sent", "updated_at": clock(), "sent_at": clock()}
                for c in claimed
            ],
            False,
        )
        await session.commit()
        doubts = (
            (
                await session.execute(
                    select(Delivery.status).where(
                        Delivery.campaign_id == cid, Delivery.in_doubt.is_(True)
                    )
                )
            )
            .scalars()
            .all()
        )
    assert doubts == ["deferred"] * 5
    await _agrees(tenant, sessions, cid, zero)

    # Everyone through the relay (the five again): two rejected (bounced at once), one deferred
    # (not a figure yet).
    rest = sorted(
        f"user{i}@{audience[-8:]}.example.org"
        for i in range(40)
        if f"user{i}@{audience[-8:]}.example.org" not in {c.email for c in claimed}
    )
    relay.handler.reject = set(rest[:2])
    relay.handler.defer_once = {rest[2]}
    await worker.run_until_idle()
    await _agrees(
        tenant, sessions, cid, {"total": 40, "sent": 39, "bounced": 2, "failed": 0, "unknown": 0}
    )
    assert all(relay.handler.counts()[c.email] == 1 for c in claimed)

    # A bounce report after the relay accepted a message: sent -> bounced (still sent).
    async with sessions() as session:
        delivery_id = (
            await session.execute(
                select(Delivery.id)
                .where(Delivery.campaign_id == cid, Delivery.status == "sent")
                .limit(1)
            )
        ).scalar_one()
        assert await tracking.record_bounce(session, delivery_id, True, "550 no such user", clock())
        await session.commit()
    await _agrees(
        tenant, sessions, cid, {"total": 40, "sent": 39, "bounced": 3, "failed": 0, "unknown": 0}
    )

    # Pause and cancel: the deferred row, never handed over, is dropped.
    assert (await tenant.post(f"/v1/campaigns/{cid}/pause")).json()["status"] == "paused"
    assert (await tenant.post(f"/v1/campaigns/{cid}/cancel")).json()["status"] == "cancelled"
    await _agrees(
        tenant, sessions, cid, {"total": 39, "sent": 39, "bounced": 3, "failed": 0, "unknown": 0}
    )

    # However many rows of counts the changes left, folding keeps the sums and leaves one row
    # (PostgreSQL: a row per counting statement; SQLite keeps one anyway).
    assert await _count_rows(sessions, cid) >= 1
    await worker.schedule_once()
    assert await _count_rows(sessions, cid) == 1
    await _agrees(
        tenant, sessions, cid, {"total": 39, "sent": 39, "bounced": 3, "failed": 0, "unknown": 0}
    )

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
        assert (
            await _count_rows(sessions, campaign["id"]) > 1 + 12
        )  # the snapshot's and one a write of outcomes
    await worker.schedule_once()
    assert await _count_rows(sessions, campaign["id"]) == 1
    await _agrees(tenant, sessions, campaign["id"], expected)


async def _readers_from_events(sessions, campaign_id: str) -> dict[str, int]:
    """What the figures of readers mean, counted from the events themselves: deliveries with an
    open / a click by a person, with a complaint, with an unsubscribe."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Event.type, func.count(distinct(Event.delivery_id)))
                .join(Delivery, Delivery.id == Event.delivery_id)
                .where(
                    Delivery.campaign_id == campaign_id,
                    or_(
                        Event.type.in_(("complaint", "unsubscribe")),
                        and_(Event.type.in_(("open", "click")), Event.machine.is_(False)),
                    ),
                )
                .group_by(Event.type)
            )
        ).all()
    found = dict(rows)
    return {
        "opened": found.get("open", 0),
        "clicked": found.get("click", 0),
        "complained": found.get("complaint", 0),
        "unsubscribed": found.get("unsubscribe", 0),
    }


async def test_readers_are_counted_once_a_delivery_and_never_for_machines(
    tenant, sessions, worker, relay, clock
):
    await tenant.verified_domain()
    html = (
        '<html><body><p><a href="https://shop.example.com/sale">Sale</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )
    campaign = await tenant.campaign(await tenant.audience(contacts=12), draft=None, html=html)
    cid = campaign["id"]
    await worker.run_until_idle()
    messages = sorted(relay.handler.messages, key=lambda m: m.rcpt_to)
    browser = {
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) "
        "AppleWebKit/605.1.15 Version/17.5"
    }

    def urls(i: int) -> tuple[str, str, str]:
        html = messages[i].message.get_body(("html",)).get_content()
        return (
            re.search(r'src="http://127.0.0.1:8025(/t/o/[^"]+)"', html).group(1),
            re.search(r'href="http://127.0.0.1:8025(/t/c/[^"]+)"', html).group(1),
            re.search(r'href="http://127.0.0.1:8025(/u/[^"]+)"', html).group(1),
        )

    for i in range(3):  # a mail privacy proxy loads 0-2 the moment they arrive: machine opens
        assert (await tenant.client.get(urls(i)[0], headers=browser)).status_code == 200
    clock.advance(minutes=10)
    for i in range(1, 5):  # people open 1-4, twice each
        for _ in range(2):
            assert (await tenant.client.get(urls(i)[0], headers=browser)).status_code == 200
    for i in (4, 5, 5):  # people click 4 and 5 (5 twice, without loading images: an open too)
        assert (await tenant.client.get(urls(i)[1], headers=browser)).status_code == 302
    for i in (6, 6):  # an unsubscribe, sent twice
        assert (
            await tenant.client.post(urls(i)[2], data={"List-Unsubscribe": "One-Click"})
        ).status_code == 200
    async with sessions() as session:
        delivery_ids = dict(
            (
                await session.execute(
                    select(Delivery.email, Delivery.id).where(Delivery.campaign_id == cid)
                )
            ).all()
        )
    for _ in range(2):  # a complaint, reported twice
        async with sessions() as session:
            assert await tracking.record_complaint(
                session, delivery_ids[messages[7].rcpt_to], clock()
            )
            await session.commit()

    readers = {"opened": 5, "clicked": 2, "complained": 1, "unsubscribed": 1}
    assert await _readers_from_events(sessions, cid) == readers
    async with sessions() as session:
        s = (await counts.stats(session, [cid]))[cid]
    assert {name: getattr(s, name) for name in readers} == readers
    stats = (await tenant.get(f"/v1/campaigns/{cid}/stats")).json()
    assert {name: stats[name] for name in readers} == readers


async def test_the_count_store_folds_and_recounts_to_the_same_figures(
    tenant, sessions, worker, relay, engine
):
    # The contract of both count stores: a fold and a recount change how the counts are kept, never
    # what they add up to, and leave one row a campaign.
    await tenant.verified_domain()
    first = await tenant.campaign(await tenant.audience(contacts=30), draft=None)
    worker.sender.concurrency = 5
    while await worker.sender.send_batch():
        pass
    second = await tenant.campaign(await tenant.audience(contacts=7, name="Other"), draft=None)
    ids = [first["id"], second["id"]]
    async with sessions() as session:
        before = await counts.stats(session, ids)
    assert (before[ids[0]].total, before[ids[0]].sent, before[ids[1]].total) == (30, 30, 7)
    store = counts.count_store(engine)
    for change in (store.fold, store.fold, store.recount, store.fold):
        async with sessions() as session:
            await change(session)
            await session.commit()
        async with sessions() as session:
            assert await counts.stats(session, ids) == before
        assert [await _count_rows(sessions, i) for i in ids] == [1, 1]
