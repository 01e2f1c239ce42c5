"""The official sendry SDK (unchanged) against mailcast served by uvicorn on loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sendry import Sendry
from sendry._exceptions import ApiError, AuthenticationError, NotFoundError, ValidationError


async def test_sdk_drives_every_resource(tenant, live_server, dns, clock):
    client = Sendry(tenant.key, base_url=live_server.url, retries=0)

    # API keys
    created = client.api_keys.create({"name": "SDK key", "scope": "sending_access"})
    assert created["key"].startswith("mc_live_") and created["scope"] == "sending_access"
    assert created["id"] in [k["id"] for k in client.api_keys.list()["data"]]
    assert client.api_keys.remove(created["id"])["deleted"] is True
    with pytest.raises(AuthenticationError):
        Sendry(created["key"], base_url=live_server.url, retries=0).campaigns.list()

    # Domains, verified through DNS
    domain = client.domains.create({"name": "news.sdk.example"})
    for record in domain["dns_records"]:
        dns.publish(record["host"], record["value"])
    result = client.domains.verify(domain["id"])
    assert result["status"] == "verified" and result["spf_verified"] and result["dkim_verified"]
    assert client.domains.get(domain["id"])["status"] == "verified"
    assert [d["id"] for d in client.domains.list()["data"]] == [domain["id"]]

    # Audiences and contacts
    audience = client.audiences.create({"name": "Newsletter", "description": "Weekly"})
    imported = client.contacts.import_contacts(
        {
            "contacts": [
                {"email": f"reader{i}@example.org", "first_name": f"R{i}"} for i in range(3)
            ],
            "audience_id": audience["id"],
        }
    )
    assert (imported["created"], imported["updated"], imported["total"]) == (3, 0, 3)
    extra = client.contacts.create({"email": "extra@example.org", "first_name": "Ex"})
    assert client.contacts.get(extra["id"])["email"] == "extra@example.org"
    assert client.contacts.update(extra["id"], {"last_name": "Tra"})["last_name"] == "Tra"
    assert (
        client.audiences.add_contacts(audience["id"], {"contact_ids": [extra["id"]]})["added"] == 1
    )
    assert client.audiences.get(audience["id"])["member_count"] == 4
    assert len(client.audiences.list_contacts(audience["id"])["data"]) == 4
    assert client.audiences.remove_contact(audience["id"], extra["id"])["deleted"] is True
    assert client.audiences.update(audience["id"], {"name": "Weekly"})["name"] == "Weekly"
    page = client.contacts.list({"audience_id": audience["id"], "limit": 2})
    assert len(page["data"]) == 2 and page["has_more"]
    rest = client.contacts.list(
        {"audience_id": audience["id"], "limit": 2, "cursor": page["next_cursor"]}
    )
    assert len(rest["data"]) == 1 and not rest["has_more"]
    assert client.contacts.remove(extra["id"])["deleted"] is True
    with pytest.raises(NotFoundError):
        client.contacts.get(extra["id"])

    # Templates
    template = client.templates.create(
        {"name": "Welcome", "subject": "Hi", "html": "<p>{{ first_name }}</p>"}
    )
    assert client.templates.get(template["id"])["html"] == "<p>{{ first_name }}</p>"
    assert client.templates.update(template["id"], {"subject": "Hello"})["subject"] == "Hello"
    assert template["id"] in [t["id"] for t in client.templates.list()["data"]]

    # Campaigns through their lifecycle
    campaign = client.campaigns.create(
        {
            "name": "March",
            "subject": "Hi {{ first_name }}",
            "from_": "News <news@news.sdk.example>",
            "audience_id": audience["id"],
            "html": "<p>March</p>",
            "reply_to": "reply@news.sdk.example",
            "preview_text": "Peek",
            "unsubscribe_url": "https://news.sdk.example/unsub",
            "draft": True,
        }
    )
    assert campaign["status"] == "draft" and campaign["from"] == "News <news@news.sdk.example>"
    updated = client.campaigns.update(
        campaign["id"], {"subject": "New subject", "from_": "news@news.sdk.example"}
    )
    assert updated["subject"] == "New subject" and updated["from"] == "news@news.sdk.example"
    when = (clock() + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert (
        client.campaigns.schedule(campaign["id"], {"scheduled_at": when})["status"] == "scheduled"
    )
    assert [c["id"] for c in client.campaigns.list({"status": "scheduled"})["data"]] == [
        campaign["id"]
    ]
    assert client.campaigns.send(campaign["id"])["status"] == "sending"
    assert client.campaigns.pause(campaign["id"])["status"] == "paused"
    assert client.campaigns.resume(campaign["id"])["status"] == "sending"
    full = client.campaigns.get(campaign["id"])
    assert full["stats"]["total_recipients"] == 3 and full["stats"]["delivered_count"] == 0
    with pytest.raises(ApiError) as conflict:
        client.campaigns.cancel(campaign["id"])
    assert conflict.value.status_code == 409 and conflict.value.code == "invalid_transition"
    client.campaigns.pause(campaign["id"])
    assert client.campaigns.cancel(campaign["id"])["status"] == "cancelled"
    assert client.campaigns.remove(campaign["id"])["deleted"] is True
    assert client.templates.remove(template["id"])["deleted"] is True

    # Errors arrive as the SDK's typed exceptions.
    with pytest.raises(ValidationError) as invalid:
        client.campaigns.create({"name": "x"})
    assert invalid.value.details
    with pytest.raises(NotFoundError):
        client.campaigns.get("camp_doesnotexist")
    assert client.domains.remove(domain["id"])["deleted"] is True
    assert client.audiences.remove(audience["id"])["deleted"] is True
