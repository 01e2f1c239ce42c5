async def test_campaign_round_trip(tenant):
    campaign = await tenant.campaign()
    assert campaign["status"] == "draft"
    r = await tenant.get(f"/v1/campaigns/{campaign['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["from"].startswith("Newsletter <")
    r = await tenant.post(f"/v1/campaigns/{campaign['id']}/send")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "sending"
    assert r.json()["stats"]["total_recipients"] == 3
