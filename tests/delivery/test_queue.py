"""The send queue's leases, one per claimed batch: what another worker may and may not take, and
what a worker whose lease ran out may still send. Driven through the delivery store (PostgreSQL's
and SQLite's: the suite runs on both) with the test clock (the worker processes of
test_crash_safety.py show the same end to end)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from mailcast.db.models import Campaign, Delivery
from mailcast.delivery.repository import Claimed
from mailcast.delivery.store import DeliveryStore, delivery_store

LEASE = timedelta(seconds=60)


def _store(sessions) -> DeliveryStore:
    return delivery_store(sessions.kw["bind"])


async def mark_sending(session, store: DeliveryStore, worker: str, chunk, now) -> dict:
    """What the sender does before a chunk goes out: the rows still ours, marked, with contacts."""
    ours = await store.prepare(session, worker, chunk, now, LEASE)
    marked = await store.mark_on_wire(session, worker, list(ours), now, LEASE)
    return {id_: recipient for id_, recipient in ours.items() if id_ in marked}


async def _claim(sessions, worker: str, now, limit: int = 100) -> list[Claimed]:
    async with sessions() as session:
        claimed = await _store(sessions).claim(session, worker, now, limit, LEASE)
        await session.commit()
        return claimed


async def _mark(sessions, worker: str, chunk, now) -> set[int]:
    async with sessions() as session:
        ours = await mark_sending(session, _store(sessions), worker, chunk, now)
        await session.commit()
        return set(ours)


async def _sending_campaign(tenant, recipients: int) -> None:
    campaign = await tenant.campaign(await tenant.audience(contacts=recipients), draft=None)
    assert campaign["status"] == "sending"


async def test_a_batch_is_one_workers_until_its_lease_runs_out(tenant, sessions, clock):
    await _sending_campaign(tenant, 6)
    start = clock()
    a = await _claim(sessions, "a", start, limit=4)
    b = await _claim(sessions, "b", start)
    assert len(a) == 4 and len(b) == 2 and not {d.id for d in a} & {d.id for d in b}
    assert await _claim(sessions, "c", start + timedelta(seconds=59)) == []

    later = start + timedelta(seconds=61)  # both leases ran out; nothing was sent
    d = await _claim(sessions, "d", later)
    assert {x.id for x in d} == {x.id for x in a + b}
    # The first owners come back: their leases were taken over, so they send nothing.
    assert await _mark(sessions, "a", a, later) == set()
    assert await _mark(sessions, "b", b, later) == set()
    assert await _mark(sessions, "d", d, later) == {x.id for x in d}


async def test_a_renewed_lease_keeps_its_rows_and_an_ended_one_frees_them(tenant, sessions, clock):
    await _sending_campaign(tenant, 6)
    start = clock()
    a = await _claim(sessions, "a", start, limit=4)
    assert await _mark(sessions, "a", a[:2], start + timedelta(seconds=50)) == {x.id for x in a[:2]}

    # 70 s after the claim, but 20 s after the renewal: a's two unsent rows are still a's.
    b = await _claim(sessions, "b", start + timedelta(seconds=70))
    assert len(b) == 2 and not {x.id for x in b} & {x.id for x in a}
    assert await _mark(sessions, "a", a[2:3], start + timedelta(seconds=71)) == {a[2].id}

    await _stop_early(sessions, "a", a)  # what it did not send is free at once
    c = await _claim(sessions, "c", start + timedelta(seconds=72))
    assert [x.id for x in c] == [a[3].id]


async def _record_sent(sessions, worker: str, rows, now) -> None:
    """Mark these rows sending, then record them sent."""
    assert await _mark(sessions, worker, rows, now) == {x.id for x in rows}
    async with sessions() as session:
        await _store(sessions).record(
            session, worker, [{"id": x.id, "status": "sent", "sent_at": now} for x in rows], False
        )
        await session.commit()


async def _send(sessions, worker: str, batch, now) -> None:
    """What the sender does with a batch: every row sent, then its lease ended."""
    await _record_sent(sessions, worker, batch, now)
    async with sessions() as session:
        await _store(sessions).end_leases(session, worker, {x.lease_id for x in batch}, True)
        await session.commit()


async def _stop_early(sessions, worker: str, batch) -> None:
    """A worker lets its batch go unsent."""
    async with sessions() as session:
        await _store(sessions).end_leases(session, worker, {x.lease_id for x in batch}, False)
        await session.commit()


async def _start(sessions, campaign_id: str) -> int | None:
    """The id of the row where the campaign's claims start reading (None: the head)."""
    async with sessions() as session:
        return (
            await session.execute(select(Campaign.queue_from_id).where(Campaign.id == campaign_id))
        ).scalar_one()


def _ids(batch) -> list[int]:
    return [x.id for x in batch]


async def test_a_batch_claimed_alone_moves_the_start_past_it_when_sent(tenant, sessions, clock):
    """One worker, batch after batch: the next claim starts at the last row of the batch sent
    before, not at its first (its sent rows would be walked past again)."""
    await _sending_campaign(tenant, 6)
    now = clock()
    first = await _claim(sessions, "a", now, limit=2)
    assert await _start(sessions, first[0].campaign_id) is None  # the claim left it at the head
    await _send(sessions, "a", first, now)
    assert await _start(sessions, first[0].campaign_id) == first[-1].id
    second = await _claim(sessions, "a", now, limit=2)
    await _send(sessions, "a", second, now)
    third = await _claim(sessions, "a", now, limit=2)
    assert len(set(_ids(first + second + third))) == 6


async def test_a_batch_let_go_half_sent_keeps_its_other_rows_first_in_line(tenant, sessions, clock):
    await _sending_campaign(tenant, 6)
    now = clock()
    a = await _claim(sessions, "a", now, limit=4)
    await _record_sent(sessions, "a", a[:2], now)
    await _stop_early(sessions, "a", a)
    b = await _claim(sessions, "b", now, limit=2)
    assert _ids(b) == _ids(a[2:])


async def test_a_batch_that_skipped_another_lease_does_not_move_the_start(tenant, sessions, clock):
    """b's claim skips a's live lease; a then lets its rows go unsent and b sends all of its
    own. The start stays before a's rows: the next claim takes them first."""
    await _sending_campaign(tenant, 6)
    now = clock()
    a = await _claim(sessions, "a", now, limit=2)
    b = await _claim(sessions, "b", now, limit=2)
    await _stop_early(sessions, "a", a)
    await _send(sessions, "b", b, now)
    c = await _claim(sessions, "c", now, limit=2)
    assert _ids(c) == _ids(a)


async def test_the_start_does_not_move_past_an_older_lease(tenant, sessions, clock):
    """A lease that began before a sole one (a claim that read from the head as well, for a row
    due before the start) bounds where the sole one's end moves the start."""
    await _sending_campaign(tenant, 6)
    now = clock()
    a = await _claim(sessions, "a", now, limit=2)
    async with sessions() as session:  # a retry due before the start (written by a clock behind)
        late = (
            await session.execute(
                select(Delivery.id)
                .where(Delivery.campaign_id == a[0].campaign_id)
                .order_by(Delivery.id.desc())
                .limit(1)
            )
        ).scalar_one()
        await session.execute(
            update(Delivery)
            .where(Delivery.id == late)
            .values(status="deferred", next_attempt_at=now - timedelta(hours=1))
        )
        await session.commit()
    b = await _claim(sessions, "b", now, limit=10)  # 3 from the start, so from the head: all 4
    assert _ids(b)[0] == late and len(b) == 4
    await _send(sessions, "a", a, now)
    await _stop_early(sessions, "b", b)
    c = await _claim(sessions, "c", now, limit=3)
    assert _ids(c) == _ids(b[:3])


async def test_a_row_due_before_where_claims_start_reading_is_still_claimed(
    tenant, sessions, clock
):
    """Claims start reading a campaign's queue where its oldest live lease began, past the rows
    sent before. A retry whose due time comes before that (a worker whose clock is behind wrote
    it) is found all the same, by the claim that finds less than a full batch from there."""
    await _sending_campaign(tenant, 6)
    now = clock()
    first = await _claim(sessions, "a", now, limit=2)
    await _send(sessions, "a", first, now)
    second = await _claim(sessions, "a", now, limit=2)
    assert not {x.id for x in first} & {x.id for x in second}
    await _send(sessions, "a", second, now)
    left = await _claim(sessions, "b", now, limit=2)  # the last two, leased and let go unsent
    async with sessions() as session:
        await _store(sessions).end_leases(session, "b", {x.lease_id for x in left}, False)
        await session.execute(
            update(Delivery)
            .where(Delivery.id == left[0].id)
            .values(status="deferred", next_attempt_at=now - timedelta(hours=1))
        )
        await session.commit()
    again = await _claim(sessions, "c", now, limit=2)
    assert {x.id for x in again} == {x.id for x in left}


async def test_a_batch_reads_its_contacts_as_they_are_when_it_sends(tenant, sessions, clock):
    """A batch waits its turn after the claim (chunk after chunk): whoever unsubscribes, is
    deleted or is renamed meanwhile gets nothing or the new name."""
    await _sending_campaign(tenant, 3)
    now = clock()
    batch = await _claim(sessions, "a", now)
    leaving, deleted, renamed = [
        (await tenant.get("/v1/contacts", params={"email": d.email})).json()["data"][0]
        for d in batch
    ]
    await tenant.request("PATCH", f"/v1/contacts/{leaving['id']}", json={"unsubscribed": True})
    assert (await tenant.request("DELETE", f"/v1/contacts/{deleted['id']}")).status_code == 200
    await tenant.request("PATCH", f"/v1/contacts/{renamed['id']}", json={"first_name": "Renamed"})
    async with sessions() as session:
        ours = await mark_sending(session, _store(sessions), "a", batch, now)
        await session.commit()
    assert [ours[d.id].reachable for d in batch] == [False, False, True]
    assert ours[batch[2].id].first_name == "Renamed"


async def _rows(sessions, ids) -> dict[int, tuple]:
    async with sessions() as session:
        rows = await session.execute(
            select(
                Delivery.id, Delivery.status, Delivery.lease_owner, Delivery.smtp_response
            ).where(Delivery.id.in_(list(ids)))
        )
        return {r[0]: tuple(r[1:]) for r in rows}


async def test_an_outcome_lands_only_on_a_row_its_worker_holds(tenant, sessions, clock):
    await _sending_campaign(tenant, 4)
    now = clock()
    batch = await _claim(sessions, "a", now)
    await _mark(sessions, "a", batch[:2], now)
    store = _store(sessions)
    async with sessions() as session:
        # b never marked these: its answers are dropped.
        await store.record(session, "b", [{"id": batch[0].id, "status": "failed"}], False)
        # Marked rows are not pending any more: an "unsent" outcome leaves them alone.
        await store.record(session, "a", [{"id": batch[1].id, "status": "failed"}], True)
        # A row never marked takes an "unsent" outcome: nothing went on the wire.
        await store.record(
            session, "a", [{"id": batch[2].id, "status": "failed", "smtp_response": "x"}], True
        )
        await store.record(
            session,
            "a",
            [{"id": batch[0].id, "status": "sent", "smtp_response": "250 ok"}],
            False,
        )
        await session.commit()
    rows = await _rows(sessions, _ids(batch))
    assert rows[batch[0].id] == ("sent", None, "250 ok")
    assert rows[batch[1].id][:2] == ("sending", "a")
    assert rows[batch[2].id] == ("failed", None, "x")
    assert rows[batch[3].id][0] == "queued"


async def test_the_fast_write_is_a_record_of_sent_mail_and_the_next_marks(tenant, sessions, clock):
    # Where the store has one (PostgreSQL), the fast write leaves the rows exactly as `record` of
    # "sent" followed by `mark_on_wire` does; elsewhere the sender uses those two.
    await _sending_campaign(tenant, 6)
    now = clock()
    batch = await _claim(sessions, "a", now)
    await _mark(sessions, "a", batch[:2], now)
    store = _store(sessions)
    fast = store.sent_writer(sessions.kw["bind"])
    sent = [(batch[0].id, "250 ok", "<m0@x>"), (batch[5].id, "250 ok", "<m5@x>")]
    marks = [batch[2].id, batch[3].id, batch[1].id]
    if fast is None:
        async with sessions() as session:
            await store.record(
                session,
                "a",
                [
                    {"id": i, "status": "sent", "smtp_response": r, "message_id": m, "sent_at": now}
                    for i, r, m in sent
                ],
                False,
            )
            marked = await store.mark_on_wire(session, "a", marks, now, LEASE)
            await session.commit()
    else:
        try:
            marked = await fast.write("a", sent, marks, now, LEASE)
            # Another worker's write changes nothing.
            assert await fast.write("b", sent[:1], [batch[4].id], now, LEASE) == set()
        finally:
            await fast.close()
    # Rows 2 and 3 were pending and in a's lease; row 1 was already marked; row 5 was not marked,
    # so its "sent" is not a's to write.
    assert marked == {batch[2].id, batch[3].id}
    rows = await _rows(sessions, _ids(batch))
    assert rows[batch[0].id] == ("sent", None, "250 ok")
    assert [rows[x.id][:2] for x in batch[1:4]] == [("sending", "a")] * 3
    assert [rows[x.id][0] for x in batch[4:]] == ["queued", "queued"]


async def test_a_claim_that_waited_for_another_does_not_lease_its_rows_again(
    tenant, sessions, clock
):
    """Two workers claim at once: the second waits for the first's lock on the campaign, then
    must see the lease the first committed meanwhile (on PostgreSQL, a statement that waited for
    a row lock still reads with the snapshot it started with)."""
    await _sending_campaign(tenant, 6)
    now = clock()
    store = _store(sessions)
    async with sessions() as first:
        a = await store.claim(first, "a", now, 3, LEASE)  # holds the campaign's lock
        second = asyncio.create_task(_claim(sessions, "b", now))
        done, _ = await asyncio.wait({second}, timeout=0.5)
        assert not done  # it waits for the first claim's lock
        await first.commit()
    b = await second
    assert len(a) == 3 and len(b) == 3
    assert not {d.id for d in a} & {d.id for d in b}
