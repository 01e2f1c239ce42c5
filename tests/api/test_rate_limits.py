"""Rate limits: per API key, per account by plan, per client address for failed keys and for
sign-in; 429 in the error shape with Retry-After and RateLimit-* headers, which the official
sendry SDK raises as its RateLimitError."""

from __future__ import annotations

import httpx
import pytest
from sendry import Sendry
from sendry._exceptions import RateLimitError
from sqlalchemy import event

from mailcast.app import create_app
from tests.conftest import LiveServer


@pytest.fixture
def limited(settings, engine, clock):
    """A client of an app with rate limits on, set by the test."""
    clients = []

    async def make(**limits) -> httpx.AsyncClient:
        for name, value in {"rate_limits_enabled": True, **limits}.items():
            setattr(settings, name, value)
        app = create_app(settings, engine=engine, clock=clock)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mailcast.test"
        )
        clients.append(client)
        return client

    yield make
    # the clients hold no connections (ASGI transport): nothing to close


def _is_429(r: httpx.Response, limit: str) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited" and limit in r.json()["error"]["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert (
        r.headers["RateLimit-Remaining"] == "0" and r.headers["RateLimit-Limit"] == limit.split()[0]
    )


async def test_each_key_has_its_limit(limited, tenant):
    client = await limited(rate_limit_key="3/minute")
    other = (await tenant.post("/v1/api-keys", json={"name": "second"})).json()["key"]
    for _ in range(3):
        assert (await client.get("/v1/campaigns", headers=tenant.headers)).status_code == 200
    _is_429(await client.get("/v1/campaigns", headers=tenant.headers), "3 per 1 minute")
    assert (await client.get("/v1/campaigns", headers=tenant.auth(other))).status_code == 200


async def test_an_account_has_its_plans_limit_across_its_keys(limited, make_tenant):
    client = await limited(rate_limit_key="100/minute", rate_limit_account_pro="4/minute")
    pro, business = await make_tenant("pro"), await make_tenant("business")
    second = (await pro.post("/v1/api-keys", json={"name": "second"})).json()["key"]
    for key in (pro.key, second, pro.key, second):
        assert (await client.get("/v1/campaigns", headers=pro.auth(key))).status_code == 200
    _is_429(await client.get("/v1/campaigns", headers=pro.auth(second)), "4 per 1 minute")
    for _ in range(5):  # another plan, its own figure
        assert (await client.get("/v1/campaigns", headers=business.headers)).status_code == 200


async def test_failed_keys_from_one_address_stop_costing_a_lookup(limited, tenant, engine):
    client = await limited(rate_limit_failed_keys="3/minute")
    wrong = {"Authorization": "Bearer mc_live_" + "x" * 43}
    for _ in range(3):
        assert (await client.get("/v1/campaigns", headers=wrong)).status_code == 401
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        _is_429(await client.get("/v1/campaigns", headers=wrong), "3 per 1 minute")
        _is_429(await client.get("/v1/campaigns", headers=tenant.headers), "3 per 1 minute")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
    assert statements == []  # no key was looked up


async def test_sign_in_attempts_are_limited_per_address(limited):
    client = await limited(rate_limit_sign_in="2/minute")
    for _ in range(2):
        r = await client.post(
            "/dashboard/login", data={"email": "who@example.org", "password": "wrong"}
        )
        assert r.status_code != 429
    r = await client.post(
        "/dashboard/login", data={"email": "who@example.org", "password": "wrong"}
    )
    assert r.status_code == 429 and "text/html" in r.headers["content-type"]
    assert int(r.headers["Retry-After"]) >= 1


async def test_the_sendry_sdk_raises_its_rate_limit_error(settings, clock, engine, tenant):
    settings.rate_limits_enabled, settings.rate_limit_key = True, "2/minute"
    with LiveServer(settings, clock) as server:
        client = Sendry(tenant.key, base_url=server.url, retries=0)
        client.campaigns.list()
        client.campaigns.list()
        with pytest.raises(RateLimitError) as raised:
            client.campaigns.list()
    assert 1 <= raised.value.retry_after <= 60


async def test_the_sequenzy_dialect_answers_429_in_its_shape(limited, tenant):
    client = await limited(rate_limit_key="1/minute")
    path = "/api/v1/campaigns/camp_unknown/resend-to-non-openers"
    assert (await client.post(path, headers=tenant.headers, json={})).status_code != 429
    r = await client.post(path, headers=tenant.headers, json={})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert (
        r.json()["success"] is False
        and r.json()["code"] == "rate_limited"
        and r.json()["retryable"] is True
    )
