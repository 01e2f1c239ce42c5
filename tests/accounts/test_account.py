"""The account resource: plan, limits, this month's quota, the postal address of the footer."""

from __future__ import annotations


async def test_account_shows_plan_quota_and_keeps_a_postal_address(tenant):
    r = await tenant.get("/v1/account")
    assert r.status_code == 200, r.text
    account = r.json()
    assert account["id"] == tenant.account_id and account["plan"] == "business"
    assert account["postal_address"] is None and account["campaign_limit"] is None
    assert account["quota"] == {
        "period": "2026-03",
        "limit": 1_000_000,
        "used": 0,
        "remaining": 1_000_000,
    }

    r = await tenant.request(
        "PATCH",
        "/v1/account",
        json={"postal_address": "  Acme Inc \r\n\r\n1 Main St\nSpringfield  "},
    )
    assert r.status_code == 200 and r.json()["postal_address"] == "Acme Inc\n1 Main St\nSpringfield"
    assert (await tenant.get("/v1/account")).json()[
        "postal_address"
    ] == "Acme Inc\n1 Main St\nSpringfield"
    for bad in (
        {"postal_address": "tab\there"},
        {"postal_address": "x" * 1001},
        {"plan": "enterprise"},
        {"name": ""},
    ):
        assert (await tenant.request("PATCH", "/v1/account", json=bad)).status_code == 422, bad
    r = await tenant.request("PUT", "/v1/account", json={"postal_address": None})
    assert r.status_code == 200 and r.json()["postal_address"] is None

    await tenant.campaign(
        await tenant.audience(contacts=3), draft=None
    )  # counts 3 against the quota
    assert (await tenant.get("/v1/account")).json()["quota"]["used"] == 3
