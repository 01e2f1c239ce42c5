"""Sender domains: the records to publish, and verification against a real DNS server on
loopback."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_private_key


def _record(domain: dict, purpose: str) -> dict:
    return next(r for r in domain["dns_records"] if r["record"] == purpose)


def _publish_all(dns, domain: dict) -> None:
    for purpose in ("spf", "dkim", "dmarc"):
        record = _record(domain, purpose)
        dns.publish(record["host"], record["value"])


async def test_create_returns_records_with_a_fresh_dkim_key(tenant, sessions, settings):
    r = await tenant.post("/v1/domains", json={"name": "Mail.Example.COM."})
    assert r.status_code == 201, r.text
    domain = r.json()
    assert domain["name"] == "mail.example.com" and domain["status"] == "pending"
    assert domain["id"].startswith("dom_")
    dkim = _record(domain, "dkim")
    assert dkim["type"] == "TXT" and dkim["host"] == "mailcast._domainkey.mail.example.com"
    public = load_der_public_key(base64.b64decode(dkim["value"].split("p=")[1]))
    assert public.key_size == 2048
    assert _record(domain, "spf")["value"].startswith("v=spf1 ")
    assert _record(domain, "dmarc")["host"] == "_dmarc.mail.example.com"
    other = (await tenant.post("/v1/domains", json={"name": "other.example.com"})).json()
    assert _record(other, "dkim")["value"] != dkim["value"]
    # The stored private key is the pair of the published public key.
    from mailcast.domains import repository

    async with sessions() as session:
        stored = await repository.get(session, tenant.account_id, domain["id"])
    from mailcast.domains.keys import KeySealer

    private = load_pem_private_key(
        KeySealer(settings.secret()).open(stored.dkim_private_key).encode(), None
    )
    assert private.public_key().public_numbers() == public.public_numbers()


async def test_duplicate_and_invalid_names(tenant):
    assert (await tenant.post("/v1/domains", json={"name": "a.example.com"})).status_code == 201
    assert (await tenant.post("/v1/domains", json={"name": "A.example.com"})).status_code == 409
    for bad in (
        "localhost",
        "-bad.example.com",
        "exa mple.com",
        "a..b.com",
        "x" * 70 + ".com",
        "1.2.3.4",
    ):
        r = await tenant.post("/v1/domains", json={"name": bad})
        assert r.status_code == 422, (bad, r.text)


async def test_verify_against_dns(tenant, dns):
    domain = (await tenant.post("/v1/domains", json={"name": "news.example.org"})).json()
    r = await tenant.post(f"/v1/domains/{domain['id']}/verify")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    assert not (r.json()["spf_verified"] or r.json()["dkim_verified"] or r.json()["dmarc_verified"])

    _publish_all(dns, domain)
    r = await tenant.post(f"/v1/domains/{domain['id']}/verify")
    body = r.json()
    assert body["status"] == "verified", body
    assert body["spf_verified"] and body["dkim_verified"] and body["dmarc_verified"]
    assert body["verified_at"] and body["problems"] == []
    assert (await tenant.get(f"/v1/domains/{domain['id']}")).json()["status"] == "verified"

    # Now campaigns may send from it.
    tenant.domain_name = "news.example.org"
    await tenant.campaign()


async def test_wrong_dkim_key_does_not_verify(tenant, dns):
    domain = (await tenant.post("/v1/domains", json={"name": "news.example.net"})).json()
    dns.publish("news.example.net", "v=spf1 a mx ~all")
    dns.publish(
        _record(domain, "dkim")["host"],
        "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong",
    )
    body = (await tenant.post(f"/v1/domains/{domain['id']}/verify")).json()
    assert body["spf_verified"] and not body["dkim_verified"] and body["status"] == "pending"


async def test_spf_include_is_required_when_configured(tenant, dns, settings):
    settings.spf_include = "relay.example.net"
    domain = (await tenant.post("/v1/domains", json={"name": "spf.example.com"})).json()
    assert _record(domain, "spf")["value"] == "v=spf1 include:relay.example.net ~all"
    dns.publish("spf.example.com", "v=spf1 mx ~all")
    assert not (await tenant.post(f"/v1/domains/{domain['id']}/verify")).json()["spf_verified"]
    dns.clear()
    dns.publish("spf.example.com", "v=spf1 ip4:192.0.2.1 include:relay.example.net -all")
    assert (await tenant.post(f"/v1/domains/{domain['id']}/verify")).json()["spf_verified"]


async def test_dns_failure_is_reported_not_a_500(tenant, dns):
    domain = (await tenant.post("/v1/domains", json={"name": "broken.example.com"})).json()
    dns.zone.servfail.add("broken.example.com")
    r = await tenant.post(f"/v1/domains/{domain['id']}/verify")
    assert r.status_code == 200
    assert r.json()["status"] == "pending"
    assert any("broken.example.com" in p for p in r.json()["problems"])


async def test_list_get_delete(tenant):
    ids = [
        (await tenant.post("/v1/domains", json={"name": f"d{i}.example.com"})).json()["id"]
        for i in range(3)
    ]
    page = (await tenant.get("/v1/domains", params={"limit": 2})).json()
    assert [d["id"] for d in page["data"]] == ids[::-1][:2] and page["has_more"]
    assert (await tenant.request("DELETE", f"/v1/domains/{ids[0]}")).json()["deleted"] is True
    assert (await tenant.get(f"/v1/domains/{ids[0]}")).status_code == 404


async def test_slow_dns_does_not_hold_up_other_requests(tenant, dns):
    """On SQLite an open transaction holds the write lock: verify must not keep one open while it
    waits."""
    import asyncio

    domain = (await tenant.post("/v1/domains", json={"name": "slow.example.com"})).json()
    dns.zone.delay["slow.example.com"] = 1.0
    verify = asyncio.create_task(tenant.post(f"/v1/domains/{domain['id']}/verify"))
    await asyncio.sleep(0.2)
    created = await tenant.post("/v1/audiences", json={"name": "While DNS is slow"})
    assert created.status_code == 201
    assert not verify.done()  # the write above did not wait for the lookup
    assert (await verify).status_code == 200


async def test_a_sender_domain_under_a_special_use_name_can_be_sent_from(tenant, dns):
    # The operator tries mailcast on a .test domain (trusted) and one its local DNS answers
    # (.internal).
    await tenant.verified_domain("acme.test")
    audience = await tenant.audience(contacts=1)
    r = await tenant.post(
        "/v1/campaigns",
        json=tenant.campaign_body(
            audience, **{"from": "News <News@Acme.TEST>", "reply_to": "help@acme.test"}
        ),
    )
    assert r.status_code == 201, r.text
    assert r.json()["from"] == "News <News@Acme.TEST>"

    domain = (await tenant.post("/v1/domains", json={"name": "corp.internal"})).json()
    r = await tenant.post(
        "/v1/campaigns", json=tenant.campaign_body(audience, **{"from": "hi@corp.internal"})
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "domain_not_verified"
    _publish_all(dns, domain)
    assert (await tenant.post(f"/v1/domains/{domain['id']}/verify")).json()["status"] == "verified"
    r = await tenant.post(
        "/v1/campaigns", json=tenant.campaign_body(audience, **{"from": "hi@corp.internal"})
    )
    assert r.status_code == 201, r.text

    # Contacts at such names stay refused: no mail can reach them.
    r = await tenant.post("/v1/contacts", json={"email": "someone@acme.test"})
    assert r.status_code == 422 and "special-use" in r.json()["error"]["message"]
    # A from on a name no domain rule accepts is a clear 422, not a verification question.
    r = await tenant.post(
        "/v1/campaigns", json=tenant.campaign_body(audience, **{"from": "hi@-bad-.test"})
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "from"
