"""A campaign sent to three contacts, with each one's tracking links."""

from __future__ import annotations

import re

import pytest


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
