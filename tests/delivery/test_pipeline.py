"""The sender and scheduler as a user meets them: schedules, pause/resume/cancel, retries that
give up, failures of one recipient, DKIM on verified domains, the file outbox."""

from __future__ import annotations

import email
from datetime import timedelta
from email.policy import default

import dkim
import pytest
from sqlalchemy import select

from mailcast.db.models import Delivery
from mailcast.delivery.transports import build_transport
from mailcast.worker.runner import Worker


async def _audience(tenant, n: int, prefix: str = "p") -> str:
    audience = (await tenant.post("/v1/audiences", json={"name": prefix})).json()["id"]
    rows = [{"email": f"{prefix}{i}@example.org", "first_name": f"P{i}"} for i in range(n)]
    await tenant.post("/v1/contacts/import", json={"contacts": rows, "audience_id": audience})
    return audience


async def _campaign(tenant, tenant_audience=None, n: int = 5, **overrides) -> dict:
    if not tenant.domain_name:
        await tenant.verified_domain()
    audience = tenant_audience or await _audience(tenant, n)
    return await tenant.campaign(audience, **{"draft": None, **overrides})


async def _still_queued(sessions) -> str:
    """A recipient the first batch did not take (the queue's order is not the audience's)."""
    async with sessions() as session:
        return (
            await session.execute(
                select(Delivery.email)
                .where(Delivery.status == "queued")
                .order_by(Delivery.email)
                .limit(1)
            )
        ).scalar_one()


async def _get(tenant, campaign) -> dict:
    return (await tenant.get(f"/v1/campaigns/{campaign['id']}")).json()


async def test_scheduled_campaign_starts_when_due(tenant, worker, relay, clock):
    campaign = await _campaign(tenant, scheduled_at=(clock() + timedelta(hours=2)).isoformat())
    await worker.run_until_idle()
    assert (await _get(tenant, campaign))["status"] == "scheduled" and not relay.handler.messages
    clock.advance(hours=2)
    await worker.run_until_idle()
    got = await _get(tenant, campaign)
    assert got["status"] == "sent" and len(relay.handler.messages) == 5
    assert got["send_started_at"].startswith("2026-03-02T11:00")


async def test_scheduled_campaign_that_cannot_start_returns_to_draft(
    tenant, worker, relay, clock, settings
):
    campaign = await _campaign(tenant, scheduled_at=(clock() + timedelta(hours=1)).isoformat())
    domain = (await tenant.get("/v1/domains")).json()["data"][0]
    await tenant.request("DELETE", f"/v1/domains/{domain['id']}")  # the sender domain is gone
    clock.advance(hours=1)
    await worker.run_until_idle()
    got = await _get(tenant, campaign)
    assert got["status"] == "draft" and "not a verified sender domain" in got["last_error"]
    assert not relay.handler.messages


async def test_empty_audience_is_sent_at_once(tenant, worker):
    await tenant.verified_domain()
    campaign = await tenant.campaign(await tenant.audience(), draft=None)
    await worker.run_until_idle()
    assert (await _get(tenant, campaign))["status"] == "sent"


async def test_pause_resume_and_cancel(tenant, worker, relay, settings):
    settings.worker_batch_size = 10
    settings.worker_concurrency = 10
    worker.sender.concurrency = 10
    campaign = await _campaign(tenant, n=30)
    assert await worker.sender.send_batch() == 10
    await tenant.post(f"/v1/campaigns/{campaign['id']}/pause")
    await worker.run_until_idle()
    assert len(relay.handler.messages) == 10  # a paused campaign is not claimed
    await tenant.post(f"/v1/campaigns/{campaign['id']}/resume")
    assert await worker.sender.send_batch() == 10
    await tenant.post(f"/v1/campaigns/{campaign['id']}/pause")
    cancelled = (await tenant.post(f"/v1/campaigns/{campaign['id']}/cancel")).json()
    assert cancelled["status"] == "cancelled" and cancelled["stats"]["total_recipients"] == 20
    await worker.run_until_idle()
    assert len(relay.handler.messages) == 20 and set(relay.handler.counts().values()) == {1}


@pytest.mark.parametrize("leaves", ["unsubscribes", "is deleted"])
async def test_a_contact_who_leaves_mid_campaign_gets_nothing_from_the_next_batch(
    tenant, worker, relay, settings, sessions, leaves
):
    worker.sender.concurrency = 5
    settings.worker_batch_size = 5
    campaign = await _campaign(tenant, n=10)
    assert await worker.sender.send_batch() == 5
    later = await _still_queued(sessions)
    contact = (await tenant.get("/v1/contacts", params={"email": later})).json()["data"][0]
    if leaves == "unsubscribes":
        await tenant.request("PATCH", f"/v1/contacts/{contact['id']}", json={"unsubscribed": True})
    else:
        assert (await tenant.request("DELETE", f"/v1/contacts/{contact['id']}")).status_code == 200
    await worker.run_until_idle()
    assert later not in relay.handler.counts() and len(relay.handler.messages) == 9
    async with sessions() as session:
        row = (await session.execute(select(Delivery).where(Delivery.email == later))).scalar_one()
    assert row.status == "failed"  # the audit trail keeps the address it was meant for
    if leaves == "unsubscribes":
        assert "unsubscribed" in row.smtp_response
    assert (await _get(tenant, campaign))["status"] == "sent"


async def test_deleting_a_cancelled_campaign_removes_its_deliveries(
    tenant, worker, relay, settings, sessions
):
    worker.sender.concurrency = 5
    settings.worker_batch_size = 5
    campaign = await _campaign(tenant, n=10)
    kept = await _campaign(tenant, n=3)
    assert await worker.sender.send_batch() == 5
    await tenant.post(
        f"/v1/campaigns/{campaign['id']}/pause"
    )  # sending cannot be cancelled, paused can
    assert (await tenant.post(f"/v1/campaigns/{campaign['id']}/cancel")).json()[
        "status"
    ] == "cancelled"
    assert (await tenant.request("DELETE", f"/v1/campaigns/{campaign['id']}")).status_code == 200
    async with sessions() as session:
        left = (await session.execute(select(Delivery.campaign_id))).scalars().all()
    assert set(left) == {kept["id"]}


async def test_temporary_failures_give_up_after_the_lifetime(
    tenant, worker, relay, clock, settings, sessions
):
    settings.retry_lifetime_hours = 1
    relay.handler.reject = set()
    campaign = await _campaign(tenant, n=1)
    always_busy = "p0@example.org"

    async def refuse(server, session, envelope, address, rcpt_options):
        return "452 4.2.2 mailbox full"

    relay.handler.handle_RCPT = refuse
    for _ in range(8):
        await worker.run_until_idle()
        clock.advance(minutes=16)
    async with sessions() as session:
        row = (
            await session.execute(select(Delivery).where(Delivery.email == always_busy))
        ).scalar_one()
    assert row.status == "failed" and "gave up" in row.smtp_response and row.attempts >= 3
    assert (await _get(tenant, campaign))["status"] == "sent"


async def test_bounce_suppresses_the_contact(tenant, worker, relay):
    relay.handler.reject = {"p1@example.org"}
    await _campaign(tenant, n=3)
    await worker.run_until_idle()
    contact = (await tenant.get("/v1/contacts", params={"email": "p1@"})).json()["data"][0]
    assert contact["suppressed"] is True
    second = await tenant.campaign(
        (await tenant.get("/v1/audiences")).json()["data"][0]["id"], draft=None
    )
    assert second["stats"]["total_recipients"] == 2


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
async def test_dkim_signed_when_the_key_is_published(tenant, worker, relay, dns, algorithm):
    domain = (
        await tenant.post(
            "/v1/domains", json={"name": "signed.example.com", "dkim_algorithm": algorithm}
        )
    ).json()
    assert domain["dkim_algorithm"] == algorithm
    for record in domain["dns_records"]:
        dns.publish(record["host"], record["value"])
    assert (await tenant.post(f"/v1/domains/{domain['id']}/verify")).json()["dkim_verified"]
    tenant.domain_name = "signed.example.com"
    await tenant.campaign(await _audience(tenant, 2), draft=None)
    await worker.run_until_idle()
    dkim_value = next(r["value"] for r in domain["dns_records"] if r["record"] == "dkim").encode()
    for received in relay.handler.messages:
        assert received.data.startswith(b"DKIM-Signature: v=1; a=%s-sha256;" % algorithm.encode())
        assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: dkim_value)


async def test_file_outbox_when_no_relay_is_configured(tenant, sessions, settings, clock, tmp_path):
    settings.smtp_url = ""
    transport, where = build_transport(settings)
    assert "not leaving this machine" in where and str(settings.resolved_outbox_dir()) in where
    await _campaign(tenant, n=3)
    await Worker(sessions, settings, transport, clock).run_until_idle()
    files = sorted(settings.resolved_outbox_dir().glob("*.eml"))
    assert len(files) == 3
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=default)
    assert parsed["X-Envelope-To"].startswith("<p") and parsed["List-Unsubscribe-Post"]


async def test_one_unrenderable_message_does_not_stop_the_campaign(tenant, worker, relay, sessions):
    # A filter that raises for one subscriber's data: that delivery fails with the reason, the rest
    # go.
    campaign = await _campaign(tenant, n=3, html="<p>{{ metadata.n | divided_by: metadata.d }}</p>")
    contacts = (await tenant.get("/v1/contacts", params={"limit": 10})).json()["data"]
    for c in contacts:
        await tenant.request(
            "PATCH",
            f"/v1/contacts/{c['id']}",
            json={"metadata": {"n": 6, "d": 0 if c["email"] == "p1@example.org" else 2}},
        )
    await worker.run_until_idle()
    assert set(relay.handler.counts()) == {"p0@example.org", "p2@example.org"}
    async with sessions() as session:
        row = (
            await session.execute(select(Delivery).where(Delivery.email == "p1@example.org"))
        ).scalar_one()
    assert row.status == "failed" and "render" in row.smtp_response
    assert (await _get(tenant, campaign))["status"] == "sent"
