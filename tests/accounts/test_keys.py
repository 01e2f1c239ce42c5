from __future__ import annotations

import hashlib

from sqlalchemy import select

from mailcast.db.models import ApiKey


async def test_key_is_shown_once_and_only_its_hash_is_stored(tenant, sessions):
    r = await tenant.post("/v1/api-keys", json={"name": "CI", "scope": "sending_access"})
    assert r.status_code == 201
    created = r.json()
    raw = created["key"]
    assert raw.startswith("mc_live_") and len(raw) == 51
    assert created["key_prefix"] == raw[:12]
    listed = (await tenant.get("/v1/api-keys")).json()["data"]
    assert all("key" not in k for k in listed) and raw not in str(listed)
    async with sessions() as session:
        stored = (
            await session.execute(select(ApiKey).where(ApiKey.id == created["id"]))
        ).scalar_one()
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(vars(stored))
    # The new key works, with its scope.
    assert (
        await tenant.client.get("/v1/campaigns", headers={"Authorization": f"Bearer {raw}"})
    ).status_code == 200
    r = await tenant.client.post(
        "/v1/audiences", json={"name": "x"}, headers={"Authorization": f"Bearer {raw}"}
    )
    assert r.status_code == 403 and r.json()["error"]["details"] == {
        "required": "full_access",
        "granted": "sending_access",
    }


async def test_revoked_key_is_refused_and_last_used_is_recorded(tenant, clock):
    created = (
        await tenant.post("/v1/api-keys", json={"name": "temp", "scope": "read_only"})
    ).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert (await tenant.client.get("/v1/audiences", headers=headers)).status_code == 200
    listed = {k["id"]: k for k in (await tenant.get("/v1/api-keys")).json()["data"]}
    assert listed[created["id"]]["last_used_at"] is not None
    assert (await tenant.request("DELETE", f"/v1/api-keys/{created['id']}")).status_code == 200
    r = await tenant.client.get("/v1/audiences", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert created["id"] not in {k["id"] for k in (await tenant.get("/v1/api-keys")).json()["data"]}
    assert (await tenant.request("DELETE", f"/v1/api-keys/{created['id']}")).status_code == 404


async def test_bearer_scheme_is_case_insensitive(tenant):
    r = await tenant.client.get("/v1/campaigns", headers={"Authorization": f"bearer {tenant.key}"})
    assert r.status_code == 200
