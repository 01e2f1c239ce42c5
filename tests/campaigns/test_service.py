"""Campaign rules called directly, as the workers will call them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailcast.accounts import service as accounts
from mailcast.campaigns import repository, service
from mailcast.campaigns.lifecycle import ALLOWED, Status
from mailcast.db.models import AccountUsage, Delivery
from mailcast.errors import InvalidTransition, QuotaExceeded


async def test_snapshot_is_idempotent(tenant, sessions, clock):
    await tenant.verified_domain()
    c = await tenant.campaign(await tenant.audience(contacts=7), draft=None)
    async with sessions() as session:
        campaign = await repository.get(session, tenant.account_id, c["id"])
        assert await repository.snapshot_recipients(session, campaign, clock()) == 0
        await session.commit()
        total = (await session.execute(select(func.count()).select_from(Delivery))).scalar_one()
    assert total == 7


async def test_start_sending_a_scheduled_campaign(tenant, sessions, clock, settings):
    """The path the scheduler takes when a scheduled campaign comes due."""
    await tenant.verified_domain()
    audience = await tenant.audience(contacts=3)
    c = await tenant.campaign(
        audience, draft=None, scheduled_at=(clock() + timedelta(hours=1)).isoformat()
    )
    clock.advance(hours=1)
    async with sessions() as session:
        account = await accounts.lock_account(session, tenant.account_id)
        campaign = await service.get_campaign(session, tenant.account_id, c["id"])
        await service.start_sending(session, settings, account, campaign, clock())
        await session.commit()
        usage = (await session.execute(select(AccountUsage.marketing_emails))).scalar_one()
    assert usage == 3
    got = (await tenant.get(f"/v1/campaigns/{c['id']}")).json()
    assert got["status"] == "sending" and got["send_started_at"].startswith("2026-03-02T10:00")


async def test_failed_start_changes_nothing(make_tenant, sessions, clock, settings):
    tenant = await make_tenant("free")
    await tenant.verified_domain()
    c = await tenant.campaign(await tenant.audience(contacts=2))
    async with sessions() as session:
        account = await accounts.lock_account(session, tenant.account_id)
        campaign = await service.get_campaign(session, tenant.account_id, c["id"])
        with pytest.raises(QuotaExceeded):
            await service.start_sending(session, settings, account, campaign, clock())
        await session.rollback()
    got = (await tenant.get(f"/v1/campaigns/{c['id']}")).json()
    assert got["status"] == "draft" and got["stats"]["total_recipients"] == 0


@pytest.mark.parametrize("status", list(Status))
async def test_sent_and_cancelled_are_final(status):
    if status in (Status.SENT, Status.CANCELLED):
        assert ALLOWED[status] == frozenset()
    else:
        assert ALLOWED[status]


async def test_refusal_names_the_current_status(tenant, sessions, clock):
    await tenant.verified_domain()
    c = await tenant.campaign(await tenant.audience(contacts=1))
    async with sessions() as session:
        with pytest.raises(InvalidTransition) as refused:
            await service.pause_campaign(session, tenant.account_id, c["id"], clock())
    assert refused.value.details == {"status": "draft", "allowed_from": ["sending"]}
