"""The open pixel, the click redirect and the unsubscribe pages, through the app."""

from __future__ import annotations

import asyncio
import re

from mailcast.delivery.tokens import Purpose, TokenCodec
from tests.tracking.common import BROWSER, recorded_events


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
    assert await recorded_events(sessions) == [("open", False)]  # only the valid token counted


async def test_machine_opens_are_flagged(tenant, sent, sessions):
    _, links = sent
    await tenant.client.get(
        links["t0@example.org"]["pixel"],
        headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"},
    )
    await tenant.client.get(links["t1@example.org"]["pixel"], headers={"User-Agent": "Mozilla/5.0"})
    await tenant.client.get(links["t2@example.org"]["pixel"], headers=BROWSER)
    assert await recorded_events(sessions) == [("open", True), ("open", True), ("open", False)]
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
    assert await recorded_events(sessions) == [
        ("open", False),
        ("click", False),
    ]  # a click implies an open
    token = links["t1@example.org"]["click"]
    for bad in (
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        "/t/c/nope",
        links["t1@example.org"]["pixel"][:-4].replace("/t/o/", "/t/c/"),
    ):
        r = await tenant.client.get(bad, headers=BROWSER)
        assert r.status_code == 404 and "not valid" in r.text
    assert (
        len(await recorded_events(sessions)) == 2
    )  # nothing recorded for tampered or wrong-purpose tokens


async def test_the_routes_answer_what_the_fast_path_answers(tenant, sent, sessions, app):
    # One route table: the fast path matches the app's own tracking routes, and those routes give
    # the same answers when the app runs without it.
    _, links = sent
    paths = [
        links["t0@example.org"]["pixel"],
        "/t/o/garbage.gif",
        links["t1@example.org"]["click"],
        "/t/c/garbage",
        "/t/c/a/b",  # no route
    ]

    async def answers() -> list[tuple]:
        out = []
        for path in paths:
            r = await tenant.client.get(path, headers=BROWSER)
            out.append((r.status_code, r.headers.get("content-type"), r.headers.get("location")))
        return out

    fast = await answers()
    assert [a[0] for a in fast] == [200, 200, 302, 404, 404]
    kept, app.tracking = app.tracking, None
    try:
        assert await answers() == fast
    finally:
        app.tracking = kept
    assert await recorded_events(sessions) == [("open", False)] * 2 + [("click", False)] * 2


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
    assert [kind for kind, _ in await recorded_events(sessions)].count("click") == 3


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
    assert [kind for kind, _ in await recorded_events(sessions)].count("click") == 4


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
