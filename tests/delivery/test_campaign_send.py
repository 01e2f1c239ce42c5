"""A campaign to 2,000 contacts through a real SMTP relay on loopback: every contact receives
exactly one message, personalised, with the right headers; the stats follow what happened."""

from __future__ import annotations

import re
from email.utils import parseaddr

import pytest

N = 2000


@pytest.fixture
async def big_campaign(tenant):
    await tenant.verified_domain("news.example.com")
    audience = (await tenant.post("/v1/audiences", json={"name": "Everyone"})).json()["id"]
    rows = [
        {
            "email": f"reader{i}@example.org",
            "first_name": f"Reader{i}",
            "metadata": {"city": f"City{i % 7}"},
        }
        for i in range(N)
    ]
    # Subscriber data that looks like template syntax.
    rows[5]["first_name"] = "{{ 7 | times: 6 }} <b>"
    r = await tenant.post("/v1/contacts/import", json={"contacts": rows, "audience_id": audience})
    assert r.json()["created"] == N
    html = (
        "<html><body><h1>Hello {{ first_name | default: 'there' }}</h1>"
        "<p>Weather in {{ metadata.city }}.</p>"
        '<p><a href="https://shop.example.com/sale?ref=mail">Sale</a> '
        '<a href="https://blog.example.com/post/1">Blog</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    )
    campaign = await tenant.campaign(
        audience,
        draft=None,
        html=html,
        preview_text="This week only",
        subject="Hi {{ first_name }}, news from {{ metadata.city }}",
    )
    assert campaign["status"] == "sending" and campaign["stats"]["total_recipients"] == N
    return campaign


async def test_every_contact_gets_exactly_one_personalised_message(
    tenant, big_campaign, worker, relay, clock
):
    relay.handler.reject = {"reader10@example.org", "reader11@example.org"}
    relay.handler.defer_once = {"reader20@example.org"}

    await worker.run_until_idle()
    counts = relay.handler.counts()
    assert len(counts) == N - 3 and set(counts.values()) == {1}
    # The 451 is retried after its backoff, not before.
    status = (await tenant.get(f"/v1/campaigns/{big_campaign['id']}")).json()
    assert status["status"] == "sending"
    clock.advance(seconds=61)
    await worker.run_until_idle()
    counts = relay.handler.counts()
    assert (
        counts["reader20@example.org"] == 1 and len(counts) == N - 2 and set(counts.values()) == {1}
    )

    campaign = (await tenant.get(f"/v1/campaigns/{big_campaign['id']}")).json()
    assert campaign["status"] == "sent" and campaign["sent_at"]
    stats = (await tenant.get(f"/v1/campaigns/{big_campaign['id']}/stats")).json()
    assert (stats["total"], stats["sent"], stats["bounced"], stats["delivered"]) == (N, N, 2, N - 2)

    by_rcpt = {m.rcpt_to: m for m in relay.handler.messages}
    message_ids = set()
    for i in (0, 1, 5, 1999):
        received = by_rcpt[f"reader{i}@example.org"]
        msg = received.message
        name = "{{ 7 | times: 6 }} <b>" if i == 5 else f"Reader{i}"
        assert msg["Subject"] == f"Hi {name}, news from City{i % 7}"
        assert parseaddr(msg["To"])[1] == f"reader{i}@example.org"
        assert parseaddr(msg["From"]) == ("Newsletter", "news@news.example.com")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsub = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
        assert unsub[0].startswith("http://127.0.0.1:8025/u/") and unsub[1].startswith(
            "mailto:unsubscribe+"
        )
        assert received.mail_from.startswith("bounces+") and received.mail_from.endswith(
            "@news.example.com"
        )
        assert msg["List-Id"] == f"Everyone <{big_campaign['audience_id']}.news.example.com>"
        assert msg["Feedback-ID"] == f"{big_campaign['id']}:{tenant.account_id}:mailcast"
        message_ids.add(msg["Message-ID"])
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        if i == 5:
            # Data stays text: the merge tag in the name is not evaluated. (Tracking URLs are left
            # out of the "42" check: their random tokens can contain those digits.)
            content = re.sub(r'(?:href|src)="[^"]*"', "", html)
            assert "{{ 7 | times: 6 }} &lt;b&gt;" in content and "42" not in content
        else:
            assert f"Hello Reader{i}" in html and f"Weather in City{i % 7}" in html
        assert "This week only" in html  # the preheader
        assert (
            "https://shop.example.com" not in html and html.count("/t/c/") == 2
        )  # links rewritten
        assert "/t/o/" in html and html.count(unsub[0]) == 1  # pixel; the unsubscribe link is ours
        assert "Sale (http://127.0.0.1:8025/t/c/" in text  # plain text derived from the HTML
    assert len(message_ids) == 4


async def test_stats_follow_opens_clicks_and_unsubscribes(
    tenant, big_campaign, worker, relay, clock
):
    await worker.run_until_idle()
    messages = {m.rcpt_to: m.message for m in relay.handler.messages}
    clock.advance(minutes=10)
    browser = {
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) "
        "AppleWebKit/605.1.15 Version/17.5"
    }

    def links(i: int) -> tuple[str, list[str], str]:
        html = messages[f"reader{i}@example.org"].get_body(("html",)).get_content()
        pixel = re.search(r'src="http://127.0.0.1:8025(/t/o/[^"]+)"', html).group(1)
        clicks = re.findall(r'href="http://127.0.0.1:8025(/t/c/[^"]+)"', html)
        unsub = re.search(r'href="http://127.0.0.1:8025(/u/[^"]+)"', html).group(1)
        return pixel, clicks, unsub

    for i in range(30):  # 30 open, twice each
        pixel, _, _ = links(i)
        for _ in range(2):
            r = await tenant.client.get(pixel, headers=browser)
            assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    for i in range(20, 40):  # 20 click (10 of them never loaded images)
        _, clicks, _ = links(i)
        r = await tenant.client.get(clicks[0], headers=browser)
        assert (
            r.status_code == 302
            and r.headers["location"] == "https://shop.example.com/sale?ref=mail"
        )
    for i in range(100, 103):  # 3 unsubscribe, one of them twice
        _, _, unsub = links(i)
        page = await tenant.client.get(unsub)
        assert page.status_code == 200 and "Unsubscribe" in page.text
        assert (
            await tenant.client.post(unsub, data={"List-Unsubscribe": "One-Click"})
        ).status_code == 200
    assert (await tenant.client.post(links(100)[2])).status_code == 200

    stats = (await tenant.get(f"/v1/campaigns/{big_campaign['id']}/stats")).json()
    assert (stats["opened"], stats["clicked"], stats["unsubscribed"]) == (40, 20, 3)
    contact = (await tenant.get("/v1/contacts", params={"email": "reader101@"})).json()["data"][0]
    assert contact["unsubscribed"] is True


async def test_a_trusted_domain_signs_until_a_lookup_finds_its_key_missing(
    tenant, worker, relay, sessions, dns
):
    import dkim
    from sqlalchemy import select

    from mailcast.db.models import Domain

    await tenant.verified_domain("news.example.com")  # --trusted: verified without DNS
    async with sessions() as session:
        domain = (
            await session.execute(select(Domain).where(Domain.account_id == tenant.account_id))
        ).scalar_one()
    record = f"v=DKIM1; k={domain.dkim_algorithm}; p={domain.dkim_public_key}".encode()
    audience = await tenant.audience(contacts=2)
    await tenant.campaign(audience, draft=None)
    await worker.run_until_idle()
    assert len(relay.handler.messages) == 2
    for received in relay.handler.messages:
        assert b"DKIM-Signature:" in received.data

        def lookup(name, timeout=5):
            return record if name == b"mailcast._domainkey.news.example.com." else None

        assert dkim.verify(received.data, dnsfunc=lookup)
        signed = received.message["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
        assert "list-id" in signed.lower() and "feedback-id" in signed.lower()

    # A real lookup that does not find the key: from then on, no signature that could not verify.
    assert (await tenant.post(f"/v1/domains/{domain.id}/verify")).json()["dkim_verified"] is False
    relay.handler.messages.clear()
    await tenant.campaign(audience, draft=None)
    await worker.run_until_idle()
    assert len(relay.handler.messages) == 2
    assert all(b"DKIM-Signature:" not in m.data for m in relay.handler.messages)


@pytest.mark.parametrize(
    "body",
    [
        {"html": "<html><body><p>No way out here</p></body></html>"},
        {"html": "<p>No way out here</p>", "text": "No way out here either"},
        {"html": None, "text": "Only text, {{ first_name }}"},
    ],
)
async def test_a_body_without_an_unsubscribe_link_gets_a_footer_with_one(
    tenant, worker, relay, body
):
    await tenant.verified_domain()
    assert (
        await tenant.request(
            "PATCH", "/v1/account", json={"postal_address": "Acme <Inc>\n1 Main St"}
        )
    ).status_code == 200
    audience = await tenant.audience(contacts=1)
    await tenant.campaign(audience, draft=None, **body)
    await worker.run_until_idle()
    (received,) = relay.handler.messages
    unsubscribe = re.findall(r"<([^>]+)>", received.message["List-Unsubscribe"])[0]
    text = received.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert f"Unsubscribe: {unsubscribe}" in text and "Acme <Inc>\n1 Main St" in text
    html_part = received.message.get_body(("html",))
    if body.get("html"):
        html = html_part.get_content().replace("\r\n", "\n")
        assert f'<a href="{unsubscribe}"' in html and "Acme &lt;Inc&gt;<br />\n1 Main St" in html
        assert html.index("Unsubscribe") < html.index("/t/o/")  # inside the body, before the pixel
    else:
        assert received.message.get_content_type() == "text/plain"  # no HTML part was made up


async def test_a_body_with_its_own_unsubscribe_link_gets_no_footer(tenant, worker, relay):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=1)
    await tenant.campaign(
        audience, draft=None, html='<p>Hi <a href="{{unsubscribe_url}}">leave</a></p>'
    )
    await worker.run_until_idle()
    (received,) = relay.handler.messages
    assert "You receive this email" not in received.message.get_body(("html",)).get_content()
    assert "You receive this email" not in received.message.get_body(("plain",)).get_content()
