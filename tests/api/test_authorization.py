"""Every endpoint x {no key, malformed key, revoked key, each scope, another account's key}."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mailcast.delivery import repository as delivery_repo
from mailcast.scopes import Scope


async def build_world(tenant) -> dict[str, str]:
    """One of every resource, in the states the endpoints below act on."""
    if not tenant.domain_name:
        await tenant.verified_domain()
    audience = await tenant.audience(contacts=2)
    spare_audience = await tenant.audience(name="Spare")
    r = await tenant.post(
        "/v1/contacts", json={"email": f"solo-{uuid.uuid4().hex[:8]}@example.org"}
    )
    contact = r.json()["id"]
    await tenant.post(f"/v1/audiences/{audience}/contacts", json={"contact_ids": [contact]})
    r = await tenant.post("/v1/templates", json={"name": "T", "html": "<p>{{ first_name }}</p>"})
    template = r.json()["id"]
    draft = (await tenant.campaign(audience))["id"]
    sending = (await tenant.campaign(audience, draft=False))["id"]
    paused = (await tenant.campaign(audience, draft=False))["id"]
    assert (await tenant.post(f"/v1/campaigns/{paused}/pause")).status_code == 200
    ab_test = {
        "enabled": True,
        "sample_percent": 50,
        "winner_metric": "open_rate",
        "variant_b": {"subject": "B"},
    }
    ab_campaign = (await tenant.campaign(audience, draft=False, ab_test=ab_test))["id"]
    sent = (await tenant.campaign(await tenant.audience(name="Empty"), draft=False))["id"]
    async with (
        tenant.sessions() as session
    ):  # nobody to send to: the worker's next tick would close it
        await delivery_repo.finish_done_campaigns(session, tenant.clock(), [sent])
        await session.commit()
    tenant.clock.advance(hours=7)  # resend to non-openers is open from 6 hours after sending
    r = await tenant.post("/v1/api-keys", json={"name": "spare"})
    domains = (await tenant.get("/v1/domains")).json()["data"]
    imported = await tenant.client.post(
        "/v1/contacts/imports",
        content=b"email\nnew@example.org\n",
        headers={**tenant.headers, "Content-Type": "text/csv"},
    )
    return {
        "audience": audience,
        "spare_audience": spare_audience,
        "contact": contact,
        "template": template,
        "draft": draft,
        "sending": sending,
        "paused": paused,
        "key": r.json()["id"],
        "domain": domains[0]["id"],
        "ab": ab_campaign,
        "sent": sent,
        "import": imported.json()["id"],
    }


@dataclass
class Endpoint:
    method: str
    path: str
    scope: Scope
    success: int = 200
    body: Callable[[dict[str, str]], Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def names_an_id(self) -> bool:
        return "{" in self.path


R, S, F = Scope.READ_ONLY, Scope.SENDING_ACCESS, Scope.FULL_ACCESS
_campaign_body = None  # filled per world from the tenant

ENDPOINTS = [
    Endpoint("GET", "/v1/account", R),
    Endpoint("PUT", "/v1/account", F, 200, lambda w: {"postal_address": "1 Main St\nSpringfield"}),
    Endpoint("PATCH", "/v1/account", F, 200, lambda w: {"name": "Renamed"}),
    Endpoint("GET", "/v1/api-keys", R),
    Endpoint("POST", "/v1/api-keys", F, 201, lambda w: {"name": "new", "scope": "read_only"}),
    Endpoint("DELETE", "/v1/api-keys/{key}", F),
    Endpoint("GET", "/v1/domains", R),
    Endpoint("POST", "/v1/domains", F, 201, lambda w: {"name": "other.example.net"}),
    Endpoint("GET", "/v1/domains/{domain}", R),
    Endpoint("POST", "/v1/domains/{domain}/verify", F),
    Endpoint("DELETE", "/v1/domains/{domain}", F),
    Endpoint("GET", "/v1/audiences", R),
    Endpoint("POST", "/v1/audiences", F, 201, lambda w: {"name": "New"}),
    Endpoint("GET", "/v1/audiences/{audience}", R),
    Endpoint("PUT", "/v1/audiences/{audience}", F, 200, lambda w: {"name": "Renamed"}),
    Endpoint("PATCH", "/v1/audiences/{audience}", F, 200, lambda w: {"description": "d"}),
    Endpoint("DELETE", "/v1/audiences/{spare_audience}", F),
    Endpoint(
        "POST",
        "/v1/audiences/{spare_audience}/contacts",
        F,
        200,
        lambda w: {"contact_ids": [w["contact"]]},
    ),
    Endpoint("GET", "/v1/audiences/{audience}/contacts", R),
    Endpoint("DELETE", "/v1/audiences/{audience}/contacts/{contact}", F),
    Endpoint("GET", "/v1/contacts", R),
    Endpoint("POST", "/v1/contacts", F, 201, lambda w: {"email": "new@example.org"}),
    Endpoint(
        "POST",
        "/v1/contacts/import",
        F,
        200,
        lambda w: {"contacts": [{"email": "imp@example.org"}]},
    ),
    Endpoint("POST", "/v1/contacts/imports", F, 202, lambda w: b"email\nimp@example.org\n"),
    Endpoint("GET", "/v1/contacts/imports", R),
    Endpoint("GET", "/v1/contacts/imports/{import}", R),
    Endpoint("GET", "/v1/contacts/imports/{import}/errors", R),
    Endpoint("GET", "/v1/contacts/{contact}", R),
    Endpoint("PUT", "/v1/contacts/{contact}", F, 200, lambda w: {"first_name": "Solo"}),
    Endpoint("PATCH", "/v1/contacts/{contact}", F, 200, lambda w: {"last_name": "Han"}),
    Endpoint("DELETE", "/v1/contacts/{contact}", F),
    Endpoint("GET", "/v1/templates", R),
    Endpoint("POST", "/v1/templates", F, 201, lambda w: {"name": "N", "text": "hi"}),
    Endpoint("GET", "/v1/templates/{template}", R),
    Endpoint("PUT", "/v1/templates/{template}", F, 200, lambda w: {"name": "N2"}),
    Endpoint("PATCH", "/v1/templates/{template}", F, 200, lambda w: {"text": "t"}),
    Endpoint("DELETE", "/v1/templates/{template}", F),
    Endpoint("GET", "/v1/campaigns", R),
    Endpoint("POST", "/v1/campaigns", F, 201, lambda w: w["campaign_body"]),
    Endpoint("GET", "/v1/campaigns/{draft}", R),
    Endpoint("PUT", "/v1/campaigns/{draft}", F, 200, lambda w: {"name": "Renamed"}),
    Endpoint("PATCH", "/v1/campaigns/{draft}", F, 200, lambda w: {"subject": "New subject"}),
    Endpoint("DELETE", "/v1/campaigns/{draft}", F),
    Endpoint("POST", "/v1/campaigns/{draft}/send", S),
    Endpoint(
        "POST",
        "/v1/campaigns/{draft}/schedule",
        S,
        200,
        lambda w: {"scheduled_at": "2026-04-01T09:00:00Z"},
    ),
    Endpoint("POST", "/v1/campaigns/{sending}/pause", S),
    Endpoint("POST", "/v1/campaigns/{paused}/resume", S),
    Endpoint("POST", "/v1/campaigns/{draft}/cancel", F),
    Endpoint("GET", "/v1/campaigns/{draft}/stats", R),
    Endpoint("GET", "/v1/campaigns/{draft}/render", R),
    Endpoint(
        "POST", "/v1/campaigns/{draft}/test", S, 200, lambda w: {"emails": ["test@example.org"]}
    ),
    Endpoint("GET", "/v1/campaigns/{ab}/ab-test/results", R),
    Endpoint("POST", "/v1/campaigns/{ab}/ab-test/pick-winner", S, 200, lambda w: {"variant": "b"}),
    Endpoint("POST", "/v1/campaigns/{sent}/resend-to-non-openers", F),
    Endpoint("POST", "/api/v1/campaigns/{sent}/resend-to-non-openers", F),
    Endpoint("POST", "/api/v1/campaigns/{draft}/render", R, 200, lambda w: {}),
    Endpoint("POST", "/api/v1/campaigns/{draft}/check", R, 200, lambda w: {"links": False}),
    Endpoint(
        "POST", "/api/v1/campaigns/{draft}/test", S, 200, lambda w: {"to": "test@example.org"}
    ),
]


def test_matrix_covers_every_route(app):
    """A new route without a row here fails this test."""
    paths = app.openapi()["paths"]
    routes = {
        (m.upper(), p)
        for p, ops in paths.items()
        for m in ops
        if p.startswith(("/v1/", "/api/v1/"))
    }
    listed = {(e.method, e.path.replace("{spare_audience}", "{audience}")) for e in ENDPOINTS}
    normalise = lambda p: __import__("re").sub(r"\{[A-Za-z_]+\}", "{}", p)  # noqa: E731
    assert {(m, normalise(p)) for m, p in routes} == {(m, normalise(p)) for m, p in listed}


async def _call(
    tenant, endpoint: Endpoint, world: dict, key: str | None, raw_header: str | None = None
):
    path = endpoint.path.format(**world)
    headers = (
        {"Authorization": raw_header}
        if raw_header is not None
        else ({"Authorization": f"Bearer {key}"} if key else {})
    )
    kwargs: dict[str, Any] = {}
    if endpoint.body:
        body = endpoint.body(world)
        if isinstance(body, bytes):  # a file upload
            kwargs = {"content": body}
            headers = {**headers, "Content-Type": "text/csv"}
        else:
            kwargs = {"json": body}
    return await tenant.client.request(endpoint.method, path, headers=headers, **kwargs)


async def _world(tenant) -> dict:
    world = await build_world(tenant)
    world["campaign_body"] = tenant.campaign_body(world["audience"])
    return world


def _code(endpoint: Endpoint, r) -> str:
    """The error's code in the endpoint's dialect (the Sequenzy one under /api/v1)."""
    body = r.json()
    if endpoint.path.startswith("/api/v1/"):
        assert body["success"] is False and isinstance(body["error"], str)
        return body["code"]
    return body["error"]["code"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
async def test_authorization(endpoint: Endpoint, make_tenant):
    owner = await make_tenant()
    stranger = await make_tenant()
    world = await _world(owner)
    revoked = await owner.key_with(Scope.FULL_ACCESS)
    revoked_id = [
        k for k in (await owner.get("/v1/api-keys")).json()["data"] if k["name"] == "full_access"
    ][0]["id"]
    assert (await owner.request("DELETE", f"/v1/api-keys/{revoked_id}")).status_code == 200

    # Anonymous, malformed, unknown and revoked keys: the same 401.
    unknown = "mc_live_" + "A" * 43
    for header in (
        None,
        "Bearer",
        "Basic abc",
        "Bearer not-a-key",
        f"Bearer {unknown}",
        f"Bearer {revoked}",
    ):
        r = await _call(owner, endpoint, world, None, raw_header=header)
        assert r.status_code == 401, (header, r.text)
        assert _code(endpoint, r) == "unauthorized"

    # Scopes below the endpoint's: 403 insufficient_scope (401 in the Sequenzy dialect, whose SDK
    # maps no 403).
    for scope in Scope:
        if scope.rank < endpoint.scope.rank:
            r = await _call(owner, endpoint, world, await owner.key_with(scope))
            assert r.status_code == (401 if endpoint.path.startswith("/api/v1/") else 403), (
                scope,
                r.text,
            )
            assert _code(endpoint, r) == "insufficient_scope"

    # Another account: ids of this one do not exist for it.
    r = await _call(stranger, endpoint, world, stranger.key)
    if endpoint.names_an_id or endpoint.id in ("POST /v1/campaigns",):
        assert r.status_code == 404, r.text
        assert _code(endpoint, r) == "not_found"
    else:
        assert r.status_code == endpoint.success, r.text
        if endpoint.path == "/v1/account":  # the key's own account, whatever it asks
            assert r.json()["id"] == stranger.account_id
        elif endpoint.method == "GET" and "data" in r.json():
            seen = {item["id"] for item in r.json()["data"]}
            assert not seen & {
                v for v in world.values() if isinstance(v, str)
            }  # never the owner's resources

    # The exact scope, and every scope above it, succeed (each on a world of its own when it
    # writes).
    for scope in Scope:
        if scope.rank >= endpoint.scope.rank:
            if endpoint.method != "GET" and scope is not endpoint.scope:
                world = await _world(owner)
            r = await _call(owner, endpoint, world, await owner.key_with(scope))
            assert r.status_code == endpoint.success, (scope, r.text)
