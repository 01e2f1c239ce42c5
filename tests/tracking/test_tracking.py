"""Open pixel, click redirect, unsubscribe pages, and the bounce/feedback listener over real
SMTP."""

from __future__ import annotations

import asyncio
import re
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from mailcast.db.models import Event
from mailcast.delivery.tokens import Purpose, TokenCodec
from mailcast.tracking.bounces import BounceHandler, classify

BROWSER = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
    "AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
}


@pytest.fixture
async def sent(tenant, worker, relay, clock):
    await tenant.verified_domain()
    audience = (await tenant.post("/v1/audiences", json={"name": "T"})).json()["id"]
    rows = [{"email": f"t{i}@example.org", "first_name": f"T{i}"} for i in range(3)]
    await tenant.post("/v1/contacts/import", json={"contacts": rows, "audience_id": audience})
    html = (
        '<p><a href="https://example.com/deal?id={{ email }}">Deal</a> '
        '<a href="{{ unsubscribe_url }}">Leave</a></p>'
    )
    campaign = await tenant.campaign(audience, draft=None, html=html)
    await worker.run_until_idle()
    clock.advance(minutes=5)
    links = {}
    for m in relay.handler.messages:
        body = m.message.get_body(("html",)).get_content()
        links[m.rcpt_to] = {
            "pixel": re.search(r'src="http://127.0.0.1:8025(/t/o/[^"]+)"', body).group(1),
            "click": re.search(r'href="http://127.0.0.1:8025(/t/c/[^"]+)"', body).group(1),
            "unsub": re.search(r'href="http://127.0.0.1:8025(/u/[^"]+)"', body).group(1),
            "bounce_to": m.mail_from,
            "mailto": re.findall(r"<mailto:([^?>]+)", m.message["List-Unsubscribe"])[0],
        }
    return campaign, links


async def _events(sessions) -> list[tuple[str, bool]]:
    async with sessions() as session:
        return [
            (e.type, e.machine)
            for e in (await session.execute(select(Event).order_by(Event.id))).scalars()
        ]


async def test_pixel_always_answers_the_image(tenant, sent, sessions):
    _, links = sent
    good = links["t0@example.org"]["pixel"]
    for path in (good, "/t/o/garbage.gif", good[:-8] + "AAAA.gif"):
        r = await tenant.client.get(path, headers=BROWSER)
        assert (
            r.status_code == 200
            and r.headers["content-type"] == "image/gif"
            and r.content.startswith(b"GIF89a")
        )
        assert "no-store" in r.headers["cache-control"]
    assert await _events(sessions) == [("open", False)]  # only the valid token counted


async def test_machine_opens_are_flagged(tenant, sent, sessions):
    _, links = sent
    await tenant.client.get(
        links["t0@example.org"]["pixel"],
        headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"},
    )
    await tenant.client.get(links["t1@example.org"]["pixel"], headers={"User-Agent": "Mozilla/5.0"})
    await tenant.client.get(links["t2@example.org"]["pixel"], headers=BROWSER)
    assert await _events(sessions) == [("open", True), ("open", True), ("open", False)]
    campaign, _ = sent
    stats = (await tenant.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert (stats["opened"], stats["machine_opened"]) == (1, 2)
    # A person opens after the proxy did: an opener now, no longer counted as a machine's only.
    await tenant.client.get(links["t0@example.org"]["pixel"], headers=BROWSER)
    stats = (await tenant.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert (stats["opened"], stats["machine_opened"]) == (2, 1)
    got = (await tenant.get(f"/v1/campaigns/{campaign['id']}")).json()["stats"]
    assert (got["opened_count"], got["machine_opened_count"]) == (2, 1)


async def test_click_redirects_to_the_stored_target(tenant, sent, sessions):
    _, links = sent
    r = await tenant.client.get(
        links["t1@example.org"]["click"] + "?url=https://evil.example", headers=BROWSER
    )
    assert (
        r.status_code == 302
        and r.headers["location"] == "https://example.com/deal?id=t1@example.org"
    )
    assert await _events(sessions) == [("open", False), ("click", False)]  # a click implies an open
    token = links["t1@example.org"]["click"]
    for bad in (
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        "/t/c/nope",
        links["t1@example.org"]["pixel"][:-4].replace("/t/o/", "/t/c/"),
    ):
        r = await tenant.client.get(bad, headers=BROWSER)
        assert r.status_code == 404 and "not valid" in r.text
    assert (
        len(await _events(sessions)) == 2
    )  # nothing recorded for tampered or wrong-purpose tokens


async def test_clicks_arriving_together_are_looked_up_together(tenant, sent, sessions, settings):
    """Cold clicks that arrive while a look-up is out share the next one: each still goes to its
    own recipient's target, and a token of a delivery that no longer exists is refused alone."""
    _, links = sent
    gone = "/t/c/" + TokenCodec(settings.secret()).encode(10**9, Purpose.CLICK, 0)
    paths = [links[f"t{i}@example.org"]["click"] for i in range(3)] + [gone]
    answers = await asyncio.gather(*(tenant.client.get(p, headers=BROWSER) for p in paths))
    assert [r.status_code for r in answers] == [302, 302, 302, 404]
    assert [r.headers["location"] for r in answers[:3]] == [
        f"https://example.com/deal?id=t{i}@example.org" for i in range(3)
    ]
    assert [kind for kind, _ in await _events(sessions)].count("click") == 3


async def test_each_variant_clicks_through_to_its_own_link(tenant, worker, relay, sessions):
    """Links are read once per campaign variant and kept: an A and a B recipient of one campaign,
    each clicking for the first time, go where their own message's link pointed."""
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=8)
    ab = {
        "enabled": True,
        "split_percent": 50,
        "sample_percent": 100,
        "winner_metric": None,
        "variant_b": {"html": '<p><a href="https://example.com/b">Beta</a></p>'},
    }
    await tenant.campaign(
        audience, draft=None, html='<p><a href="https://example.com/a">Alpha</a></p>', ab_test=ab
    )
    await worker.run_until_idle()
    clicks = {}
    for m in relay.handler.messages:
        body = m.message.get_body(("html",)).get_content()
        variant = "b" if "Beta" in body else "a"
        clicks.setdefault(variant, []).append(
            re.search(r'href="http://127.0.0.1:8025(/t/c/[^"]+)"', body).group(1)
        )
    assert len(clicks["a"]) == len(clicks["b"]) == 4
    for variant in ("a", "b", "a", "b"):
        r = await tenant.client.get(clicks[variant].pop(), headers=BROWSER)
        assert r.status_code == 302 and r.headers["location"] == f"https://example.com/{variant}"
    assert [kind for kind, _ in await _events(sessions)].count("click") == 4


async def test_unsubscribe_get_confirms_post_unsubscribes(tenant, sent, sessions):
    campaign, links = sent
    path = links["t2@example.org"]["unsub"]
    page = await tenant.client.get(path)
    assert (
        page.status_code == 200 and 'method="post"' in page.text and "t2@example.org" in page.text
    )
    contact = (await tenant.get("/v1/contacts", params={"email": "t2@"})).json()["data"][0]
    assert contact["unsubscribed"] is False  # a GET (a link scanner) changes nothing
    for _ in range(2):  # one-click, twice: idempotent
        r = await tenant.client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200
        # Then on to the sender's own page, told who and which campaign.
        assert (
            f'href="https://acme.example/unsubscribe?email=t2%40example.org&amp;campaign_id={campaign["id"]}"'
            in r.text
        )
    contact = (await tenant.get("/v1/contacts", params={"email": "t2@"})).json()["data"][0]
    assert contact["unsubscribed"] is True
    stats = (await tenant.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert stats["unsubscribed"] == 1
    assert (await tenant.client.post("/u/forged-token")).status_code == 404


def _dsn(rcpt: str, action: str, status: str) -> bytes:
    return (
        f"From: MAILER-DAEMON@relay.example\r\nTo: {rcpt}\r\nSubject: Undelivered "
        "Mail\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; t0@example.org\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status[0]}50 mailbox unavailable\r\n\r\n--B--\r\n"
    ).encode()


def _arf(rcpt: str) -> bytes:
    return (
        f"From: fbl@isp.example\r\nTo: {rcpt}\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: "
        "fbl/1\r\n"
        "Version: 1\r\n\r\n--F--\r\n"
    ).encode()


async def test_bounce_listener_over_smtp(tenant, sent, sessions, settings, clock):
    campaign, links = sent
    handler = BounceHandler(sessions, TokenCodec(settings.secret()), clock)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTPServer(handler), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:

        async def deliver(rcpt: str, raw: bytes) -> None:
            await aiosmtplib.send(
                raw,
                sender="mailer-daemon@relay.example",
                recipients=[rcpt],
                hostname="127.0.0.1",
                port=port,
            )

        await deliver(
            links["t0@example.org"]["bounce_to"],
            _dsn(links["t0@example.org"]["bounce_to"], "failed", "5.1.1"),
        )
        await deliver(
            links["t1@example.org"]["bounce_to"],
            _dsn(links["t1@example.org"]["bounce_to"], "delayed", "4.4.1"),
        )
        await deliver(
            links["t1@example.org"]["bounce_to"], _arf(links["t1@example.org"]["bounce_to"])
        )
        await deliver(links["t2@example.org"]["mailto"], b"Subject: unsubscribe\r\n\r\nplease\r\n")
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await deliver("bounces+forged@news.example.com", _dsn("x", "failed", "5.1.1"))
    finally:
        server.close()
        await server.wait_closed()

    stats = (await tenant.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert (
        stats["sent"],
        stats["bounced"],
        stats["delivered"],
        stats["complained"],
        stats["unsubscribed"],
    ) == (3, 1, 2, 1, 1)
    contacts = {c["email"]: c for c in (await tenant.get("/v1/contacts")).json()["data"]}
    assert (
        contacts["t0@example.org"]["suppressed"] and not contacts["t0@example.org"]["unsubscribed"]
    )
    assert contacts["t1@example.org"]["suppressed"]  # the complaint, not the delay
    assert (
        contacts["t2@example.org"]["unsubscribed"] and not contacts["t2@example.org"]["suppressed"]
    )


def test_classify_reports():
    assert classify(_dsn("a", "failed", "5.1.1")).kind == "bounce"
    assert classify(_dsn("a", "delayed", "4.4.1")).kind == "delay"
    assert classify(_arf("a")).kind == "complaint"
    plain = EmailMessage()
    plain.set_content("out of office")
    assert classify(plain.as_bytes()).kind == "other"


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
    assert await _events(sessions) == [("open", False), ("open", True), ("click", True)]
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
    events = await _events(sessions)
    assert events.count(("open", False)) == 3 and events.count(("click", False)) == 30
    async with sessions() as session:
        assert sum((await session.execute(select(Delivery.open_count))).scalars()) == 90
    stats = (await tenant.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert (stats["opened"], stats["clicked"]) == (3, 3)


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
    from mailcast.tracking.events import Hit, write
    from mailcast.tracking.service import is_machine

    async with sessions() as session:
        delivery_id = (
            await session.execute(select(Delivery.id).where(Delivery.email == "t0@example.org"))
        ).scalar_one()
    loads = [Hit("open", delivery_id, datetime.now(UTC), BROWSER["User-Agent"])] * 3
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await write(first, loads, 2, is_machine)
        await second.begin()
        waiting = asyncio.create_task(write(second, loads, 2, is_machine))
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
    writer = app.state.events = EventWriter(app.state.sessions, 2, is_machine, flush_seconds=3600)
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
    assert [kind for kind, _ in await _events(sessions)].count("click") == FLUSH_CHUNK * 8


async def test_buffered_hits_are_answered_at_once_and_written_by_a_clean_shutdown(
    tenant, sent, sessions, app
):
    # MAILCAST_TRACKING_FLUSH_SECONDS > 0: nothing is written while the requests are answered;
    # the shutdown (what the app's lifespan calls) writes every acknowledged hit, once.
    from mailcast.db.models import Delivery
    from mailcast.tracking.events import EventWriter
    from mailcast.tracking.service import is_machine

    app.state.events = EventWriter(app.state.sessions, 2, is_machine, flush_seconds=3600)
    campaign, links = sent
    paths = [links[f"t{i % 3}@example.org"]["pixel"] for i in range(90)]
    paths += [links[f"t{i % 3}@example.org"]["click"] for i in range(30)]
    answers = await asyncio.gather(*(tenant.client.get(p, headers=BROWSER) for p in paths))
    assert [a.status_code for a in answers] == [200] * 90 + [302] * 30
    assert await _events(sessions) == []
    await app.state.events.close()
    events = await _events(sessions)
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
    writer = EventWriter(session_factory(unreachable), 2, is_machine, flush_seconds=3600)
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
    assert (await _events(sessions)).count(("click", False)) == 3
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
        app.state.sessions, 2, is_machine, flush_seconds=3600, max_buffered=20
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
        session_factory(broken), 2, is_machine, flush_seconds=3600, max_buffered=5
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


async def _opens_and_loads(sessions) -> tuple[list[tuple[str, bool]], dict[str, int]]:
    from mailcast.db.models import Delivery

    async with sessions() as session:
        loads = dict((await session.execute(select(Delivery.email, Delivery.open_count))).all())
    return [e for e in await _events(sessions) if e[0] == "open"], loads


async def test_loads_of_a_delivery_already_opened_are_counted_and_added_up_per_flush(
    tenant, sent, sessions, app
):
    # Buffered: once a write has recorded a delivery's first open, its later loads of the same
    # kind are counted by delivery and added in one row update a flush. A load of the other kind
    # (a machine's after a person's) still records that kind's first open.
    from mailcast.tracking.events import EventWriter
    from mailcast.tracking.service import is_machine

    writer = app.state.events = EventWriter(app.state.sessions, 2, is_machine, flush_seconds=3600)
    _, links = sent
    for i in range(3):
        assert (
            await tenant.client.get(links[f"t{i}@example.org"]["pixel"], headers=BROWSER)
        ).status_code == 200
    await writer.flush()  # the first opens: read, recorded, and now known to this process
    assert await _opens_and_loads(sessions) == (
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
    opens, loads = await _opens_and_loads(sessions)
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

    writer = app.state.events = EventWriter(app.state.sessions, 2, is_machine, flush_seconds=3600)
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
    assert await _opens_and_loads(sessions) == (
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
    writers = [EventWriter(app.state.sessions, 2, is_machine, flush_seconds=3600) for _ in range(2)]
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
    opens, loads = await _opens_and_loads(sessions)
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
    writer = EventWriter(app.state.sessions, 2, is_machine, flush_seconds=3600)
    now = app.state.clock()
    writer._buffer.extend(
        Hit("open", ids[i % 3], now, BROWSER["User-Agent"]) for i in range(FLUSH_CHUNK * 4)
    )
    await writer.flush()
    assert (writer._buffer, writer._loads) == ([], {})
    opens, loads = await _opens_and_loads(sessions)
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
    writer = EventWriter(app.state.sessions, 2, is_machine, flush_seconds=3600)
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
    opens, loads = await _opens_and_loads(sessions)
    assert opens == [("open", False)] * 3 and sum(loads.values()) == backlog + 3
