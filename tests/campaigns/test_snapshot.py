"""The recipient snapshot queued in chunks: the first chunk of the audience when sending starts,
the next ones by the workers as the campaign sends. What a user sees: everyone in the audience at
the start gets the message exactly once, the total and the quota are the whole snapshot from the
start, and nobody who left (or joined) since gets it."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from mailcast.campaigns import service
from mailcast.db.models import AccountUsage, Contact, Delivery


async def _queued(sessions, campaign_id: str) -> set[str]:
    async with sessions() as session:
        return set(
            (
                await session.execute(
                    select(Delivery.contact_id).where(Delivery.campaign_id == campaign_id)
                )
            ).scalars()
        )


async def _usage(sessions) -> int:
    async with sessions() as session:
        return (await session.execute(select(AccountUsage.marketing_emails))).scalar_one()


async def _emails(sessions) -> dict[str, str]:
    async with sessions() as session:
        return dict((await session.execute(select(Contact.id, Contact.email))).all())


async def test_a_campaign_larger_than_a_chunk_reaches_everyone_once(
    tenant, settings, worker, relay, sessions
):
    settings.queue_fill_chunk = 3
    settings.worker_batch_size = 6
    c = await tenant.campaign(await tenant.audience(contacts=8), draft=None)
    assert len(await _queued(sessions, c["id"])) == 3
    got = (await tenant.get(f"/v1/campaigns/{c['id']}")).json()
    assert got["stats"]["total_recipients"] == 8  # the whole snapshot, before it is all queued
    assert await _usage(sessions) == 8

    await worker.sender.send_batch()  # fills one chunk ahead of what it claims, and sends it
    assert len(relay.handler.messages) == 6
    assert (await tenant.get(f"/v1/campaigns/{c['id']}")).json()["status"] == "sending"

    await worker.run_until_idle()
    counts = relay.handler.counts()
    assert sorted(counts) == sorted((await _emails(sessions)).values()) and set(
        counts.values()
    ) == {1}
    got = (await tenant.get(f"/v1/campaigns/{c['id']}")).json()
    assert (
        got["status"] == "sent"
        and got["stats"]["total_recipients"] == 8
        and got["stats"]["sent_count"] == 8
    )
    assert await _usage(sessions) == 8


async def test_who_left_or_joined_after_the_start_is_not_sent_to(
    tenant, settings, worker, relay, sessions, clock
):
    settings.queue_fill_chunk = 2
    audience = await tenant.audience(contacts=7)
    c = await tenant.campaign(audience, draft=None)
    emails = await _emails(sessions)
    rest = sorted(set(emails) - await _queued(sessions, c["id"]))
    # The next chunk (the next two members in queue order) loses both members: one unsubscribes
    # (from another campaign), one is taken out of the audience. A worker finds nobody in it and
    # goes on to the chunk after, instead of calling the campaign done.
    async with sessions() as session:
        await session.execute(
            update(Contact).where(Contact.id == rest[0]).values(unsubscribed=True)
        )
        await session.commit()
    assert (
        await tenant.request("DELETE", f"/v1/audiences/{audience}/contacts/{rest[1]}")
    ).status_code == 200
    clock.advance(seconds=1)
    r = await tenant.post(
        "/v1/contacts/import",
        json={"contacts": [{"email": "late@example.org"}], "audience_id": audience},
    )
    assert r.json()["created"] == 1

    await worker.run_until_idle()
    counts = relay.handler.counts()
    assert sorted(counts) == sorted(e for cid, e in emails.items() if cid not in rest[:2])
    assert set(counts.values()) == {1} and "late@example.org" not in counts
    got = (await tenant.get(f"/v1/campaigns/{c['id']}")).json()
    assert got["status"] == "sent" and got["stats"]["total_recipients"] == 5
    assert await _usage(sessions) == 5  # the two who left are given back to the month's quota


async def test_cancelling_a_half_queued_campaign_gives_back_the_rest(
    tenant, settings, worker, relay, sessions
):
    settings.queue_fill_chunk = 2
    settings.worker_batch_size = 2
    c = await tenant.campaign(await tenant.audience(contacts=9), draft=None)
    assert await worker.sender.send_batch() == 2  # queued 2 more, sent 2
    assert (await tenant.post(f"/v1/campaigns/{c['id']}/pause")).status_code == 200
    assert await worker.sender.send_batch() == 0  # a paused campaign is not filled either
    assert len(await _queued(sessions, c["id"])) == 4
    assert (await tenant.post(f"/v1/campaigns/{c['id']}/cancel")).status_code == 200

    await worker.run_until_idle()
    assert len(relay.handler.messages) == 2
    got = (await tenant.get(f"/v1/campaigns/{c['id']}")).json()
    assert got["status"] == "cancelled" and got["stats"]["total_recipients"] == 2
    assert await _usage(sessions) == 2


async def test_one_fill_of_a_campaign_at_a_time(tenant, settings, sessions, clock, engine):
    if engine.dialect.name == "sqlite":
        pytest.skip(
            "SQLite serialises whole transactions (BEGIN IMMEDIATE); they cannot interleave"
        )
    settings.queue_fill_chunk = 2
    c = await tenant.campaign(await tenant.audience(contacts=6), draft=None)
    async with sessions() as first, sessions() as second:
        assert await service.fill_queue(first, settings, c["id"], clock()) == 2
        assert (
            await service.fill_queue(second, settings, c["id"], clock()) is None
        )  # skips; nothing waits
        await first.commit()
    async with sessions() as session:
        assert await service.fill_queue(session, settings, c["id"], clock()) == 2
        await session.commit()
    async with (
        sessions() as session
    ):  # the last chunk ended at the last member: this one finds none left
        assert await service.fill_queue(session, settings, c["id"], clock()) == 0
        await session.commit()
    async with sessions() as session:
        assert await service.fill_queue(session, settings, c["id"], clock()) is None  # full
    assert len(await _queued(sessions, c["id"])) == 6


async def test_deferred_rows_do_not_hold_back_the_rest_of_the_snapshot(
    tenant, settings, worker, relay, sessions, clock
):
    """Rows waiting for a retry still count as unsent, but they are not due: a worker whose claim
    comes back short queues the next chunk at once instead of idling until the retries."""
    settings.queue_fill_chunk = 2
    settings.worker_batch_size = 4
    c = await tenant.campaign(await tenant.audience(contacts=7), draft=None)
    emails = await _emails(sessions)
    first = sorted(emails)[:4]  # the first two chunks in queue order: deferred by the relay
    relay.handler.defer_once = {emails[cid] for cid in first}
    await worker.run_until_idle()
    assert sorted(relay.handler.counts()) == sorted(
        e for cid, e in emails.items() if cid not in first
    )
    assert (await tenant.get(f"/v1/campaigns/{c['id']}")).json()[
        "status"
    ] == "sending"  # the retries are due later
    clock.advance(seconds=61)
    await worker.run_until_idle()
    counts = relay.handler.counts()
    assert sorted(counts) == sorted(emails.values()) and set(counts.values()) == {1}
    assert (await tenant.get(f"/v1/campaigns/{c['id']}")).json()["status"] == "sent"
