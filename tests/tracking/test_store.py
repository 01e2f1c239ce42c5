"""The event stores, PostgreSQL's and SQLite's (the suite runs on both): what a write records."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from mailcast.db.models import Event
from tests.tracking.common import BROWSER


async def test_two_writers_of_one_delivery_record_its_first_open_once(
    tenant, sent, sessions, engine
):
    # Two HTTP processes writing loads of the same delivery at once: the second waits for the
    # first's transaction (the rows a chunk counts loads on are locked as they are read) and then
    # sees the open it recorded, so the delivery has one person's open event and every load.
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time (BEGIN IMMEDIATE)")
    from datetime import UTC, datetime

    from mailcast.db.models import Delivery
    from mailcast.tracking.classify import Hit
    from mailcast.tracking.service import is_machine
    from mailcast.tracking.store import event_store

    async with sessions() as session:
        delivery_id = (
            await session.execute(select(Delivery.id).where(Delivery.email == "t0@example.org"))
        ).scalar_one()
    loads = [Hit("open", delivery_id, datetime.now(UTC), BROWSER["User-Agent"])] * 3
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await event_store(engine).write(first, loads, 2, is_machine)
        await second.begin()
        waiting = asyncio.create_task(event_store(engine).write(second, loads, 2, is_machine))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # held by the first writer's transaction
        await first.commit()
        await asyncio.wait_for(waiting, 10)
        await second.commit()
    async with sessions() as session:
        opens = (
            await session.execute(
                select(Event).where(Event.delivery_id == delivery_id, Event.type == "open")
            )
        ).all()
        count = (
            await session.execute(select(Delivery.open_count).where(Delivery.id == delivery_id))
        ).scalar_one()
    assert (len(opens), count) == (1, 6)


async def test_a_write_records_events_rows_and_what_is_known(sent, sessions, engine):
    from datetime import UTC, datetime, timedelta

    from mailcast.db.models import Delivery
    from mailcast.tracking.classify import Hit
    from mailcast.tracking.store import event_store

    def scanner(agent, sent_at, at, window):
        return agent == "scanner"

    store = event_store(engine)
    async with sessions() as session:
        ids = dict((await session.execute(select(Delivery.email, Delivery.id))).all())
    a, b = ids["t0@example.org"], ids["t1@example.org"]
    now = datetime.now(UTC)
    later = now + timedelta(minutes=1)
    hits = [
        Hit("open", a, now, "scanner"),
        Hit("open", a, now, "Mozilla/5.0"),
        Hit("open", a, later, "Mozilla/5.0"),
        Hit("click", b, now, "Mozilla/5.0", "https://example.com/deal"),
        Hit("open", 10**9, now, "Mozilla/5.0"),  # no such delivery: dropped
    ]
    async with engine.begin() as connection:
        known = await store.write(connection, hits, 0, scanner)
    async with engine.begin() as connection:
        await store.add_loads(connection, [(a, 4), (10**9, 1)])
    assert (known[a].person_opened, known[a].machine_opened) == (True, True)
    assert (known[b].person_opened, known[b].machine_opened) == (True, False)
    async with sessions() as session:
        events = (
            await session.execute(
                select(Event.delivery_id, Event.type, Event.machine).order_by(Event.id)
            )
        ).all()
        rows = {
            r.id: r
            for r in (
                await session.execute(
                    select(
                        Delivery.id,
                        Delivery.open_count,
                        Delivery.opened_at,
                        Delivery.machine_opened_at,
                        Delivery.clicked_at,
                    ).where(Delivery.id.in_([a, b]))
                )
            ).all()
        }
    assert sorted(events) == sorted(
        [(a, "open", True), (a, "open", False), (b, "open", False), (b, "click", False)]
    )
    assert rows[a].open_count == 3 + 4 and rows[b].open_count == 0
    assert rows[a].opened_at is not None and rows[a].machine_opened_at is not None
    assert rows[a].clicked_at is None and rows[b].clicked_at is not None
