"""Idempotency keys: a retried POST is answered as the first was, without doing it twice."""

from __future__ import annotations

from datetime import timedelta

from mailcast.db.models import IdempotencyKey


async def _create(tenant, body: dict, key: str):
    return await tenant.client.post(
        "/v1/campaigns", json=body, headers={**tenant.headers, "Idempotency-Key": key}
    )


async def test_the_same_key_and_request_replays_the_first_answer(tenant, relay):
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=3)
    body = tenant.campaign_body(
        audience, draft=None
    )  # starts sending: a retry must not queue anyone twice
    first = await _create(tenant, body, "create-march-1")
    again = await _create(tenant, body, "create-march-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    campaigns = (await tenant.get("/v1/campaigns")).json()["data"]
    assert len(campaigns) == 1 and campaigns[0]["stats"]["total_recipients"] == 3
    # Another request under the same key is refused; a new key is a new request.
    other = await _create(tenant, {**body, "name": "Another"}, "create-march-1")
    assert other.status_code == 422 and "another request" in other.json()["error"]["message"]
    assert (await _create(tenant, body, "create-march-2")).status_code == 201
    assert len((await tenant.get("/v1/campaigns")).json()["data"]) == 2


async def test_refusals_replay_too_and_keys_expire_and_belong_to_an_account(
    tenant, make_tenant, clock
):
    bad = {"name": ""}
    first = await tenant.client.post(
        "/v1/audiences", json=bad, headers={**tenant.headers, "Idempotency-Key": "k"}
    )
    again = await tenant.client.post(
        "/v1/audiences", json=bad, headers={**tenant.headers, "Idempotency-Key": "k"}
    )
    assert (
        first.status_code == again.status_code == 422
        and again.headers["idempotent-replayed"] == "true"
    )
    clock.advance(hours=24, seconds=1)  # kept 24 hours
    fresh = await tenant.client.post(
        "/v1/audiences", json={"name": "Now"}, headers={**tenant.headers, "Idempotency-Key": "k"}
    )
    assert fresh.status_code == 201
    stranger = await make_tenant()
    theirs = await stranger.client.post(
        "/v1/audiences", json={"name": "Now"}, headers={**stranger.headers, "Idempotency-Key": "k"}
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != fresh.json()["id"]
    for key in ("", "with space", "x" * 256):
        r = await tenant.client.post(
            "/v1/audiences", json={"name": "x"}, headers={**tenant.headers, "Idempotency-Key": key}
        )
        assert r.status_code == 422, key


async def test_a_retry_while_the_first_runs_is_409(tenant, sessions, clock):
    async with sessions() as session:  # a first request with this key, still being answered
        session.add(
            IdempotencyKey(
                account_id=tenant.account_id,
                key="busy",
                created_at=clock(),
                expires_at=clock() + timedelta(hours=24),
            )
        )
        await session.commit()
    r = await tenant.client.post(
        "/v1/audiences", json={"name": "A"}, headers={**tenant.headers, "Idempotency-Key": "busy"}
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    clock.advance(minutes=11)  # its process died: the key is free again
    r = await tenant.client.post(
        "/v1/audiences", json={"name": "A"}, headers={**tenant.headers, "Idempotency-Key": "busy"}
    )
    assert r.status_code == 201
