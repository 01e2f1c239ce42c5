"""The event writer: group commit and buffered writes, counted loads, failures and shutdown."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from mailcast.tracking.store import event_store
from tests.tracking.common import BROWSER, opens_and_loads, recorded_events


async def test_reloads_count_but_do_not_grow_events_and_machines_do_not_count(
    tenant, sent, sessions
):
    campaign, links = sent
    for _ in range(5):
        await tenant.client.get(links["t0@example.org"]["pixel"], headers=BROWSER)
    await tenant.client.get(links["t1@example.org"]["pixel"], headers={"User-Agent": "Mozilla/5.0"})
    await tenant.client.get(
        links["t1@example.org"]["click"], headers={"User-Agent": "Proofpoint URL Defense"}
    )
    assert await recorded_events(sessions) == [("open", False), ("open", True), ("click", True)]
    stats = (await tenant.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert (stats["opened"], stats["clicked"]) == (1, 0)
    from mailcast.db.models import Delivery

    async with sessions() as session:
        counts = dict((await session.execute(select(Delivery.email, Delivery.open_count))).all())
    assert counts["t0@example.org"] == 5 and counts["t1@example.org"] == 1


async def test_concurrent_hits_share_transactions_and_lose_nothing(tenant, sent, sessions):
    # 90 pixel loads and 30 clicks at once: every answered hit is in the database when its answer
    # comes, and each delivery still has one person's open event however the hits were batched.
    from mailcast.db.models import Delivery

    campaign, links = sent
    paths = [links[f"t{i % 3}@example.org"]["pixel"] for i in range(90)]
    paths += [links[f"t{i % 3}@example.org"]["click"] for i in range(30)]
    answers = await asyncio.gather(*(tenant.client.get(p, headers=BROWSER) for p in paths))
    assert [a.status_code for a in answers] == [200] * 90 + [302] * 30
    events = await recorded_events(sessions)
    assert events.count(("open", False)) == 3 and events.count(("click", False)) == 30
    async with sessions() as session:
        assert sum((await session.execute(select(Delivery.open_count))).scalars()) == 90
    stats = (await tenant.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert (stats["opened"], stats["clicked"]) == (3, 3)


async def test_a_long_flush_on_sqlite_lets_api_requests_through(
    tenant, sent, sessions, app, engine
):
    # SQLite gives the process one connection: the buffered writer hands it back after every
    # chunk, so an API request waits for one chunk's write, not for the whole backlog's.
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's pool has a connection for the request while the writer keeps one")
    from datetime import UTC, datetime

    from mailcast.db.models import Delivery
    from mailcast.tracking.events import FLUSH_CHUNK, EventWriter, Hit
    from mailcast.tracking.service import is_machine

    async with sessions() as session:
        delivery_id = (await session.execute(select(Delivery.id).limit(1))).scalar_one()
    writer = app.state.events = EventWriter(
        app.state.sessions, event_store(app.state.engine), 2, is_machine, flush_seconds=3600
    )
    # Clicks: each one an event, so the backlog is eight chunks (loads of one delivery would be
    # one chunk and a count).
    writer._buffer.extend(
        [
            Hit(
                "click",
                delivery_id,
                datetime.now(UTC),
                BROWSER["User-Agent"],
                "https://example.com/",
            )
        ]
        * (FLUSH_CHUNK * 8)
    )
    finished = []

    async def flush():
        await writer.flush()
        finished.append("flush")

    async def request():
        assert (await tenant.get("/v1/campaigns")).status_code == 200
        finished.append("request")

    flushing = asyncio.create_task(flush())
    await asyncio.sleep(0)  # the writer takes the connection first
    await asyncio.gather(flushing, request())
    assert finished == ["request", "flush"]
    assert [kind for kind, _ in await recorded_events(sessions)].count("click") == FLUSH_CHUNK * 8


async def test_buffered_hits_are_answered_at_once_and_written_by_a_clean_shutdown(
    tenant, sent, sessions, app
):
    # MAILCAST_TRACKING_FLUSH_SECONDS > 0: nothing is written while the requests are answered;
    # the shutdown (what the app's lifespan calls) writes every acknowledged hit, once.
    from mailcast.db.models import Delivery
    from mailcast.tracking.events import EventWriter
    from mailcast.tracking.service import is_machine

    app.state.events = EventWriter(
        app.state.sessions, event_store(app.state.engine), 2, is_machine, flush_seconds=3600
    )
    campaign, links = sent
    paths = [links[f"t{i % 3}@example.org"]["pixel"] for i in range(90)]
    paths += [links[f"t{i % 3}@example.org"]["click"] for i in range(30)]
    answers = await asyncio.gather(*(tenant.client.get(p, headers=BROWSER) for p in paths))
    assert [a.status_code for a in answers] == [200] * 90 + [302] * 30
    assert await recorded_events(sessions) == []
    await app.state.events.close()
    events = await recorded_events(sessions)
    assert events.count(("open", False)) == 3 and events.count(("click", False)) == 30
    async with sessions() as session:
        assert sum((await session.execute(select(Delivery.open_count))).scalars()) == 90


async def test_a_failed_buffered_write_keeps_its_hits_for_the_next(
    tenant, sent, sessions, app, tmp_path
):
    from mailcast.db.engine import create_engine, session_factory
    from mailcast.tracking.events import EventWriter
    from mailcast.tracking.service import is_machine

    unreachable = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    writer = EventWriter(
        session_factory(unreachable),
        event_store(app.state.engine),
        2,
        is_machine,
        flush_seconds=3600,
    )
    app.state.events = writer
    campaign, links = sent
    for i in range(3):
        assert (
            await tenant.client.get(links[f"t{i}@example.org"]["click"], headers=BROWSER)
        ).status_code == 302
    with pytest.raises(OperationalError):
        await writer.flush()
    writer.sessions = app.state.sessions  # the database is back
    await writer.close()
    assert (await recorded_events(sessions)).count(("click", False)) == 3
    await unreachable.dispose()


async def test_a_full_buffer_holds_requests_for_a_write_and_never_for_a_broken_database(
    tenant, sent, sessions, app, tmp_path
):
    # Back-pressure: with `max_buffered` events waiting a request waits for the next chunk to be
    # written (not for the hour-long interval), and while writes fail it is answered anyway; either
    # way every answered hit is kept and written once.
    from mailcast.db.engine import create_engine, session_factory
    from mailcast.db.models import Delivery
    from mailcast.tracking.events import EventWriter
    from mailcast.tracking.service import is_machine

    campaign, links = sent
    pixels = [links[f"t{i % 3}@example.org"]["pixel"] for i in range(60)]
    app.state.events = EventWriter(
        app.state.sessions,
        event_store(app.state.engine),
        2,
        is_machine,
        flush_seconds=3600,
        max_buffered=20,
    )
    answers = await asyncio.wait_for(
        asyncio.gather(*(tenant.client.get(p, headers=BROWSER) for p in pixels)), 30
    )
    assert [a.status_code for a in answers] == [200] * 60
    async with sessions() as session:
        written = sum((await session.execute(select(Delivery.open_count))).scalars())
    assert written >= 40  # the full buffer was written without waiting for the interval
    await app.state.events.close()
    async with sessions() as session:
        assert sum((await session.execute(select(Delivery.open_count))).scalars()) == 60

    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty' / 'x.db'}")  # no tables
    writer = app.state.events = EventWriter(
        session_factory(broken),
        event_store(app.state.engine),  # the database it writes to once it is back
        2,
        is_machine,
        flush_seconds=3600,
        max_buffered=5,
    )
    answers = await asyncio.wait_for(
        asyncio.gather(*(tenant.client.get(p, headers=BROWSER) for p in pixels)), 30
    )
    assert [a.status_code for a in answers] == [200] * 60
    writer.sessions = app.state.sessions  # the database is back
    await writer.close()
    async with sessions() as session:
        assert sum((await session.execute(select(Delivery.open_count))).scalars()) == 120
    await broken.dispose()


async def test_loads_of_a_delivery_already_opened_are_counted_and_added_up_per_flush(
    tenant, sent, sessions, app
):
    # Buffered: once a write has recorded a delivery's first open, its later loads of the same
    # kind are counted by delivery and added in one row update a flush. A load of the other kind
    # (a machine's after a person's) still records that kind's first open.
    from mailcast.tracking.events import EventWriter
    from mailcast.tracking.service import is_machine

    writer = app.state.events = EventWriter(
        app.state.sessions, event_store(app.state.engine), 2, is_machine, flush_seconds=3600
    )
    _, links = sent
    for i in range(3):
        assert (
            await tenant.client.get(links[f"t{i}@example.org"]["pixel"], headers=BROWSER)
        ).status_code == 200
    await writer.flush()  # the first opens: read, recorded, and now known to this process
    assert await opens_and_loads(sessions) == (
        [("open", False)] * 3,
        {"t0@example.org": 1, "t1@example.org": 1, "t2@example.org": 1},
    )

    for _ in range(40):
        await tenant.client.get(links["t0@example.org"]["pixel"], headers=BROWSER)
    await tenant.client.get(links["t1@example.org"]["pixel"], headers=BROWSER)
    await tenant.client.get(
        links["t2@example.org"]["pixel"], headers={"User-Agent": "Mozilla/5.0"}
    )  # a proxy
    assert len(writer._buffer) == 1  # only the machine's load waits as a hit
    assert sorted(writer._loads.values()) == [1, 40]
    await writer.flush()
    opens, loads = await opens_and_loads(sessions)
    assert opens == [("open", False)] * 3 + [("open", True)]
    assert loads == {"t0@example.org": 41, "t1@example.org": 2, "t2@example.org": 2}
    stats = (await tenant.get(f"/v1/campaigns/{sent[0]['id']}/stats")).json()
    assert stats["opened"] == 3


async def test_counted_loads_survive_a_failed_write_and_a_shutdown_writes_them(
    tenant, sent, sessions, app, tmp_path
):
    from mailcast.db.engine import create_engine, session_factory
    from mailcast.tracking.events import EventWriter
    from mailcast.tracking.service import is_machine

    writer = app.state.events = EventWriter(
        app.state.sessions, event_store(app.state.engine), 2, is_machine, flush_seconds=3600
    )
    _, links = sent
    pixel = links["t0@example.org"]["pixel"]
    await tenant.client.get(pixel, headers=BROWSER)
    await writer.flush()
    unreachable = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    writer.sessions = session_factory(unreachable)
    for _ in range(7):
        assert (await tenant.client.get(pixel, headers=BROWSER)).status_code == 200
    with pytest.raises(OperationalError):
        await writer.flush()
    await tenant.client.get(pixel, headers=BROWSER)  # counted while the database is away
    writer.sessions = app.state.sessions  # the database is back
    await writer.close()
    assert await opens_and_loads(sessions) == (
        [("open", False)],
        {"t0@example.org": 9, "t1@example.org": 0, "t2@example.org": 0},
    )
    await unreachable.dispose()


async def test_two_processes_flushing_the_same_deliveries_at_once_count_every_load(
    tenant, sent, sessions, app
):
    # Two HTTP processes' writers (two EventWriters, each with its own connection) flushing counted
    # loads and first opens of the same deliveries at the same moment: every load counted once,
    # each first open recorded once, and neither write fails.
    from mailcast.db.models import Delivery
    from mailcast.tracking.events import EventWriter, Hit
    from mailcast.tracking.service import is_machine

    async with sessions() as session:
        ids = list((await session.execute(select(Delivery.id).order_by(Delivery.id))).scalars())
    writers = [
        EventWriter(
            app.state.sessions, event_store(app.state.engine), 2, is_machine, flush_seconds=3600
        )
        for _ in range(2)
    ]
    now = app.state.clock()
    for writer, order in zip(writers, (ids, ids[::-1]), strict=True):
        for (
            delivery_id
        ) in order:  # each writer's first load of each delivery: a first open to look up
            writer.take(Hit("open", delivery_id, now, BROWSER["User-Agent"]))
    await asyncio.gather(*(writer.flush() for writer in writers))
    for _ in range(5):
        for writer, order in zip(writers, (ids, ids[::-1]), strict=True):
            for delivery_id in order:
                writer.take(Hit("open", delivery_id, now, BROWSER["User-Agent"]))
                writer.take(
                    Hit("open", delivery_id, now, "Mozilla/5.0")
                )  # a machine's: its first open once
        await asyncio.gather(*(writer.flush() for writer in writers))
    for writer in writers:
        await writer.close()
    opens, loads = await opens_and_loads(sessions)
    assert sorted(opens) == [("open", False)] * 3 + [("open", True)] * 3
    assert set(loads.values()) == {2 + 5 * 2 * 2}


async def test_one_flush_writes_a_backlog_of_loads_and_counts_those_an_earlier_chunk_made_known(
    tenant, sent, sessions, app
):
    # A process's first interval under load: many loads of each delivery, none known yet. The first
    # chunk records the first opens; the rest of the backlog's loads of those deliveries are then
    # counted, and the same flush writes them: nothing is left for the next interval.
    from mailcast.db.models import Delivery
    from mailcast.tracking.events import FLUSH_CHUNK, EventWriter, Hit
    from mailcast.tracking.service import is_machine

    async with sessions() as session:
        ids = list((await session.execute(select(Delivery.id).order_by(Delivery.id))).scalars())
    writer = EventWriter(
        app.state.sessions, event_store(app.state.engine), 2, is_machine, flush_seconds=3600
    )
    now = app.state.clock()
    writer._buffer.extend(
        Hit("open", ids[i % 3], now, BROWSER["User-Agent"]) for i in range(FLUSH_CHUNK * 4)
    )
    await writer.flush()
    assert (writer._buffer, writer._loads) == ([], {})
    opens, loads = await opens_and_loads(sessions)
    assert opens == [("open", False)] * 3
    assert sorted(loads.values()) == [
        FLUSH_CHUNK * 4 // 3,
        FLUSH_CHUNK * 4 // 3,
        FLUSH_CHUNK * 4 // 3 + 1,
    ]


async def test_a_long_backlog_of_known_loads_is_counted_a_slice_at_a_time(
    tenant, sent, sessions, app
):
    # 20,000 buffered loads of known deliveries: counted a slice at a time with the event loop free
    # between slices (what a request waits for is one slice, not the whole backlog), and all of
    # them written by the one flush.
    from mailcast.db.models import Delivery
    from mailcast.tracking.events import EventWriter, Hit
    from mailcast.tracking.service import is_machine

    async with sessions() as session:
        ids = list((await session.execute(select(Delivery.id).order_by(Delivery.id))).scalars())
    writer = EventWriter(
        app.state.sessions, event_store(app.state.engine), 2, is_machine, flush_seconds=3600
    )
    now = app.state.clock()
    writer._buffer.extend(Hit("open", i, now, BROWSER["User-Agent"]) for i in ids)
    await writer.flush()  # known from here on
    backlog = 20_000
    writer._buffer.extend(
        Hit("open", ids[i % 3], now, BROWSER["User-Agent"]) for i in range(backlog)
    )
    seen = set()  # what the rest of the process saw of the backlog while the flush ran
    flushing = asyncio.create_task(writer.flush())
    while not flushing.done():
        seen.add(len(writer._buffer))
        await asyncio.sleep(0)
    await flushing
    assert any(0 < left < backlog for left in seen)
    assert (writer._buffer, writer._loads) == ([], {})
    opens, loads = await opens_and_loads(sessions)
    assert opens == [("open", False)] * 3 and sum(loads.values()) == backlog + 3
