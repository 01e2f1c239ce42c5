"""Campaign rules: what may be created, edited, sent, scheduled, paused, resumed, cancelled,
deleted.

Every status change is a guarded update (compare-and-set on the status the decision was made
on); services never commit, the request or job boundary does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.utils import getaddresses
from typing import Any

from pydantic import BaseModel
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.accounts import service as accounts
from mailcast.audiences import repository as audiences_repo
from mailcast.campaigns import ab, counts
from mailcast.campaigns import repository as repo
from mailcast.campaigns.counts import Stats
from mailcast.campaigns.lifecycle import ACTIONS, DELETABLE, EDITABLE, Action, Status, can
from mailcast.campaigns.schemas import CampaignCreate, CampaignUpdate
from mailcast.config import Settings
from mailcast.db.models import Account, Campaign, Contact
from mailcast.delivery.transports import relay_for
from mailcast.domains import service as domains
from mailcast.errors import DomainNotVerified, InvalidTransition, NotFound, ValidationFailed
from mailcast.ids import new_id
from mailcast.templates import repository as templates_repo
from mailcast.templates.syntax import check_fields

CONTENT_FIELDS = (
    "name",
    "subject",
    "from_address",
    "reply_to",
    "preview_text",
    "audience_id",
    "template_id",
    "html",
    "text",
    "unsubscribe_url",
    "ab_test",
    "audience_rules",
)


def sender_address(value: str) -> str:
    """The bare address of a From value such as 'Newsletter <news@acme.com>'."""
    return _one_address(value, "from")


def _one_address(value: str, field: str) -> str:
    parsed = getaddresses([value])
    if len(parsed) != 1 or not parsed[0][1]:
        raise ValidationFailed.on(
            field, "must be exactly one email address, optionally with a name"
        )
    try:
        return domains.normalise_sender_address(parsed[0][1])
    except ValueError as exc:
        raise ValidationFailed.on(field, str(exc)) from exc


async def check_content(session: AsyncSession, account_id: str, values: dict[str, Any]) -> None:
    """What any campaign must satisfy, on create, on update (the merged result) and before
    sending."""
    if await audiences_repo.get(session, account_id, values["audience_id"]) is None:
        raise NotFound("No such audience", {"audience_id": values["audience_id"]})
    if (
        values.get("template_id")
        and await templates_repo.get(session, account_id, values["template_id"]) is None
    ):
        raise NotFound("No such template", {"template_id": values["template_id"]})
    address = sender_address(values["from_address"])
    domain = address.rpartition("@")[2]
    if not await domains.is_verified(session, account_id, domain):
        raise DomainNotVerified.on(
            "from",
            f"{domain} is not verified",
            f"from: {domain} is not a verified sender domain of this account",
        )
    if values.get("reply_to"):
        _one_address(values["reply_to"], "reply_to")
    if not (values.get("html") or values.get("text") or values.get("template_id")):
        raise ValidationFailed.on("html", "at least one of html, text or template_id is required")
    check_fields(
        subject=values["subject"],
        html=values.get("html"),
        text=values.get("text"),
        preview_text=values.get("preview_text"),
    )
    await ab.check(session, account_id, values)
    rule_campaigns = {
        r["campaign_id"] for r in values.get("audience_rules") or [] if "campaign_id" in r
    }
    missing = rule_campaigns - await repo.ids_owned(session, account_id, list(rule_campaigns))
    if missing:
        raise NotFound("No such campaign", {"campaign_ids": sorted(missing)})


def _rules(rules: Sequence[BaseModel] | None) -> list[dict[str, Any]] | None:
    return [rule.model_dump() for rule in rules] if rules else None


def _future(scheduled_at: datetime, now: datetime) -> datetime:
    if scheduled_at.tzinfo is None:
        scheduled_at = scheduled_at.replace(tzinfo=now.tzinfo)
    if scheduled_at <= now:
        raise ValidationFailed.on("scheduled_at", "must be in the future")
    return scheduled_at


async def create_campaign(
    session: AsyncSession, settings: Settings, account_id: str, body: CampaignCreate, now: datetime
) -> Campaign:
    """Without scheduled_at the campaign starts sending at once (the spec) unless draft is true."""
    account = await accounts.lock_account(session, account_id)
    accounts.check_campaign_limit(settings, account, await repo.count(session, account_id))
    values = {
        "name": body.name,
        "subject": body.subject,
        "from_address": body.from_.strip(),
        "reply_to": body.reply_to,
        "preview_text": body.preview_text,
        "audience_id": body.audience_id,
        "template_id": body.template_id,
        "html": body.html,
        "text": body.text,
        "unsubscribe_url": body.unsubscribe_url,
        "ab_test": ab.stored(body.ab_test),
        "audience_rules": _rules(body.audience_rules),
    }
    await check_content(session, account_id, values)
    scheduled_at = _future(body.scheduled_at, now) if body.scheduled_at else None
    if body.draft:
        status = Status.DRAFT
    elif scheduled_at:
        status = Status.SCHEDULED
        await accounts.check_quota(
            session,
            settings,
            account,
            await audiences_repo.eligible_count(session, body.audience_id),
            scheduled_at,
        )
    else:
        status = Status.SENDING
    campaign = Campaign(
        id=new_id("camp"),
        account_id=account_id,
        status=status.value,
        scheduled_at=scheduled_at,
        email_id=new_id("email"),
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(campaign)
    await session.flush()
    if status is Status.SENDING:
        await _begin_sending(session, settings, account, campaign, now)
    return campaign


async def _begin_sending(
    session: AsyncSession, settings: Settings, account: Account, campaign: Campaign, now: datetime
) -> int:
    """Queue the recipients and count them against the month's quota, in the transaction that
    moved the campaign to sending: either all of it happens or none of it."""
    campaign.send_started_at = now
    campaign.last_error = None
    await freeze_content(session, campaign)
    await session.flush()
    # An A/B test's groups are sized on the whole snapshot: it is queued at once.
    first = None if ab.enabled(campaign) else settings.queue_fill_chunk
    queued = await repo.snapshot_recipients(session, campaign, now, first)
    await ab.assign(session, campaign)
    await accounts.consume_quota(session, settings, account, queued, now)
    await session.flush()
    return queued


async def freeze_content(session: AsyncSession, campaign: Campaign) -> None:
    """The content as it is sent: the template's HTML and text fill what the campaign does not set
    itself, and variant B's template fills B's. Done when sending starts (a later template edit
    does not change a campaign in flight), and on a copy to preview a draft."""
    if campaign.template_id:
        template = await templates_repo.get(session, campaign.account_id, campaign.template_id)
        if template is not None:
            campaign.html = campaign.html or template.html
            campaign.text = campaign.text or template.text
    await ab.freeze(session, campaign)


async def content_as_sent(session: AsyncSession, campaign: Campaign) -> Campaign:
    """A copy of the campaign with its content as it is (or would be) sent, templates filled in;
    the campaign itself is not changed (a preview, the pre-send checks)."""
    copy = Campaign(
        **{attr.key: getattr(campaign, attr.key) for attr in inspect(Campaign).column_attrs}
    )
    await freeze_content(session, copy)
    return copy


async def sample_members(session: AsyncSession, campaign: Campaign, limit: int) -> list[Contact]:
    """Members of the campaign's audience a preview can be shown as."""
    return await audiences_repo.reachable_members(session, campaign.audience_id, limit)


async def get_campaign(session: AsyncSession, account_id: str, campaign_id: str) -> Campaign:
    campaign = await repo.get(session, account_id, campaign_id)
    if campaign is None:
        raise NotFound("No such campaign")
    return campaign


async def list_campaigns(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None, status: Status | None
) -> list[Campaign]:
    return await repo.list_page(session, account_id, limit, cursor, status)


async def stats(session: AsyncSession, campaigns: list[Campaign]) -> dict[str, Stats]:
    result = await counts.stats(session, [c.id for c in campaigns])
    for (
        c
    ) in campaigns:  # until its queue is full, a campaign's total is its recipients at the start
        if not c.queue_filled and c.recipients:
            result[c.id].total = max(result[c.id].total, c.recipients)
    return result


async def relay_outages(
    session: AsyncSession, settings: Settings, campaigns: list[Campaign]
) -> dict[str, tuple[datetime, str | None]]:
    """Sending campaigns whose relay the workers cannot reach: (since, last error) by campaign
    id."""
    sending = [c for c in campaigns if c.status == Status.SENDING]
    down = await repo.relays_down(session) if sending else {}
    outages = {}
    for campaign in sending if down else ():
        relay = relay_for(settings, sender_address(campaign.from_address).rpartition("@")[2])
        if relay in down:
            outages[campaign.id] = down[relay]
    return outages


async def queues_to_fill(session: AsyncSession, settings: Settings) -> tuple[list[str], list[str]]:
    """Sending campaigns whose queue is not full, and those of them with fewer than two chunks'
    worth unsent."""
    filling = await repo.filling(session)
    if not filling:
        return [], []
    figures = await counts.stats(session, filling)
    return filling, [
        c
        for c in filling
        if figures[c].total - figures[c].sent - figures[c].failed - figures[c].unknown
        < 2 * settings.queue_fill_chunk
    ]


async def fill_queue(
    session: AsyncSession, settings: Settings, campaign_id: str, now: datetime
) -> int | None:
    """Queue a sending campaign's next chunk of recipients (see `repository.fill_queue`). With the
    last chunk, what the quota counted at the start for recipients the snapshot then let go
    (unsubscribed or left the audience meanwhile) is given back. None: nothing was done."""
    filled = await repo.fill_queue(session, campaign_id, now, settings.queue_fill_chunk)
    if filled is None:
        return None
    queued, full = filled
    if full:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None  # its fill ran in this transaction
        await accounts.release_quota(
            session,
            campaign.account_id,
            await _unqueued(session, campaign),
            campaign.send_started_at or now,
        )
    return queued


async def _unqueued(session: AsyncSession, campaign: Campaign) -> int:
    """Recipients the quota counted at the start that the snapshot has not queued."""
    if campaign.recipients is None:
        return 0
    return max(
        0, campaign.recipients - (await counts.stats(session, [campaign.id]))[campaign.id].total
    )


def _refuse(campaign: Campaign, what: str, allowed: frozenset[Status]) -> InvalidTransition:
    return InvalidTransition(
        f"Cannot {what} a campaign that is {campaign.status}",
        {"status": campaign.status, "allowed_from": sorted(s.value for s in allowed)},
    )


async def _move(
    session: AsyncSession,
    campaign: Campaign,
    target: Status,
    values: dict[str, Any],
    what: str,
    allowed: frozenset[Status],
) -> None:
    source = Status(campaign.status)
    # An edit that keeps the status is no transition, but it is still guarded on the status.
    if source not in allowed or (source is not target and not can(source, target)):
        raise _refuse(campaign, what, allowed)
    values = {**values, "status": target.value}
    if not await repo.compare_and_set(session, campaign.id, source, values):
        await session.refresh(campaign)
        raise _refuse(campaign, what, allowed)
    for key, value in values.items():
        setattr(campaign, key, value)


async def update_campaign(
    session: AsyncSession,
    settings: Settings,
    account_id: str,
    campaign_id: str,
    body: CampaignUpdate,
    now: datetime,
) -> Campaign:
    """Edit a draft or scheduled campaign. scheduled_at moves the schedule (a draft becomes
    scheduled); scheduled_at: null turns a scheduled campaign back into a draft."""
    account = await accounts.lock_account(session, account_id)
    campaign = await get_campaign(session, account_id, campaign_id)
    if Status(campaign.status) not in EDITABLE:
        raise _refuse(campaign, "update", EDITABLE)
    fields = {("from_address" if name == "from_" else name) for name in body.model_fields_set}
    changes: dict[str, Any] = {}
    for field in fields & set(CONTENT_FIELDS):
        value = getattr(body, "from_" if field == "from_address" else field)
        if field == "ab_test":
            value = ab.stored(value)
        elif field == "audience_rules":
            value = _rules(value)
        if value is None and field in (
            "name",
            "subject",
            "from_address",
            "audience_id",
            "unsubscribe_url",
        ):
            raise ValidationFailed.on(
                "from" if field == "from_address" else field, "cannot be null"
            )
        changes[field] = value.strip() if field == "from_address" else value
    merged = {field: changes.get(field, getattr(campaign, field)) for field in CONTENT_FIELDS}
    await check_content(session, account_id, merged)

    target = Status(campaign.status)
    if "scheduled_at" in fields:
        if body.scheduled_at is None:
            changes["scheduled_at"] = None
            target = Status.DRAFT
        else:
            changes["scheduled_at"] = _future(body.scheduled_at, now)
            target = Status.SCHEDULED
            needed = await audiences_repo.eligible_count(session, merged["audience_id"])
            await accounts.check_quota(session, settings, account, needed, changes["scheduled_at"])
    changes["updated_at"] = now
    await _move(session, campaign, target, changes, "update", EDITABLE)
    return campaign


async def send_campaign(
    session: AsyncSession, settings: Settings, account_id: str, campaign_id: str, now: datetime
) -> Campaign:
    """Start sending a draft or scheduled campaign now."""
    account = await accounts.lock_account(session, account_id)
    return await start_sending(
        session, settings, account, await get_campaign(session, account_id, campaign_id), now
    )


async def start_sending(
    session: AsyncSession, settings: Settings, account: Account, campaign: Campaign, now: datetime
) -> Campaign:
    sources, target = ACTIONS[Action.SEND]
    if Status(campaign.status) not in sources:
        raise _refuse(campaign, "send", sources)
    await check_content(
        session, campaign.account_id, {f: getattr(campaign, f) for f in CONTENT_FIELDS}
    )
    await _move(
        session, campaign, target, {"send_started_at": now, "updated_at": now}, "send", sources
    )
    await _begin_sending(session, settings, account, campaign, now)
    return campaign


async def schedule_campaign(
    session: AsyncSession,
    settings: Settings,
    account_id: str,
    campaign_id: str,
    scheduled_at: datetime,
    now: datetime,
) -> Campaign:
    account = await accounts.lock_account(session, account_id)
    campaign = await get_campaign(session, account_id, campaign_id)
    sources, target = ACTIONS[Action.SCHEDULE]
    if Status(campaign.status) not in sources:
        raise _refuse(campaign, "schedule", sources)
    when = _future(scheduled_at, now)
    await check_content(session, account_id, {f: getattr(campaign, f) for f in CONTENT_FIELDS})
    needed = await audiences_repo.eligible_count(session, campaign.audience_id)
    await accounts.check_quota(session, settings, account, needed, when)
    await _move(
        session, campaign, target, {"scheduled_at": when, "updated_at": now}, "schedule", sources
    )
    return campaign


async def pause_campaign(
    session: AsyncSession, account_id: str, campaign_id: str, now: datetime
) -> Campaign:
    """Stop claiming new deliveries; what was handed to a relay is unaffected."""
    campaign = await get_campaign(session, account_id, campaign_id)
    sources, target = ACTIONS[Action.PAUSE]
    await _move(session, campaign, target, {"updated_at": now}, "pause", sources)
    return campaign


async def resume_campaign(
    session: AsyncSession, account_id: str, campaign_id: str, now: datetime
) -> Campaign:
    campaign = await get_campaign(session, account_id, campaign_id)
    sources, target = ACTIONS[Action.RESUME]
    await _move(session, campaign, target, {"updated_at": now}, "resume", sources)
    return campaign


async def cancel_campaign(
    session: AsyncSession, account_id: str, campaign_id: str, now: datetime
) -> Campaign:
    """Cancel a draft, scheduled or paused campaign. Of a paused one, what was not sent is dropped
    and given back to the month's quota. A sending or sent campaign cannot be cancelled (pause
    first)."""
    campaign = await get_campaign(session, account_id, campaign_id)
    sources, target = ACTIONS[Action.CANCEL]
    was = Status(campaign.status)
    unqueued = 0 if campaign.queue_filled else await _unqueued(session, campaign)
    # The snapshot's rest is never queued: a fill racing this finds the campaign no longer sending.
    await _move(
        session,
        campaign,
        target,
        {"cancelled_at": now, "updated_at": now, "queue_filled": True},
        "cancel",
        sources,
    )
    if was is Status.PAUSED:
        dropped = await repo.drop_unsent(session, campaign.id)
        await accounts.release_quota(
            session, account_id, dropped + unqueued, campaign.send_started_at or now
        )
    return campaign


async def start_due(
    session: AsyncSession, settings: Settings, campaign_id: str, account_id: str, now: datetime
) -> Campaign:
    """A scheduled campaign whose time has come starts sending (the scheduler's job)."""
    account = await accounts.lock_account(session, account_id)
    return await start_sending(
        session, settings, account, await get_campaign(session, account_id, campaign_id), now
    )


async def return_to_draft(
    session: AsyncSession, campaign_id: str, reason: str, now: datetime
) -> bool:
    """A scheduled campaign that could not start (quota, domain no longer verified, audience gone)
    goes back to draft with the reason, instead of being retried forever."""
    return await repo.compare_and_set(
        session,
        campaign_id,
        Status.SCHEDULED,
        {"status": Status.DRAFT.value, "last_error": reason[:2000], "updated_at": now},
    )


async def pause_for(session: AsyncSession, campaign_id: str, reason: str, now: datetime) -> bool:
    """A sending campaign the workers cannot send (its signing key cannot be opened, say) is
    paused with the reason, for its owner to fix and resume, instead of failing every recipient."""
    return await repo.compare_and_set(
        session,
        campaign_id,
        Status.SENDING,
        {"status": Status.PAUSED.value, "last_error": reason[:2000], "updated_at": now},
    )


async def delete_campaign(session: AsyncSession, account_id: str, campaign_id: str) -> None:
    """Only draft or cancelled campaigns can be deleted; deleting one frees room in the plan."""
    campaign = await get_campaign(session, account_id, campaign_id)
    status = Status(campaign.status)
    if status not in DELETABLE or not await repo.delete_if(session, campaign.id, status):
        if status in DELETABLE:
            await session.refresh(campaign)
        raise InvalidTransition(
            f"Only draft or cancelled campaigns can be deleted; this one is {campaign.status}",
            {"status": campaign.status, "allowed_from": sorted(s.value for s in DELETABLE)},
        )
