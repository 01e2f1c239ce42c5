"""Resend to non-openers: a draft copy of a sent campaign for the audience members who did not open
it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.accounts import service as accounts
from mailcast.campaigns import ab
from mailcast.campaigns import repository as repo
from mailcast.campaigns.lifecycle import Status
from mailcast.config import Settings
from mailcast.db.models import Campaign
from mailcast.errors import CampaignNotSent, NotFound, ResendTooEarly
from mailcast.ids import new_id


async def resend_to_non_openers(
    session: AsyncSession, settings: Settings, account_id: str, campaign_id: str, now: datetime
) -> tuple[Campaign, int]:
    """The draft and the estimated number of non-openers.

    Only for a sent campaign, from `resend_delay_hours` (6) after it finished sending, which gives
    opens time to register. The draft copies the email (as the winner of an A/B test had it) and
    the audience with every rule the original had, plus "did not open <original>": a resend of a
    resend keeps each inherited exclusion. Membership is evaluated when the draft starts sending,
    so someone who opens in between is not sent to. It is not sent automatically."""
    account = await accounts.lock_account(session, account_id)
    original = await repo.get(session, account_id, campaign_id)
    if original is None:
        raise NotFound("No such campaign")
    if original.status != Status.SENT.value or original.sent_at is None:
        raise CampaignNotSent(
            f"Only a sent campaign can be resent to non-openers; this one is {original.status}",
            {"status": original.status},
        )
    available_at = original.sent_at + timedelta(hours=settings.resend_delay_hours)
    if now < available_at:
        raise ResendTooEarly(
            f"Resend to non-openers is available {settings.resend_delay_hours:g} hours after the "
            "campaign "
            f"finished sending, from {available_at.isoformat().replace('+00:00', 'Z')}",
            {
                "available_at": available_at.isoformat().replace("+00:00", "Z"),
                "sent_at": original.sent_at.isoformat().replace("+00:00", "Z"),
            },
        )
    accounts.check_campaign_limit(settings, account, await repo.count(session, account_id))
    content = ab.content(original, original.ab_winner or "a")
    rules = [
        rule
        for rule in original.audience_rules or []
        if not (rule.get("type") == "not_opened" and rule.get("campaign_id") == original.id)
    ]
    rules.append({"type": "not_opened", "campaign_id": original.id})
    copy = Campaign(
        id=new_id("camp"),
        account_id=account_id,
        name=f"{original.name} (Non-openers)"[:200],
        subject=content["subject"],
        from_address=original.from_address,
        reply_to=original.reply_to,
        preview_text=content["preview_text"],
        audience_id=original.audience_id,
        template_id=original.template_id,
        html=content["html"],
        text=content["text"],
        unsubscribe_url=original.unsubscribe_url,
        status=Status.DRAFT.value,
        audience_rules=rules,
        resent_from_id=original.id,
        email_id=new_id("email"),
        created_at=now,
        updated_at=now,
    )
    session.add(copy)
    await session.flush()
    # The estimate is who the draft would be sent to if it started now (machine opens are no opens).
    return copy, await repo.recipient_count(session, copy, now)
