"""Audience rules and resend to non-openers, in both API dialects (and through the sequenzy SDK)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailcast.db.models import Delivery
from mailcast.delivery.repository import suppress_contacts
from mailcast.tracking.classify import Hit
from mailcast.tracking.store import event_store


async def _sent_campaign(tenant, worker, n: int = 6) -> dict:
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=n)
    campaign = await tenant.campaign(
        audience, draft=None, name="April Launch", subject="A quick update"
    )
    await worker.run_until_idle()
    got = (await tenant.get(f"/v1/campaigns/{campaign['id']}")).json()
    assert got["status"] == "sent"
    return got


async def _opens(
    sessions, campaign_id: str, emails: list[str], clock, machine: bool = False, kind: str = "open"
) -> None:
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Delivery.id, Delivery.email).where(Delivery.campaign_id == campaign_id)
            )
        ).all()
        hits = [
            Hit(kind, delivery_id, clock(), "Mail", "https://example.com/")
            for delivery_id, email in rows
            if email in emails
        ]
        # What the pixel (or click) endpoint records.
        await event_store(session.bind).write(
            await session.connection(), hits, 0, lambda *_: machine
        )
        await session.commit()


def _email(i: int, audience_suffix: str) -> str:
    return f"user{i}@{audience_suffix}.example.org"


async def test_resend_is_refused_before_six_hours_and_accepted_after(
    tenant, worker, clock, sessions
):
    original = await _sent_campaign(tenant, worker)
    suffix = original["audience_id"][-8:]
    await _opens(sessions, original["id"], [_email(0, suffix), _email(1, suffix)], clock)
    await _opens(
        sessions, original["id"], [_email(2, suffix)], clock, machine=True
    )  # a proxy is not a reader
    contact = (await tenant.get("/v1/contacts", params={"email": _email(5, suffix)})).json()[
        "data"
    ][0]
    await tenant.request("PATCH", f"/v1/contacts/{contact['id']}", json={"unsubscribed": True})

    clock.advance(hours=5, minutes=59)
    r = await tenant.post(f"/v1/campaigns/{original['id']}/resend-to-non-openers")
    assert r.status_code == 409
    assert r.json()["error"]["details"]["available_at"] == (
        original["sent_at"][:19].replace("T09:", "T15:") + "Z"
    )
    clock.advance(minutes=1)
    r = await tenant.client.post(
        f"/api/v1/campaigns/{original['id']}/resend-to-non-openers", headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        set(body) == {"success", "campaign", "estimatedNonOpenerCount"} and body["success"] is True
    )
    draft = body["campaign"]
    assert set(draft) == {
        "id",
        "name",
        "subject",
        "status",
        "labels",
        "emailId",
        "scheduledAt",
        "sentAt",
        "createdAt",
        "url",
        "previewUrl",
    }
    assert draft["name"] == "April Launch (Non-openers)" and draft["status"] == "draft"
    assert (
        draft["subject"] == "A quick update"
        and draft["labels"] == []
        and draft["scheduledAt"] is None
    )
    assert draft["emailId"].startswith("email_") and draft["emailId"] != original["email_id"]
    assert (
        draft["url"]
        == f"http://127.0.0.1:8025/dashboard/company/{tenant.account_id}/campaign/{draft['id']}"
    )
    assert draft["previewUrl"] == draft["url"] + "?step=review"
    assert draft["createdAt"].endswith(".000Z")
    # delivered (6) - opened by people (2) - unsubscribed since (1) = 3
    assert body["estimatedNonOpenerCount"] == 3

    full = (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()
    assert (
        full["resent_from_id"] == original["id"] and full["audience_id"] == original["audience_id"]
    )
    assert full["audience_rules"] == [{"type": "not_opened", "campaign_id": original["id"]}]
    assert full["html"] == original["html"]


async def test_the_estimate_leaves_out_contacts_suppressed_or_deleted_since(
    tenant, worker, clock, sessions
):
    original = await _sent_campaign(tenant, worker)
    suffix = original["audience_id"][-8:]
    await _opens(sessions, original["id"], [_email(0, suffix)], clock)
    contacts = {
        c["email"]: c["id"]
        for c in (await tenant.get("/v1/contacts", params={"limit": 100})).json()["data"]
    }
    async with sessions() as session:  # a hard bounce of a later campaign suppressed this one
        await suppress_contacts(session, [contacts[_email(1, suffix)]], "bounce", clock())
        await session.commit()
    assert (
        await tenant.request("DELETE", f"/v1/contacts/{contacts[_email(2, suffix)]}")
    ).status_code == 200
    # Someone with the deleted contact's address is added again: a new contact, never sent the
    # original.
    assert (await tenant.post("/v1/contacts", json={"email": _email(2, suffix)})).status_code == 201
    clock.advance(hours=6)
    r = await tenant.post(f"/v1/campaigns/{original['id']}/resend-to-non-openers")
    # delivered (6) - opened (1) - suppressed since (1) - deleted since (1) = 3
    assert r.status_code == 200 and r.json()["estimated_non_opener_count"] == 3


async def test_resend_goes_only_to_non_openers_at_send_time(tenant, worker, relay, clock, sessions):
    original = await _sent_campaign(tenant, worker, n=5)
    suffix = original["audience_id"][-8:]
    await _opens(sessions, original["id"], [_email(0, suffix)], clock)
    clock.advance(hours=7)
    r = await tenant.post(f"/v1/campaigns/{original['id']}/resend-to-non-openers")
    assert r.status_code == 200 and r.json()["estimated_non_opener_count"] == 4
    assert set(r.json()["campaign"]) >= {
        "email_id",
        "preview_url",
        "created_at",
    }  # the snake_case dialect
    draft_id = r.json()["campaign"]["id"]
    # Someone opens after the draft was made and before it is sent: they are not sent to.
    await _opens(sessions, original["id"], [_email(1, suffix)], clock)
    relay.handler.messages.clear()
    assert (await tenant.post(f"/v1/campaigns/{draft_id}/send")).status_code == 200
    await worker.run_until_idle()
    assert sorted(relay.handler.counts()) == sorted(_email(i, suffix) for i in (2, 3, 4))

    # A resend of the resend keeps every inherited exclusion.
    resend = (await tenant.get(f"/v1/campaigns/{draft_id}")).json()
    await _opens(sessions, draft_id, [_email(2, suffix)], clock)
    clock.advance(hours=7)
    r = await tenant.post(f"/v1/campaigns/{draft_id}/resend-to-non-openers")
    second = (await tenant.get(f"/v1/campaigns/{r.json()['campaign']['id']}")).json()
    assert second["name"] == "April Launch (Non-openers) (Non-openers)"
    assert second["audience_rules"] == resend["audience_rules"] + [
        {"type": "not_opened", "campaign_id": draft_id}
    ]
    relay.handler.messages.clear()
    await tenant.post(f"/v1/campaigns/{second['id']}/send")
    await worker.run_until_idle()
    assert sorted(relay.handler.counts()) == sorted(_email(i, suffix) for i in (3, 4))


async def test_the_estimate_is_who_the_draft_sends_to(tenant, worker, relay, clock, sessions):
    original = await _sent_campaign(tenant, worker, n=5)
    suffix = original["audience_id"][-8:]
    await _opens(sessions, original["id"], [_email(0, suffix)], clock)
    await _opens(
        sessions, original["id"], [_email(1, suffix)], clock, machine=True
    )  # a scanner: no reader
    # A member who joined after the original: never sent it, so never opened it; the draft gets
    # them.
    r = await tenant.post(
        "/v1/contacts", json={"email": "late@example.org", "audience_id": original["audience_id"]}
    )
    assert r.status_code == 201
    clock.advance(hours=6)
    r = await tenant.post(f"/v1/campaigns/{original['id']}/resend-to-non-openers")
    estimate = r.json()["estimated_non_opener_count"]
    relay.handler.messages.clear()
    assert (
        await tenant.post(f"/v1/campaigns/{r.json()['campaign']['id']}/send")
    ).status_code == 200
    await worker.run_until_idle()
    assert estimate == len(relay.handler.messages) == 5
    assert (
        _email(1, suffix) in relay.handler.counts() and "late@example.org" in relay.handler.counts()
    )


async def test_resend_needs_a_sent_campaign(tenant, clock):
    await tenant.verified_domain()
    draft = await tenant.campaign(await tenant.audience(contacts=2))
    clock.advance(hours=7)
    r = await tenant.post(f"/v1/campaigns/{draft['id']}/resend-to-non-openers")
    assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "draft"
    assert (await tenant.post("/v1/campaigns/camp_nope/resend-to-non-openers")).status_code == 404
    assert len((await tenant.get("/v1/campaigns")).json()["data"]) == 1


async def test_resend_delay_is_configurable(tenant, worker, clock, settings):
    settings.resend_delay_hours = 1
    original = await _sent_campaign(tenant, worker)
    clock.advance(minutes=61)
    assert (
        await tenant.post(f"/v1/campaigns/{original['id']}/resend-to-non-openers")
    ).status_code == 200


async def test_sequenzy_sdk_parses_the_resend(tenant, worker, clock, live_server):
    from sequenzy import Sequenzy

    original = await _sent_campaign(tenant, worker)
    clock.advance(hours=6)
    client = Sequenzy(base_url=f"{live_server.url}/api/v1", api_key=tenant.key, max_retries=0)
    result = client.campaigns.resend_to_non_openers(original["id"])
    assert result.success is True and result.estimated_non_opener_count == 6
    assert (
        result.campaign.name == "April Launch (Non-openers)" and result.campaign.status == "draft"
    )
    assert result.campaign.email_id.startswith("email_") and result.campaign.labels == []
    assert result.campaign.created_at is not None and result.campaign.sent_at is None
    assert (await tenant.get(f"/v1/campaigns/{result.campaign.id}")).json()[
        "resent_from_id"
    ] == original["id"]


async def test_sequenzy_sdk_gets_its_own_error_classes_and_shape(
    tenant, worker, clock, live_server
):
    from sequenzy import Sequenzy
    from sequenzy.errors import BadRequestError, NotFoundError, UnauthorizedError

    from mailcast.scopes import Scope

    original = await _sent_campaign(tenant, worker)
    client = Sequenzy(base_url=f"{live_server.url}/api/v1", api_key=tenant.key, max_retries=0)
    with pytest.raises(BadRequestError) as too_early:
        client.campaigns.resend_to_non_openers(original["id"])
    body = too_early.value.body
    assert body["success"] is False and body["code"] == "too_early" and body["retryable"] is True
    assert "6 hours after" in body["error"]
    draft = await tenant.campaign(original["audience_id"])
    with pytest.raises(BadRequestError) as not_sent:
        client.campaigns.resend_to_non_openers(draft["id"])
    assert not_sent.value.body["code"] == "not_sent" and not_sent.value.body["retryable"] is False
    with pytest.raises(NotFoundError) as missing:
        client.campaigns.resend_to_non_openers("camp_nope")
    assert missing.value.body["success"] is False and missing.value.body["code"] == "not_found"
    with pytest.raises(UnauthorizedError):
        Sequenzy(
            base_url=f"{live_server.url}/api/v1", api_key="mc_live_wrong", max_retries=0
        ).campaigns.resend_to_non_openers(original["id"])
    read_only = await tenant.key_with(Scope.READ_ONLY)  # too weak a key: the SDK's closest class
    with pytest.raises(UnauthorizedError) as weak:
        Sequenzy(
            base_url=f"{live_server.url}/api/v1", api_key=read_only, max_retries=0
        ).campaigns.resend_to_non_openers(original["id"])
    assert weak.value.body["code"] == "insufficient_scope"
    # /v1 keeps its own shape and statuses.
    r = await tenant.post(f"/v1/campaigns/{original['id']}/resend-to-non-openers")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "rules,expected",
    [
        ([{"type": "metadata", "key": "city", "op": "equals", "value": "Paris"}], {0, 3}),
        (
            [{"type": "metadata", "key": "city", "op": "contains", "value": "ar"}],
            {0, 3, 4},
        ),  # ignores case
        ([{"type": "metadata", "key": "city", "op": "equals", "value": "paris"}], set()),  # exact
        ([{"type": "metadata", "key": "city", "op": "contains", "value": "%"}], set()),
    ],
)
async def test_metadata_rules(tenant, worker, relay, rules, expected):
    await tenant.verified_domain()
    audience = (await tenant.post("/v1/audiences", json={"name": "Cities"})).json()["id"]
    cities = ["Paris", "Rome", None, "Paris", "Arles"]
    rows = [
        {"email": f"c{i}@example.org", **({"metadata": {"city": city}} if city else {})}
        for i, city in enumerate(cities)
    ]
    await tenant.post("/v1/contacts/import", json={"contacts": rows, "audience_id": audience})
    c = await tenant.campaign(audience, draft=None, audience_rules=rules)
    assert c["audience_rules"] == rules and c["stats"]["total_recipients"] == len(expected)
    await worker.run_until_idle()
    assert set(relay.handler.counts()) == {f"c{i}@example.org" for i in expected}


async def test_engagement_rules_and_their_validation(
    tenant, worker, relay, clock, sessions, make_tenant
):
    original = await _sent_campaign(tenant, worker, n=4)
    suffix = original["audience_id"][-8:]
    await _opens(sessions, original["id"], [_email(0, suffix), _email(1, suffix)], clock)
    relay.handler.messages.clear()
    rules = [{"type": "opened", "campaign_id": original["id"]}]
    c = await tenant.campaign(original["audience_id"], draft=None, audience_rules=rules)
    assert c["stats"]["total_recipients"] == 2
    # Clicks: a person's on 1 and 2, a link scanner's on 3.
    await _opens(
        sessions, original["id"], [_email(1, suffix), _email(2, suffix)], clock, kind="click"
    )
    await _opens(sessions, original["id"], [_email(3, suffix)], clock, machine=True, kind="click")
    for kind, expected in (("clicked", 2), ("not_clicked", 2), ("opened", 3)):
        c = await tenant.campaign(
            original["audience_id"],
            draft=None,
            audience_rules=[{"type": kind, "campaign_id": original["id"]}],
        )
        assert c["stats"]["total_recipients"] == expected, kind
    # A campaign of another account, or none at all, is not found.
    stranger = await make_tenant()
    stranger_campaign = await stranger.campaign()
    for bad in (
        [{"type": "opened", "campaign_id": stranger_campaign["id"]}],
        [{"type": "clicked", "campaign_id": "camp_nope"}],
    ):
        r = await tenant.post(
            "/v1/campaigns", json=tenant.campaign_body(original["audience_id"], audience_rules=bad)
        )
        assert r.status_code == 404
    r = await tenant.post(
        "/v1/campaigns",
        json=tenant.campaign_body(
            original["audience_id"],
            audience_rules=[{"type": "metadata", "key": "a b", "op": "equals", "value": "x"}],
        ),
    )
    assert r.status_code == 422
