"""Bad input gets a clear 4xx in the one error shape, and changes nothing."""

from __future__ import annotations

import pytest


async def _campaign_count(tenant) -> int:
    return len((await tenant.get("/v1/campaigns", params={"limit": 100})).json()["data"])


def _error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
async def ready(tenant):
    await tenant.verified_domain()
    tenant.audience_id = await tenant.audience(contacts=2)
    return tenant


async def test_malformed_json(ready):
    r = await ready.client.post(
        "/v1/campaigns",
        content=b'{"name": "x", ',
        headers={**ready.headers, "Content-Type": "application/json"},
    )
    _error(r, 422, "invalid_json")
    assert await _campaign_count(ready) == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", 5),
        ("subject", ["a"]),
        ("audience_id", None),
        ("draft", "maybe"),
        ("scheduled_at", "next tuesday"),
        ("html", {"a": 1}),
    ],
)
async def test_wrong_types(ready, field, value):
    body = ready.campaign_body(ready.audience_id)
    body[field] = value
    error = _error(await ready.post("/v1/campaigns", json=body), 422, "validation_error")
    assert any(d["field"] == field for d in error["details"]), error
    assert await _campaign_count(ready) == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("subject", "Hello\r\nBcc: victim@example.org"),
        ("subject", "Hello\nX-Injected: 1"),
        ("subject", "Hello\rthere"),
        ("from", "News <news@news.example.com>\r\nBcc: victim@example.org"),
        ("reply_to", "a@example.org\nBcc: b@example.org"),
        ("name", "Line\u2028separator"),
    ],
)
async def test_header_injection_is_refused(ready, field, value):
    body = ready.campaign_body(ready.audience_id, **{field: value})
    error = _error(await ready.post("/v1/campaigns", json=body), 422, "validation_error")
    assert error["details"][0]["field"] == field
    assert await _campaign_count(ready) == 0


async def test_header_injection_on_update_changes_nothing(ready):
    campaign = await ready.campaign(ready.audience_id)
    r = await ready.request(
        "PATCH", f"/v1/campaigns/{campaign['id']}", json={"subject": "x\r\nBcc: a@b.c"}
    )
    _error(r, 422)
    assert (await ready.get(f"/v1/campaigns/{campaign['id']}")).json()["subject"] == campaign[
        "subject"
    ]


async def test_unknown_fields_are_refused(ready):
    body = ready.campaign_body(ready.audience_id, colour="blue")
    error = _error(await ready.post("/v1/campaigns", json=body), 422, "validation_error")
    assert error["details"][0]["field"] == "colour"
    r = await ready.post("/v1/contacts", json={"email": "a@example.org", "nickname": "A"})
    _error(r, 422)
    assert (await ready.get("/v1/contacts", params={"email": "a@example.org"})).json()["data"] == []


async def test_oversized_body_is_413(ready):
    body = ready.campaign_body(ready.audience_id, html="<p>" + "x" * 1_100_000 + "</p>")
    _error(await ready.post("/v1/campaigns", json=body), 413, "payload_too_large")
    assert await _campaign_count(ready) == 0


async def test_oversized_streamed_body_without_length_is_413(ready):
    async def chunks():
        yield b'{"name": "'
        for _ in range(1200):
            yield b"x" * 1024
        yield b'"}'

    r = await ready.client.post(
        "/v1/audiences",
        content=chunks(),
        headers={**ready.headers, "Content-Type": "application/json"},
    )
    _error(r, 413, "payload_too_large")
    names = [a["name"] for a in (await ready.get("/v1/audiences")).json()["data"]]
    assert names == ["Newsletter"]  # only the fixture's audience: nothing was created


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"unsubscribe_url": None}, "unsubscribe_url"),
        ({"unsubscribe_url": "javascript:alert(1)"}, "unsubscribe_url"),
        ({"unsubscribe_url": "/relative"}, "unsubscribe_url"),
        ({"html": None}, "html"),
        ({"from": "not an address"}, "from"),
        ({"from": "a@x.org, b@x.org"}, "from"),
        ({"subject": ""}, "subject"),
        ({"html": "<p>{% if %}</p>"}, "html"),
        ({"subject": "Hi {{ first_name "}, "subject"),
        ({"scheduled_at": "2020-01-01T00:00:00Z", "draft": False}, "scheduled_at"),
    ],
)
async def test_invalid_campaign_fields(ready, overrides, field):
    error = _error(
        await ready.post("/v1/campaigns", json=ready.campaign_body(ready.audience_id, **overrides)),
        422,
    )
    assert error["details"][0]["field"] == field, error
    assert await _campaign_count(ready) == 0


async def test_from_must_be_on_a_verified_domain(ready):
    body = ready.campaign_body(ready.audience_id, **{"from": "Spoof <ceo@unverified.example>"})
    error = _error(await ready.post("/v1/campaigns", json=body), 422, "domain_not_verified")
    assert "unverified.example" in error["message"]
    # Registered but not verified is not enough either.
    assert (await ready.post("/v1/domains", json={"name": "pending.example"})).status_code == 201
    body = ready.campaign_body(ready.audience_id, **{"from": "x@pending.example"})
    _error(await ready.post("/v1/campaigns", json=body), 422, "domain_not_verified")
    assert await _campaign_count(ready) == 0


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"cursor": "x" * 65}, {"status": "flying"}],
)
async def test_bad_list_parameters(ready, params):
    _error(await ready.get("/v1/campaigns", params=params), 422)


async def test_unknown_route_and_method(ready):
    _error(await ready.get("/v1/nothing-here"), 404, "not_found")
    _error(await ready.request("DELETE", "/v1/campaigns"), 405, "method_not_allowed")


async def test_contacts_import_keeps_good_rows_and_reports_bad_ones(ready):
    rows = [
        {"email": "good1@example.org"},
        {"email": "not-an-email"},
        {"email": "good2@example.org"},
        {"email": "x@@example.org"},
    ]
    r = await ready.post("/v1/contacts/import", json={"contacts": rows})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["created"], result["updated"], result["invalid"], result["total"]) == (
        2,
        0,
        2,
        4,
    )
    assert [e["index"] for e in result["errors"]] == [1, 3]
    emails = {
        c["email"] for c in (await ready.get("/v1/contacts", params={"limit": 100})).json()["data"]
    }
    assert {"good1@example.org", "good2@example.org"} <= emails and "not-an-email" not in emails


async def test_nul_characters_and_non_finite_numbers_are_refused(ready):
    _error(
        await ready.post("/v1/audiences", json={"name": "ok", "description": "nul\x00here"}), 422
    )
    _error(
        await ready.post("/v1/contacts", json={"email": "a@example.org", "metadata": {"k\x00": 1}}),
        422,
    )
    r = await ready.client.post(
        "/v1/contacts",
        content=b'{"email": "b@example.org", "metadata": {"x": NaN}}',
        headers={**ready.headers, "Content-Type": "application/json"},
    )
    _error(r, 422)
    _error(await ready.get("/v1/campaigns/camp_%00x"), 422)
    _error(await ready.get("/v1/contacts", params={"email": "a\x00"}), 422)
    emails = [
        c["email"] for c in (await ready.get("/v1/contacts", params={"limit": 100})).json()["data"]
    ]
    assert "a@example.org" not in emails and "b@example.org" not in emails


async def test_racing_duplicate_creates_get_one_409(ready):
    import asyncio

    results = await asyncio.gather(
        *[ready.post("/v1/contacts", json={"email": "race@example.org"}) for _ in range(4)]
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]


async def test_405_names_every_method_of_the_path(tenant):
    r = await tenant.request("DELETE", "/v1/campaigns")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = await tenant.request("POST", "/v1/audiences/aud_x")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, PATCH, PUT"


async def test_json_nested_too_deep_is_invalid_json(tenant):
    for body in ("[" * 100_000 + "]" * 100_000, '{"name": ' + "[" * 5_000 + "]" * 5_000 + "}"):
        r = await tenant.client.post(
            "/v1/audiences",
            content=body,
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_json"


async def test_a_domain_deleted_while_it_is_verified_is_not_found(
    tenant, app, sessions, dns_server, settings
):
    from mailcast.domains import repository as domains_repo

    domain = (await tenant.post("/v1/domains", json={"name": "race.example.com"})).json()

    class DeletingLookup:
        """DNS that answers after the domain was deleted by someone else."""

        async def txt(self, name: str) -> list[str]:
            async with sessions() as session:
                await domains_repo.delete_one(session, tenant.account_id, domain["id"])
                await session.commit()
            return []

    app.state.dns = DeletingLookup()
    r = await tenant.post(f"/v1/domains/{domain['id']}/verify")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
