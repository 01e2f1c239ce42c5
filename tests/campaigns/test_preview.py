"""Rendering a campaign for one contact, and test sends through a real relay: what the review
step shows and sends, outside the campaign's figures and the quota."""

from __future__ import annotations

import re

from mailcast.scopes import Scope


async def _draft(tenant, **overrides) -> dict:
    await tenant.verified_domain()
    audience = (await tenant.post("/v1/audiences", json={"name": "Readers"})).json()["id"]
    for email, first in (("zed@example.org", "Zed"), ("amy@example.org", "Amy")):
        await tenant.post(
            "/v1/contacts", json={"email": email, "first_name": first, "audience_id": audience}
        )
    body = {
        "html": '<p>Hi {{ first_name }}, <a href="https://shop.example.com/x">shop</a></p>',
        "subject": "News for {{ first_name | default: 'you' }}",
        "preview_text": "Inside: {{ first_name }}",
    }
    return await tenant.campaign(audience, **{**body, **overrides})


async def test_render_shows_the_message_as_a_contact_gets_it(tenant):
    draft = await _draft(tenant)
    r = await tenant.get(f"/v1/campaigns/{draft['id']}/render")
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["email"] in ("zed@example.org", "amy@example.org") and shown["contact_id"]
    name = "Zed" if shown["email"].startswith("zed") else "Amy"
    assert shown["subject"] == f"News for {name}" and shown["preview_text"] == f"Inside: {name}"
    assert f"Hi {name}" in shown["html"] and "/t/c/" in shown["html"] and "/t/o/" in shown["html"]
    assert "https://shop.example.com" not in shown["html"]  # tracked, as it is sent
    assert "/u/" in shown["html"] and "Unsubscribe" in shown["text"]  # the footer's way out
    amy = (await tenant.get("/v1/contacts", params={"email": "amy@"})).json()["data"][0]
    r = await tenant.get(f"/v1/campaigns/{draft['id']}/render", params={"contact_id": amy["id"]})
    assert r.json()["subject"] == "News for Amy" and r.json()["contact_id"] == amy["id"]
    assert (
        await tenant.get(f"/v1/campaigns/{draft['id']}/render", params={"contact_id": "ct_nope"})
    ).status_code == 404
    assert (
        await tenant.get(f"/v1/campaigns/{draft['id']}/render", params={"variant": "b"})
    ).status_code == 422
    # The links of a preview lead nowhere and record nothing.
    link = re.search(r'href="http://127.0.0.1:8025(/t/c/[^"]+)"', r.json()["html"]).group(1)
    assert (await tenant.client.get(link)).status_code == 404


async def test_render_of_variant_b_and_of_a_template(tenant):
    template = (
        await tenant.post("/v1/templates", json={"name": "T", "html": "<p>From the template</p>"})
    ).json()
    ab_test = {"enabled": True, "variant_b": {"subject": "B subject"}}
    draft = await _draft(tenant, html=None, template_id=template["id"], ab_test=ab_test)
    a = (await tenant.get(f"/v1/campaigns/{draft['id']}/render")).json()
    b = (await tenant.get(f"/v1/campaigns/{draft['id']}/render", params={"variant": "b"})).json()
    assert "From the template" in a["html"] and a["subject"].startswith("News for")
    assert b["subject"] == "B subject" and "From the template" in b["html"]
    # The draft itself is unchanged (the template is copied in only when it starts sending).
    assert (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()["html"] is None


async def test_test_sends_reach_only_their_addresses_and_count_nowhere(tenant, settings, relay):
    settings.smtp_url = relay.url
    draft = await _draft(tenant)
    r = await tenant.post(
        f"/v1/campaigns/{draft['id']}/test",
        json={"emails": ["Zed@Example.org", "someone@elsewhere.example"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["email"], x["status"]) for x in body["recipients"]] == [
        ("zed@example.org", "sent"),
        ("someone@elsewhere.example", "sent"),
    ]
    by_rcpt = {m.rcpt_to: m.message for m in relay.handler.messages}
    assert set(by_rcpt) == {"zed@example.org", "someone@elsewhere.example"}
    assert (
        by_rcpt["zed@example.org"]["Subject"] == "[Test] News for Zed"
    )  # personalised as the contact
    assert by_rcpt["someone@elsewhere.example"]["Subject"] == "[Test] News for you"
    got = (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()
    assert (
        got["status"] == "draft"
        and got["stats"]["total_recipients"] == 0
        and got["stats"]["sent_count"] == 0
    )
    assert (await tenant.get("/v1/account")).json()["quota"]["used"] == 0


async def test_test_sends_are_limited_and_validated(tenant, settings, relay, clock):
    settings.smtp_url = relay.url
    draft = await _draft(tenant)
    path = f"/v1/campaigns/{draft['id']}/test"
    for bad in (
        {"emails": []},
        {"emails": ["a@example.org"] * 6},
        {"emails": ["not-an-address"]},
        {"emails": ["a@example.org"], "variant": "b"},
    ):
        assert (await tenant.post(path, json=bad)).status_code == 422, bad
    for i in range(4):
        assert (
            await tenant.post(path, json={"emails": [f"t{i}{j}@example.org" for j in range(5)]})
        ).status_code == 200
    r = await tenant.post(path, json={"emails": ["one.more@example.org"]})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 0 < int(r.headers["retry-after"]) <= 3601
    read_only = await tenant.key_with(Scope.READ_ONLY)
    assert (
        await tenant.post(path, json={"emails": ["x@example.org"]}, key=read_only)
    ).status_code == 403
    clock.advance(hours=1, seconds=1)
    assert (await tenant.post(path, json={"emails": ["one.more@example.org"]})).status_code == 200
    assert len(relay.handler.messages) == 21


async def test_the_sequenzy_sdk_renders_checks_and_sends_a_test(
    tenant, settings, relay, live_server
):
    from sequenzy import AsyncSequenzy

    settings.smtp_url = relay.url
    draft = await _draft(tenant, html="<p>Hi {{ first_name }} {{ favourite_colour }}</p>")
    amy = (await tenant.get("/v1/contacts", params={"email": "amy@"})).json()["data"][0]
    # The async client: the relay answers on this test's event loop, which must keep running.
    client = AsyncSequenzy(base_url=f"{live_server.url}/api/v1", api_key=tenant.key, max_retries=0)
    rendered = await client.campaigns.render(draft["id"], subscriber_id=amy["id"])
    assert rendered.success and rendered.personalized and rendered.subject == "News for Amy"
    assert (
        "Hi Amy" in rendered.html
        and rendered.entity.id == draft["id"]
        and rendered.entity.type == "campaign"
    )
    checked = await client.campaigns.check(draft["id"], links=False)
    assert checked.success and checked.links_checked is False
    assert [t.tag for t in checked.unresolved_merge_tags] == ["favourite_colour"]
    assert {i.rule for i in checked.issues} >= {
        "merge_tags",
        "unsubscribe_link",
    } and checked.grade in "BCDF"
    sent = await client.campaigns.send_test(draft["id"], to="qa@acme.example")
    assert sent.success and sent.recipient_email == "qa@acme.example" and sent.email_send_id
    assert [m.rcpt_to for m in relay.handler.messages] == ["qa@acme.example"]
