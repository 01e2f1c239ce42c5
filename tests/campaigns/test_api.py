"""The campaigns API: creation semantics, updates, actions, lists and stats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailcast.db.models import Delivery


@pytest.fixture
async def ready(tenant):
    await tenant.verified_domain()
    tenant.audience_id = await tenant.audience(contacts=4)
    return tenant


def _iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def _deliveries(sessions, campaign_id: str) -> int:
    async with sessions() as session:
        stmt = select(func.count()).select_from(Delivery).where(Delivery.campaign_id == campaign_id)
        return (await session.execute(stmt)).scalar_one()


async def test_create_without_schedule_sends_at_once(ready, sessions):
    c = await ready.campaign(ready.audience_id, draft=None)
    assert c["status"] == "sending"
    assert c["send_started_at"] is not None
    assert c["stats"]["total_recipients"] == 4
    assert await _deliveries(sessions, c["id"]) == 4


async def test_create_with_future_schedule_is_scheduled(ready, clock, sessions):
    when = clock() + timedelta(days=3)
    c = await ready.campaign(ready.audience_id, draft=None, scheduled_at=_iso(when))
    assert c["status"] == "scheduled"
    assert c["scheduled_at"].startswith(when.strftime("%Y-%m-%dT%H:%M:%S"))
    assert await _deliveries(sessions, c["id"]) == 0


async def test_create_response_has_the_spec_fields(ready):
    c = await ready.campaign(
        ready.audience_id, reply_to="replies@news.example.com", preview_text="Peek"
    )
    for key in (
        "id",
        "name",
        "status",
        "audience_id",
        "subject",
        "scheduled_at",
        "created_at",
        "from",
        "reply_to",
        "preview_text",
        "template_id",
        "html",
        "text",
        "unsubscribe_url",
        "stats",
        "updated_at",
    ):
        assert key in c
    assert c["id"].startswith("camp_")
    assert c["reply_to"] == "replies@news.example.com" and c["preview_text"] == "Peek"
    assert c["created_at"].endswith("Z")


async def test_unsubscribed_and_suppressed_contacts_are_not_queued(ready, sessions):
    contacts = (await ready.get("/v1/contacts", params={"audience_id": ready.audience_id})).json()[
        "data"
    ]
    await ready.request("PATCH", f"/v1/contacts/{contacts[0]['id']}", json={"unsubscribed": True})
    r = await ready.post(f"/v1/campaigns/{(await ready.campaign(ready.audience_id))['id']}/send")
    assert r.json()["stats"]["total_recipients"] == 3


async def test_template_based_campaign(ready):
    t = (
        await ready.post("/v1/templates", json={"name": "T", "html": "<p>Hi {{ first_name }}</p>"})
    ).json()
    c = await ready.campaign(ready.audience_id, html=None, template_id=t["id"])
    assert c["template_id"] == t["id"] and c["html"] is None
    assert (await ready.request("DELETE", f"/v1/templates/{t['id']}")).status_code == 409


async def test_update_by_put_and_patch(ready):
    c = await ready.campaign(ready.audience_id)
    r = await ready.request(
        "PUT",
        f"/v1/campaigns/{c['id']}",
        json={"name": "Renamed", "from": "Other <o@news.example.com>"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Renamed" and r.json()["from"] == "Other <o@news.example.com>"
    r = await ready.request("PATCH", f"/v1/campaigns/{c['id']}", json={"text": "plain"})
    assert (
        r.json()["text"] == "plain"
        and r.json()["name"] == "Renamed"
        and r.json()["html"] == c["html"]
    )


async def test_update_schedules_and_unschedules(ready, clock):
    c = await ready.campaign(ready.audience_id)
    when = _iso(clock() + timedelta(hours=5))
    r = await ready.request("PATCH", f"/v1/campaigns/{c['id']}", json={"scheduled_at": when})
    assert r.json()["status"] == "scheduled"
    r = await ready.request("PATCH", f"/v1/campaigns/{c['id']}", json={"scheduled_at": None})
    assert r.json()["status"] == "draft" and r.json()["scheduled_at"] is None


@pytest.mark.parametrize("action", ["send", "pause"])
async def test_update_only_draft_or_scheduled(ready, action):
    c = await ready.campaign(ready.audience_id)
    await ready.post(f"/v1/campaigns/{c['id']}/send")
    if action == "pause":
        await ready.post(f"/v1/campaigns/{c['id']}/pause")
    r = await ready.request("PATCH", f"/v1/campaigns/{c['id']}", json={"name": "Too late"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"
    assert (await ready.get(f"/v1/campaigns/{c['id']}")).json()["name"] == c["name"]


async def test_actions_follow_the_lifecycle(ready, clock):
    c = await ready.campaign(ready.audience_id)
    cid = c["id"]
    assert (await ready.post(f"/v1/campaigns/{cid}/pause")).status_code == 409
    r = await ready.post(
        f"/v1/campaigns/{cid}/schedule", json={"scheduled_at": _iso(clock() + timedelta(days=1))}
    )
    assert r.json()["status"] == "scheduled"
    r = await ready.post(
        f"/v1/campaigns/{cid}/schedule", json={"scheduled_at": _iso(clock() + timedelta(days=2))}
    )
    assert r.json()["status"] == "scheduled"  # rescheduled
    assert (await ready.post(f"/v1/campaigns/{cid}/send")).json()["status"] == "sending"
    cancel = await ready.post(f"/v1/campaigns/{cid}/cancel")
    assert cancel.status_code == 409 and cancel.json()["error"]["details"]["status"] == "sending"
    assert (await ready.request("DELETE", f"/v1/campaigns/{cid}")).status_code == 409
    assert (await ready.post(f"/v1/campaigns/{cid}/pause")).json()["status"] == "paused"
    assert (await ready.post(f"/v1/campaigns/{cid}/pause")).status_code == 409
    assert (await ready.post(f"/v1/campaigns/{cid}/resume")).json()["status"] == "sending"
    assert (await ready.post(f"/v1/campaigns/{cid}/pause")).json()["status"] == "paused"
    r = await ready.post(f"/v1/campaigns/{cid}/cancel")
    assert r.json()["status"] == "cancelled" and r.json()["cancelled_at"]
    # What was never handed to a relay is dropped with the cancel.
    assert r.json()["stats"]["total_recipients"] == 0
    assert (await ready.post(f"/v1/campaigns/{cid}/resume")).status_code == 409
    assert (await ready.request("DELETE", f"/v1/campaigns/{cid}")).status_code == 200
    assert (await ready.get(f"/v1/campaigns/{cid}")).status_code == 404


async def test_schedule_in_the_past_is_refused(ready, clock):
    c = await ready.campaign(ready.audience_id)
    r = await ready.post(
        f"/v1/campaigns/{c['id']}/schedule",
        json={"scheduled_at": _iso(clock() - timedelta(minutes=1))},
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "scheduled_at"


async def test_delete_draft(ready):
    c = await ready.campaign(ready.audience_id)
    r = await ready.request("DELETE", f"/v1/campaigns/{c['id']}")
    assert r.json() == {"id": c["id"], "object": "campaign", "deleted": True}
    assert (await ready.request("DELETE", f"/v1/campaigns/{c['id']}")).status_code == 404


async def test_list_filters_and_pages(ready):
    ids = [(await ready.campaign(ready.audience_id, name=f"C{i}"))["id"] for i in range(5)]
    await ready.post(f"/v1/campaigns/{ids[0]}/send")
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await ready.get("/v1/campaigns", params=params)).json()
        seen += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids))  # newest first, each once
    sending = (await ready.get("/v1/campaigns", params={"status": "sending"})).json()["data"]
    assert [c["id"] for c in sending] == [ids[0]]
    assert sending[0]["stats"]["total_recipients"] == 4


async def test_stats_have_the_spec_shape(ready):
    c = await ready.campaign(ready.audience_id, draft=None)
    r = await ready.get(f"/v1/campaigns/{c['id']}/stats")
    # The spec's shape, and machine_opened beside opened (the non-openers a scanner touched).
    assert r.json() == {
        "campaign_id": c["id"],
        "total": 4,
        "sent": 0,
        "delivered": 0,
        "opened": 0,
        "clicked": 0,
        "bounced": 0,
        "complained": 0,
        "unsubscribed": 0,
        "machine_opened": 0,
    }


async def test_audience_in_use_cannot_be_deleted(ready):
    c = await ready.campaign(ready.audience_id)
    r = await ready.request("DELETE", f"/v1/audiences/{ready.audience_id}")
    assert r.status_code == 409 and r.json()["error"]["details"]["campaign_ids"] == [c["id"]]
    await ready.post(f"/v1/campaigns/{c['id']}/cancel")
    assert (await ready.request("DELETE", f"/v1/audiences/{ready.audience_id}")).status_code == 200
    # The campaign keeps its history; sending it again is refused with a clear error.
    assert (await ready.get(f"/v1/campaigns/{c['id']}")).json()["audience_id"] == ready.audience_id
