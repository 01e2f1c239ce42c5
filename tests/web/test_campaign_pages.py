"""The campaign pages without a dashboard: review, test send, send with its confirmation, counters,
A/B pick and resend, each doing what the API does."""

from __future__ import annotations

import re


async def test_review_then_test_then_send_then_counters(dashboard, tenant, worker, relay, settings):
    settings.smtp_url = relay.url
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=3)
    draft = await tenant.campaign(
        audience, html='<p>Hello {{ first_name }} <a href="https://x.example/a">A</a></p>'
    )
    base = f"/dashboard/company/{tenant.account_id}/campaign/{draft['id']}"
    review = await dashboard.get(base + "?step=review")
    assert review.status_code == 200
    assert re.search(r"data-recipients>3<", review.text)
    assert (
        'data-check="sender_domain"' in review.text
        and 'data-check="unsubscribe_link"' in review.text
    )
    shown_as = re.search(
        r'data-preview="subject">What(?:&#39;|\')s new in March, (User\d)<', review.text
    ).group(1)
    preview = await dashboard.get(base + "/preview")  # the audience's first member, personalised
    assert f"Hello {shown_as}" in preview.text and "/t/o/" in preview.text

    r = await dashboard.post(base + "/test", {"emails": "me@acme.example", "variant": "a"})
    assert r.status_code == 303 and "notice=test" in r.headers["location"]
    assert [m.rcpt_to for m in relay.handler.messages] == ["me@acme.example"]
    assert relay.handler.messages[0].message["Subject"].startswith("[Test] ")

    confirm = await dashboard.post(base + "/send")
    assert confirm.status_code == 200 and "Send to 3 recipients" in confirm.text
    assert (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()["status"] == "draft"
    sent = await dashboard.post(base + "/send", {"confirmed": "yes"})
    assert sent.status_code == 303
    counters = await dashboard.get(base + "/counters")
    assert 'hx-trigger="every 2s"' in counters.text  # live while it sends
    await worker.run_until_idle()
    counters = await dashboard.get(base + "/counters")
    assert re.search(r'data-figure="sent">3<', counters.text) and "hx-trigger" not in counters.text
    relay.handler.messages.clear()
    page = await dashboard.get(base)
    assert (
        page.status_code == 200
        and "Resend to non-openers" in page.text
        and "Available from" in page.text
    )


async def test_pick_winner_and_resend_from_the_page(dashboard, tenant, worker, clock):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=10)
    ab_test = {
        "enabled": True,
        "sample_percent": 50,
        "winner_metric": "open_rate",
        "variant_b": {"subject": "B"},
    }
    campaign = await tenant.campaign(audience, draft=None, ab_test=ab_test)
    await worker.run_until_idle()
    base = f"/dashboard/company/{tenant.account_id}/campaign/{campaign['id']}"
    page = await dashboard.get(base)
    assert "Pick B as the winner" in page.text and "Holdback: 5 recipients" in page.text
    assert (await dashboard.post(base + "/pick-winner", {"variant": "b"})).status_code == 303
    assert (await tenant.get(f"/v1/campaigns/{campaign['id']}/ab-test/results")).json()[
        "winner_variant"
    ] == "b"
    await worker.run_until_idle()
    clock.advance(hours=7)
    r = await dashboard.post(base + "/resend")
    assert r.status_code == 303 and "step=review" in r.headers["location"]
    draft_id = r.headers["location"].split("/campaign/")[1].split("?")[0]
    draft = (await tenant.get(f"/v1/campaigns/{draft_id}")).json()
    assert draft["resent_from_id"] == campaign["id"] and draft["subject"] == "B"
    assert "non-openers" in (await dashboard.get(r.headers["location"])).text


async def test_edit_and_schedule_in_the_viewers_zone(dashboard, tenant, clock):
    draft = await tenant.campaign()
    base = f"/dashboard/company/{tenant.account_id}/campaign/{draft['id']}"
    form = await dashboard.get(base + "/edit")
    assert form.status_code == 200 and 'name="subject"' in form.text
    r = await dashboard.post(
        base + "/edit",
        {
            "name": "Renamed",
            "subject": "New subject",
            "from": draft["from"],
            "preview_text": "",
            "html": "<p>New body</p>",
            "text": "",
        },
    )
    assert r.status_code == 303
    got = (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()
    assert (got["name"], got["subject"], got["html"]) == (
        "Renamed",
        "New subject",
        "<p>New body</p>",
    )
    # 10:30 at UTC+2 is 08:30 UTC (the clock stands at 2026-03-02 09:00 UTC)
    r = await dashboard.post(base + "/schedule", {"when": "2026-03-05T10:30", "offset": "120"})
    assert r.status_code == 303
    assert (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()[
        "scheduled_at"
    ] == "2026-03-05T08:30:00.000Z"
    bad = await dashboard.post(base + "/schedule", {"when": "tomorrow", "offset": "0"})
    assert bad.status_code == 422 and "date and a time" in bad.text


async def test_a_sending_campaign_whose_relay_is_down_says_so(
    dashboard, tenant, sessions, settings, clock, relay
):
    from mailcast.delivery import repository as delivery_repo
    from mailcast.delivery.transport import RelayHealth

    settings.smtp_url = relay.url
    campaign = await tenant.campaign(await tenant.audience(contacts=2), draft=None)
    base = f"/dashboard/company/{tenant.account_id}/campaign/{campaign['id']}"
    assert "Relay unreachable" not in (await dashboard.get(base)).text
    name = f"127.0.0.1:{relay.port}"
    async with sessions() as session:  # what a worker writes when the relay's circuit opens
        await delivery_repo.save_relay_health(
            session, [RelayHealth(name, clock(), "Connection refused")], clock()
        )
        await session.commit()
    for path in (base, base + "/counters"):
        shown = (await dashboard.get(path)).text
        assert re.search(
            r"data-relay-down>Relay unreachable since <time[^>]*>[^<]+</time> \(Connection "
            r"refused\)",
            shown,
        )
    async with sessions() as session:  # and when it answers again
        await delivery_repo.save_relay_health(session, [RelayHealth(name, None, None)], clock())
        await session.commit()
    assert "Relay unreachable" not in (await dashboard.get(base + "/counters")).text
