"""A/B tests: validation, exact deterministic assignment, results, manual and automatic winners,
and the holdback receiving the winner's content through SMTP."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from mailcast.campaigns.ab import sizes
from mailcast.db.models import Delivery
from mailcast.tracking.classify import Hit
from mailcast.tracking.store import event_store

AB = {
    "enabled": True,
    "split_percent": 50,
    "sample_percent": 60,
    "winner_metric": "open_rate",
    "evaluate_after_minutes": 60,
    "variant_b": {"subject": "B: {{ first_name }}", "html": "<p>Variant B body</p>"},
}


@pytest.fixture
async def ab_ready(tenant):
    await tenant.verified_domain()
    tenant.audience_id = await tenant.audience(contacts=20)
    return tenant


@pytest.mark.parametrize(
    "change,field",
    [
        ({"split_percent": 0}, "split_percent"),
        ({"split_percent": 100}, "split_percent"),
        ({"split_percent": True}, "split_percent"),
        ({"sample_percent": "80"}, "sample_percent"),
        ({"evaluate_after_minutes": False}, "evaluate_after_minutes"),
        ({"split_percent": 0.5}, "split_percent"),
        ({"sample_percent": 0}, "sample_percent"),
        ({"sample_percent": 101}, "sample_percent"),
        ({"evaluate_after_minutes": 4}, "evaluate_after_minutes"),
        ({"evaluate_after_minutes": 10081}, "evaluate_after_minutes"),
        ({"winner_metric": "revenue"}, "winner_metric"),
        ({"winner_metric": None}, "winner_metric"),
        ({"variant_b": {}}, "variant_b"),
        ({"variant_b": None}, "variant_b"),
        ({"variant_b": {"colour": "red"}}, "variant_b"),
        ({"enabled": "yes"}, "enabled"),
        ({"variant_b": {"html": "{% if %}"}}, "variant_b"),
    ],
)
async def test_every_bound_is_checked(ab_ready, change, field):
    body = ab_ready.campaign_body(ab_ready.audience_id, ab_test={**AB, **change})
    r = await ab_ready.post("/v1/campaigns", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["message"] or any(
        field in d["field"] for d in r.json()["error"]["details"]
    )
    assert (await ab_ready.get("/v1/campaigns")).json()["data"] == []


@pytest.mark.parametrize(
    "change",
    [
        {"split_percent": 1},
        {"split_percent": 99},
        {"sample_percent": 1},
        {"sample_percent": 100, "winner_metric": None},
        {"evaluate_after_minutes": 5},
        {"evaluate_after_minutes": 10080},
        {"winner_metric": "click_rate"},
        {"split_percent": 33.5},
        {"sample_percent": 99.9, "evaluate_after_minutes": 7.5},
    ],
)
async def test_bounds_are_inclusive(ab_ready, change):
    body = ab_ready.campaign_body(ab_ready.audience_id, ab_test={**AB, **change})
    r = await ab_ready.post("/v1/campaigns", json=body)
    assert r.status_code == 201, r.text
    assert {k: r.json()["ab_test"][k] for k in change} == change


async def test_ab_test_is_updatable_on_drafts(ab_ready):
    c = await ab_ready.campaign(ab_ready.audience_id)
    r = await ab_ready.request("PATCH", f"/v1/campaigns/{c['id']}", json={"ab_test": AB})
    assert r.status_code == 200 and r.json()["ab_test"]["sample_percent"] == 60
    r = await ab_ready.request(
        "PATCH", f"/v1/campaigns/{c['id']}", json={"ab_test": {**AB, "split_percent": 0}}
    )
    assert r.status_code == 422


@given(total=st.integers(0, 100_000), sample=st.integers(1, 100), split=st.integers(1, 99))
def test_sizes_are_exact(total, sample, split):
    a, b, holdback = sizes(total, sample, split)
    in_sample = total if sample == 100 else int(total * sample / 100 + 0.5)
    assert a + b + holdback == total and a + b == in_sample
    assert b == int(in_sample * split / 100 + 0.5) and min(a, b, holdback) >= 0


@given(total=st.integers(0, 100_000), sample=st.integers(10, 1000), split=st.integers(10, 990))
def test_sizes_of_decimal_percentages_round_the_decimal_half_up(total, sample, split):
    # 33.5 is not exactly representable in binary; the group sizes are those of the decimal.
    a, b, holdback = sizes(total, sample / 10, split / 10)
    in_sample = total if sample == 1000 else (total * sample * 2 + 1000) // 2000
    assert a + b + holdback == total and a + b == in_sample
    assert b == (in_sample * split * 2 + 1000) // 2000


async def test_a_fractional_split_sizes_the_groups(tenant, sessions):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=20)
    c = await tenant.campaign(
        audience, draft=None, ab_test={**AB, "sample_percent": 52.5, "split_percent": 33.5}
    )
    groups = await _groups(sessions, c["id"])
    # sample round(20 x 52.5%) = round(10.5) = 11; B round(11 x 33.5%) = round(3.685) = 4
    assert (len(groups["a"]), len(groups["b"]), len(groups["holdback"])) == (7, 4, 9)
    results = (await tenant.get(f"/v1/campaigns/{c['id']}/ab-test/results")).json()
    assert results["split_percent"] == 33.5 and results["sample_percent"] == 52.5


async def _groups(sessions, campaign_id) -> dict[str, list[str]]:
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Delivery.ab_group, Delivery.contact_id, Delivery.status).where(
                    Delivery.campaign_id == campaign_id
                )
            )
        ).all()
    out: dict[str, list[str]] = {"a": [], "b": [], "holdback": []}
    for group, contact_id, status in rows:
        out[group].append(contact_id)
        assert (status == "held") == (group == "holdback")
    return out


@pytest.mark.parametrize("n,sample,split", [(20, 60, 50), (37, 80, 30), (10, 100, 10), (3, 50, 50)])
async def test_assignment_is_deterministic_and_exact(tenant, sessions, n, sample, split):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=n)
    ab = {**AB, "sample_percent": sample, "split_percent": split}
    c = await tenant.campaign(audience, draft=None, ab_test=ab)
    groups = await _groups(sessions, c["id"])
    n_a, n_b, n_hold = sizes(n, sample, split)
    assert (len(groups["a"]), len(groups["b"]), len(groups["holdback"])) == (n_a, n_b, n_hold)
    # The order is the hash of (campaign, contact): anyone can recompute who is in which group.
    everyone = sorted(
        groups["a"] + groups["b"] + groups["holdback"],
        key=lambda cid: hashlib.sha256(f"{c['id']}:{cid}".encode()).digest(),
    )
    assert sorted(groups["a"]) == sorted(everyone[:n_a])
    assert sorted(groups["b"]) == sorted(everyone[n_a : n_a + n_b])


async def _open(
    sessions,
    campaign_id: str,
    group: str,
    how_many: int,
    clock,
    machine: bool = False,
    kind: str = "open",
) -> None:
    async with sessions() as session:
        ids = (
            (
                await session.execute(
                    select(Delivery.id)
                    .where(Delivery.campaign_id == campaign_id, Delivery.ab_group == group)
                    .order_by(Delivery.id)
                    .limit(how_many)
                )
            )
            .scalars()
            .all()
        )
        # as the pixel (or the click redirect) does
        await event_store(session.bind).write(
            await session.connection(),
            [Hit(kind, i, clock(), "Mail", "https://example.com/") for i in ids],
            0,
            lambda *_: machine,
        )
        await session.commit()


async def test_auto_pick_waits_then_picks_the_higher_rate(ab_ready, worker, relay, clock, sessions):
    c = await ab_ready.campaign(
        ab_ready.audience_id, draft=None, ab_test=AB
    )  # 20: a 6, b 6, holdback 8
    await worker.run_until_idle()
    assert len(relay.handler.messages) == 12
    results = (await ab_ready.get(f"/v1/campaigns/{c['id']}/ab-test/results")).json()
    assert results["holdback_total"] == 8 and results["winner_variant"] is None
    assert (await ab_ready.get(f"/v1/campaigns/{c['id']}")).json()[
        "status"
    ] == "sending"  # holdback waits
    await _open(sessions, c["id"], "a", 2, clock)
    await _open(sessions, c["id"], "b", 3, clock)
    await _open(sessions, c["id"], "a", 6, clock, machine=True)  # machine opens do not count
    clock.advance(minutes=59)
    assert await worker.evaluate_once() == []  # before the deadline nothing happens
    clock.advance(minutes=1)
    assert await worker.evaluate_once() == [(c["id"], "b")]
    results = (await ab_ready.get(f"/v1/campaigns/{c['id']}/ab-test/results")).json()
    assert results["winner_variant"] == "b" and results["variant_b"]["open_rate"] == 0.5
    assert results["variant_a"] == {
        "sent": 6,
        "opened": 2,
        "clicked": 0,
        "open_rate": 0.3333,
        "click_rate": 0.0,
    }
    await _open(
        sessions, c["id"], "a", 3, clock, kind="click"
    )  # the first two opened already: one more open
    await _open(
        sessions, c["id"], "a", 6, clock, machine=True, kind="click"
    )  # a link scanner's: no count
    results = (await ab_ready.get(f"/v1/campaigns/{c['id']}/ab-test/results")).json()
    assert results["variant_a"] == {
        "sent": 6,
        "opened": 3,
        "clicked": 3,
        "open_rate": 0.5,
        "click_rate": 0.5,
    }
    await worker.run_until_idle()
    # The holdback went out with B's content, and only then is the campaign sent.
    assert len(relay.handler.messages) == 20 and set(relay.handler.counts().values()) == {1}
    b_subjects = [m.message["Subject"] for m in relay.handler.messages[12:]]
    assert all(s.startswith("B: ") for s in b_subjects)
    assert all(
        "Variant B body" in m.message.get_body(("html",)).get_content()
        for m in relay.handler.messages[12:]
    )
    assert (await ab_ready.get(f"/v1/campaigns/{c['id']}")).json()["status"] == "sent"
    assert await worker.evaluate_once() == []


async def test_ties_go_to_a(ab_ready, worker, clock, sessions):
    c = await ab_ready.campaign(ab_ready.audience_id, draft=None, ab_test=AB)
    await worker.run_until_idle()
    await _open(sessions, c["id"], "a", 2, clock)
    await _open(sessions, c["id"], "b", 2, clock)
    clock.advance(minutes=61)
    assert await worker.evaluate_once() == [(c["id"], "a")]


async def test_manual_pick_and_a_second_pick(ab_ready, worker, relay):
    c = await ab_ready.campaign(ab_ready.audience_id, draft=None, ab_test=AB)
    await worker.run_until_idle()
    read_only = await ab_ready.key_with(
        __import__("mailcast.scopes", fromlist=["Scope"]).Scope.READ_ONLY
    )
    r = await ab_ready.post(
        f"/v1/campaigns/{c['id']}/ab-test/pick-winner", json={"variant": "a"}, key=read_only
    )
    assert r.status_code == 403
    r = await ab_ready.post(f"/v1/campaigns/{c['id']}/ab-test/pick-winner", json={"variant": "a"})
    assert (
        r.status_code == 200
        and r.json()["winner_variant"] == "a"
        and r.json()["winner_evaluated_at"]
    )
    r = await ab_ready.post(f"/v1/campaigns/{c['id']}/ab-test/pick-winner", json={"variant": "b"})
    assert r.status_code == 409
    assert (
        await ab_ready.post(f"/v1/campaigns/{c['id']}/ab-test/pick-winner", json={"variant": "c"})
    ).status_code == 422
    await worker.run_until_idle()
    assert len(relay.handler.messages) == 20
    assert all(not m.message["Subject"].startswith("B: ") for m in relay.handler.messages[12:])


async def test_pick_winner_needs_an_ab_test(ab_ready):
    c = await ab_ready.campaign(ab_ready.audience_id, draft=None)
    r = await ab_ready.post(f"/v1/campaigns/{c['id']}/ab-test/pick-winner", json={"variant": "a"})
    assert r.status_code == 409
    results = (await ab_ready.get(f"/v1/campaigns/{c['id']}/ab-test/results")).json()
    assert results["enabled"] is False and results["variant_a"]["sent"] == 0


def _parts(received) -> tuple[str | None, str | None]:
    message = received.message
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    return (html.get_content() if html else None), (text.get_content() if text else None)


ALL_B = {**AB, "sample_percent": 100, "split_percent": 50}


@pytest.mark.parametrize(
    "variant_b,a_fields,expect_b",
    [
        # B sets only its text: A's HTML (with the pixel) stays, B's text replaces A's.
        ({"text_content": "B text"}, {"text": "A text"}, ("A html", "B text")),
        # B sets only its HTML: its text part is derived from B's HTML, never A's text.
        ({"html": "<p>B html</p>"}, {"text": "A text"}, ("B html", "B html")),
        # B sets only the subject: both of A's parts.
        ({"subject": "B subject"}, {"text": "A text"}, ("A html", "A text")),
    ],
)
async def test_variant_b_falls_back_to_a_field_by_field(
    ab_ready, worker, relay, variant_b, a_fields, expect_b
):
    body = {"html": "<p>A html</p>", **a_fields}
    await ab_ready.campaign(
        ab_ready.audience_id, draft=None, ab_test={**ALL_B, "variant_b": variant_b}, **body
    )
    await worker.run_until_idle()
    assert len(relay.handler.messages) == 20
    by_subject = {}
    for received in relay.handler.messages:
        html, text = _parts(received)
        variant = (
            "b"
            if (
                "B html" in (html or "")
                or "B text" in (text or "")
                or received.message["Subject"] == "B subject"
            )
            else "a"
        )
        by_subject.setdefault(variant, []).append((html, text))
    assert len(by_subject["a"]) == len(by_subject["b"]) == 10
    want_html, want_text = expect_b
    for html, text in by_subject["b"]:
        assert want_html in html and "/t/o/" in html  # the pixel: B's opens are measured
        assert want_text in text and ("A text" not in text if want_text != "A text" else True)
    for html, text in by_subject["a"]:
        assert "A html" in html and "A text" in text


async def test_variant_b_template_fills_only_what_b_does_not_set(ab_ready, worker, relay):
    r = await ab_ready.post(
        "/v1/templates", json={"name": "B", "html": "<p>Template html</p>", "text": "Template text"}
    )
    template_id = r.json()["id"]
    variant_b = {"html": "<p>B own html</p>", "template_id": template_id}
    await ab_ready.campaign(
        ab_ready.audience_id,
        draft=None,
        ab_test={**ALL_B, "variant_b": variant_b},
        html="<p>A html</p>",
        text="A text",
    )
    await worker.run_until_idle()
    b = [_parts(m) for m in relay.handler.messages if "B own html" in (_parts(m)[0] or "")]
    assert len(b) == 10
    assert all("Template text" in text and "Template html" not in html for html, text in b)


@pytest.mark.parametrize(
    "a_fields,variant_b",
    [
        ({"html": None, "text": "A text only"}, {"subject": "B"}),
        ({"html": None, "text": "A text only"}, {"html": "<p>B</p>"}),
    ],
)
async def test_an_open_rate_test_needs_html_in_both_variants(ab_ready, a_fields, variant_b):
    body = ab_ready.campaign_body(
        ab_ready.audience_id, ab_test={**AB, "variant_b": variant_b}, **a_fields
    )
    body = {k: v for k, v in body.items() if v is not None}
    r = await ab_ready.post("/v1/campaigns", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "ab_test.winner_metric"
    assert "no HTML part" in r.json()["error"]["message"]
    body["ab_test"]["winner_metric"] = "click_rate"  # measurable without HTML
    assert (await ab_ready.post("/v1/campaigns", json=body)).status_code == 201
