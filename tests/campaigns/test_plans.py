"""Plan limits and the monthly marketing-email quota."""

from __future__ import annotations

from datetime import timedelta

import pytest


@pytest.mark.parametrize("plan,limit", [("free", 3), ("pro", 25)])
async def test_campaign_limit(make_tenant, plan, limit):
    tenant = await make_tenant(plan)
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=1)
    ids = [(await tenant.campaign(audience, name=f"C{i}"))["id"] for i in range(limit)]
    r = await tenant.post("/v1/campaigns", json=tenant.campaign_body(audience))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "plan_limit_reached"
    assert r.json()["error"]["details"] == {"plan": plan, "limit": limit, "current": limit}
    # Deleting one frees room.
    assert (await tenant.request("DELETE", f"/v1/campaigns/{ids[0]}")).status_code == 200
    assert (
        await tenant.post("/v1/campaigns", json=tenant.campaign_body(audience))
    ).status_code == 201


async def test_business_is_unlimited(make_tenant, settings):
    tenant = await make_tenant("business")
    await tenant.verified_domain()
    audience = await tenant.audience()
    for _ in range(30):
        assert (
            await tenant.post("/v1/campaigns", json=tenant.campaign_body(audience))
        ).status_code == 201


async def test_free_plan_cannot_send_marketing_email(make_tenant):
    tenant = await make_tenant("free")
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=2)
    r = await tenant.post("/v1/campaigns", json=tenant.campaign_body(audience, draft=False))
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    assert r.json()["error"]["details"].items() >= {"quota": 0, "used": 0, "needed": 2}.items()
    assert (await tenant.get("/v1/campaigns")).json()["data"] == []  # nothing was created
    draft = await tenant.campaign(audience)
    r = await tenant.post(f"/v1/campaigns/{draft['id']}/send")
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    assert (await tenant.get(f"/v1/campaigns/{draft['id']}")).json()["status"] == "draft"


async def test_quota_counts_what_is_left_of_the_month(make_tenant, settings, clock):
    settings.monthly_quota_pro = 5
    tenant = await make_tenant("pro")
    await tenant.verified_domain()
    three = await tenant.audience(contacts=3, name="three")
    first = await tenant.campaign(three, draft=None)
    assert first["status"] == "sending"
    second = await tenant.campaign(three)
    r = await tenant.post(f"/v1/campaigns/{second['id']}/send")
    assert r.status_code == 403
    assert r.json()["error"]["details"].items() >= {"quota": 5, "used": 3, "needed": 3}.items()
    assert (await tenant.get(f"/v1/campaigns/{second['id']}")).json()["stats"][
        "total_recipients"
    ] == 0
    # Scheduling into this month is refused too, into next month it fits.
    r = await tenant.post(
        f"/v1/campaigns/{second['id']}/schedule",
        json={"scheduled_at": (clock() + timedelta(days=1)).isoformat()},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    r = await tenant.post(
        f"/v1/campaigns/{second['id']}/schedule",
        json={"scheduled_at": (clock() + timedelta(days=40)).isoformat()},
    )
    assert r.status_code == 200 and r.json()["status"] == "scheduled"


async def test_cancelled_remainder_is_given_back(make_tenant, settings):
    settings.monthly_quota_pro = 4
    tenant = await make_tenant("pro")
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=4)
    first = await tenant.campaign(audience, draft=None)
    await tenant.post(f"/v1/campaigns/{first['id']}/pause")
    second = await tenant.campaign(audience)
    assert (await tenant.post(f"/v1/campaigns/{second['id']}/send")).status_code == 403
    await tenant.post(f"/v1/campaigns/{first['id']}/cancel")
    assert (await tenant.post(f"/v1/campaigns/{second['id']}/send")).status_code == 200
