from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.expression import Exists

from mailcast.campaigns.lifecycle import Status
from mailcast.db import owned
from mailcast.db.functions import seconds_since, try_lock
from mailcast.db.models import (
    CONTACT_UNREACHABLE,
    AudienceMember,
    Campaign,
    CampaignTestSend,
    Contact,
    Delivery,
    Event,
    RelayStatus,
)
from mailcast.db.rows import changed
from mailcast.db.types import UTCDateTime
from mailcast.statuses import CampaignStatus, DeliveryStatus


async def get(session: AsyncSession, account_id: str, campaign_id: str) -> Campaign | None:
    return await owned.get(session, Campaign, account_id, campaign_id)


async def count(session: AsyncSession, account_id: str) -> int:
    stmt = select(func.count()).select_from(Campaign).where(Campaign.account_id == account_id)
    return (await session.execute(stmt)).scalar_one()


async def list_page(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None, status: Status | None
) -> list[Campaign]:
    where = [Campaign.status == status.value] if status is not None else []
    return await owned.page(session, Campaign, account_id, limit, cursor, *where)


async def compare_and_set(
    session: AsyncSession, campaign_id: str, expected: Status, values: dict[str, Any]
) -> bool:
    """The guarded update: changes the row only if it is still in `expected`, so of two
    processes racing on one campaign exactly one wins."""
    stmt = (
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == expected.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return changed(await session.execute(stmt)) == 1


async def delete_if(session: AsyncSession, campaign_id: str, expected: Status) -> bool:
    """Deletes the campaign and its deliveries (their events follow by foreign key)."""
    stmt = delete(Campaign).where(Campaign.id == campaign_id, Campaign.status == expected.value)
    if changed(await session.execute(stmt.execution_options(synchronize_session=False))) != 1:
        return False
    await session.execute(
        delete(Delivery)
        .where(Delivery.campaign_id == campaign_id)
        .execution_options(synchronize_session=False)
    )
    return True


def _engaged(kind: str, campaign_id: str) -> Exists:
    """A person (not a machine) opened / clicked campaign `campaign_id`: the member of the outer
    query. Read from the delivery (`opened_at` / `clicked_at`, found through the (campaign,
    contact) index)."""
    first = Delivery.opened_at if kind == "open" else Delivery.clicked_at
    return (
        select(Delivery.id)
        .where(
            Delivery.campaign_id == campaign_id,
            Delivery.contact_id == AudienceMember.contact_id,
            first.is_not(None),
        )
        .exists()
    )


def rule_condition(rule: dict[str, Any]) -> ColumnElement[bool]:
    """One audience rule as a condition on the contacts table."""
    kind = rule["type"]
    if kind in ("opened", "not_opened"):
        condition = _engaged("open", rule["campaign_id"])
        return condition if kind == "opened" else ~condition
    if kind in ("clicked", "not_clicked"):
        condition = _engaged("click", rule["campaign_id"])
        return condition if kind == "clicked" else ~condition
    value: ColumnElement[str] = Contact.attributes[rule["key"]].as_string()
    if rule["op"] == "equals":
        equal: ColumnElement[bool] = value == rule["value"]
        return equal
    # Case-insensitive on both backends (SQLite's LIKE ignores ASCII case, PostgreSQL's does not).
    return value.icontains(rule["value"], autoescape=True)


def _eligible(
    campaign: Campaign,
    *columns: Any,
    after: str | None = None,
    upto: str | None = None,
    members_at: datetime | None = None,
    join_contacts: bool = True,
) -> Select[Any]:
    """The campaign's recipients among its audience's members (in contact id order from `after`
    to `upto`, each end open when None): subscribed, not suppressed, kept by the campaign's rules,
    and members since before sending started (or `members_at`, for a campaign not started).

    `join_contacts=False` (for columns of the members alone, with no metadata rule): the same
    recipients without joining every contact, by taking away the few unreachable ones by id
    (`ix_contacts_unreachable`); a member is always a contact of the audience's account."""
    conditions = [
        AudienceMember.audience_id == campaign.audience_id,
        AudienceMember.created_at <= (members_at or campaign.send_started_at),
        *[rule_condition(rule) for rule in campaign.audience_rules or []],
    ]
    if after is not None:
        conditions.append(AudienceMember.contact_id > after)
    if upto is not None:
        conditions.append(AudienceMember.contact_id <= upto)
    stmt = select(*columns).select_from(AudienceMember)
    if not join_contacts:
        unreachable = select(Contact.id).where(
            Contact.id == AudienceMember.contact_id, CONTACT_UNREACHABLE
        )
        return stmt.where(~unreachable.exists(), *conditions)
    return stmt.join(Contact, Contact.id == AudienceMember.contact_id).where(
        Contact.account_id == campaign.account_id,
        Contact.unsubscribed.is_(False),
        Contact.suppressed_reason.is_(None),
        *conditions,
    )


async def _queue(
    session: AsyncSession, campaign: Campaign, now: datetime, after: str | None, limit: int | None
) -> tuple[int, str | None]:
    """Queue the recipients among the campaign's next `limit` members after the member `after`
    (all of them: None; from the first: None), in one INSERT ... SELECT. Returns how many were
    queued, and the last member's id of the range (None: the range reached the audience's end)."""
    upto = None
    if limit is not None:
        members = select(AudienceMember.contact_id).where(
            AudienceMember.audience_id == campaign.audience_id
        )
        if after is not None:
            members = members.where(AudienceMember.contact_id > after)
        upto = (
            await session.execute(
                members.order_by(AudienceMember.contact_id).offset(limit - 1).limit(1)
            )
        ).scalar_one_or_none()
    ts = literal(now, UTCDateTime())
    rows = _eligible(
        campaign,
        literal(campaign.id),
        Contact.id,
        Contact.email,
        literal("a"),
        literal(DeliveryStatus.QUEUED.value),
        literal(0),
        ts,
        ts,
        ts,
        after=after,
        upto=upto,
    )
    stmt = insert(Delivery).from_select(
        [
            "campaign_id",
            "contact_id",
            "email",
            "variant",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "updated_at",
        ],
        rows,
    )
    return changed(await session.execute(stmt)), upto


async def snapshot_recipients(
    session: AsyncSession, campaign: Campaign, now: datetime, first: int | None = None
) -> int:
    """The recipient snapshot, when sending starts: the recipients are counted, and the first
    `first` audience members (all: None) are queued, one delivery per recipient. The rest are
    queued by the workers as the campaign sends (`fill_queue`), in chunks of members in contact
    id order; the snapshot is what the members since before the start and the rules let through.
    So a large campaign is not all queued in the request that starts it, before its first
    message. Returns the number of recipients (what the month's quota counts).

    Idempotent: a campaign that has any delivery was started already, and a second call queues
    nothing. That is asked with one index probe, not per row (`ON CONFLICT DO NOTHING` is a
    speculative insertion per row). Two snapshots of one campaign cannot run side by side: each
    follows the guarded move to `sending` in its transaction, and the (campaign, contact) unique
    index would refuse the second anyway."""
    taken = select(Delivery.id).where(Delivery.campaign_id == campaign.id).limit(1)
    if (await session.execute(taken)).first() is not None:
        return 0
    queued, upto = await _queue(session, campaign, now, None, first)
    campaign.queue_fill_after, campaign.queue_filled = upto, upto is None
    if upto is None:
        campaign.recipients = queued
    else:
        campaign.recipients = await recipient_count(
            session, campaign, campaign.send_started_at or now
        )
    return campaign.recipients


async def recipient_count(session: AsyncSession, campaign: Campaign, at: datetime) -> int:
    """How many recipients the campaign's snapshot has (or would have, started at `at`): the
    snapshot's own selection, counted."""
    metadata_rules = any(rule["type"] == "metadata" for rule in campaign.audience_rules or [])
    stmt = _eligible(campaign, func.count(), members_at=at, join_contacts=metadata_rules)
    return int((await session.execute(stmt)).scalar_one())


# "mcfi": with the campaign id's hash, the advisory lock of one campaign's fill.
_FILL_LOCK = 0x6D63_6669


async def fill_queue(
    session: AsyncSession, campaign_id: str, now: datetime, limit: int
) -> tuple[int, bool] | None:
    """The worker's part of the snapshot: queue the recipients among a sending campaign's next
    `limit` members (more chunks if one had none). Returns (queued, whether the queue is now
    full), or None when there was nothing to do: the campaign is not sending or is full, or
    another worker is filling it (PostgreSQL: one fill a campaign at a time, the others skip).
    The fill key moves with a guarded update, so a fill that raced a pause or another fill
    changes nothing (the caller rolls back)."""
    if not await try_lock(session, _FILL_LOCK, campaign_id):
        return None
    campaign = (
        await session.execute(
            select(Campaign)
            .where(Campaign.id == campaign_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if campaign is None or campaign.status != CampaignStatus.SENDING or campaign.queue_filled:
        return None
    after, queued, upto = campaign.queue_fill_after, 0, campaign.queue_fill_after
    while True:
        n, upto = await _queue(session, campaign, now, upto, limit)
        queued += n
        if n or upto is None:
            break
    stmt = (
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == CampaignStatus.SENDING,
            Campaign.queue_filled.is_(False),
            Campaign.queue_fill_after.is_(None)
            if after is None
            else Campaign.queue_fill_after == after,
        )
        .values(queue_fill_after=upto, queue_filled=upto is None)
        .execution_options(synchronize_session=False)
    )
    if changed(await session.execute(stmt)) != 1:
        return None
    return queued, upto is None


async def filling(session: AsyncSession) -> list[str]:
    """Sending campaigns whose queue is not full yet."""
    stmt = select(Campaign.id).where(
        Campaign.status == CampaignStatus.SENDING, Campaign.queue_filled.is_(False)
    )
    return list((await session.execute(stmt)).scalars())


async def drop_unsent(session: AsyncSession, campaign_id: str) -> int:
    """Remove deliveries that were never handed to a relay (a cancelled remainder)."""
    stmt = delete(Delivery).where(
        Delivery.campaign_id == campaign_id,
        Delivery.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.HELD)),
    )
    return changed(await session.execute(stmt))


async def recipients_for_assignment(
    session: AsyncSession, campaign_id: str
) -> list[tuple[int, str | None]]:
    stmt = select(Delivery.id, Delivery.contact_id).where(Delivery.campaign_id == campaign_id)
    return [(r[0], r[1]) for r in await session.execute(stmt)]


async def set_groups(
    session: AsyncSession, ids: list[int], group: str, variant: str, status: str | None
) -> None:
    values: dict[str, Any] = {"ab_group": group, "variant": variant}
    if status:
        values["status"] = status
    for start in range(0, len(ids), 1000):
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[start : start + 1000]))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


async def release_holdback(
    session: AsyncSession, campaign_id: str, variant: str, now: datetime
) -> int:
    stmt = (
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.HELD)
        .values(status=DeliveryStatus.QUEUED, variant=variant, next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return changed(await session.execute(stmt))


async def set_winner(session: AsyncSession, campaign_id: str, variant: str, now: datetime) -> bool:
    """Guarded: only the first pick wins."""
    stmt = (
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.ab_winner.is_(None))
        .values(ab_winner=variant, ab_winner_evaluated_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return changed(await session.execute(stmt)) == 1


async def variant_results(session: AsyncSession, campaign_id: str) -> dict[str, dict[str, int]]:
    """Per A/B group: deliveries sent (accepted or rejected), and deliveries a person opened /
    clicked."""
    out = {g: {"sent": 0, "opened": 0, "clicked": 0, "total": 0} for g in ("a", "b", "holdback")}
    rows = await session.execute(
        select(
            Delivery.ab_group,
            Delivery.status,
            func.count(),
            func.count(Delivery.opened_at),
            func.count(Delivery.clicked_at),
        )
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.ab_group, Delivery.status)
    )
    for group, status, n, opened, clicked in rows:
        out[group]["total"] += n
        if status in (DeliveryStatus.SENT, DeliveryStatus.BOUNCED):
            out[group]["sent"] += n
            out[group]["opened"] += opened
            out[group]["clicked"] += clicked
    return out


async def due_for_evaluation(session: AsyncSession, now: datetime) -> list[Campaign]:
    """A/B campaigns still without a winner, sending or paused (evaluate_after is checked by the
    caller)."""
    stmt = select(Campaign).where(
        Campaign.status.in_((CampaignStatus.SENDING, CampaignStatus.PAUSED)),
        Campaign.ab_test.is_not(None),
        Campaign.ab_winner.is_(None),
        Campaign.send_started_at <= now,
    )
    return list((await session.execute(stmt)).scalars())


async def ids_owned(
    session: AsyncSession, account_id: str, campaign_ids: Sequence[str]
) -> set[str]:
    if not campaign_ids:
        return set()
    stmt = select(Campaign.id).where(
        Campaign.account_id == account_id, Campaign.id.in_(list(campaign_ids))
    )
    return set((await session.execute(stmt)).scalars())


async def test_sends_since(session: AsyncSession, campaign_id: str, since: datetime) -> int:
    stmt = (
        select(func.count())
        .select_from(CampaignTestSend)
        .where(CampaignTestSend.campaign_id == campaign_id, CampaignTestSend.at > since)
    )
    return (await session.execute(stmt)).scalar_one()


async def oldest_test_send_since(
    session: AsyncSession, campaign_id: str, since: datetime
) -> datetime | None:
    stmt = select(func.min(CampaignTestSend.at)).where(
        CampaignTestSend.campaign_id == campaign_id, CampaignTestSend.at > since
    )
    return (await session.execute(stmt)).scalar_one()


async def record_test_sends(
    session: AsyncSession, campaign_id: str, emails: Sequence[str], at: datetime
) -> None:
    if emails:
        await session.execute(
            insert(CampaignTestSend),
            [{"campaign_id": campaign_id, "email": e, "at": at} for e in emails],
        )


async def engagement_series(
    session: AsyncSession, campaign_id: str, start: datetime, seconds: int, buckets: int
) -> list[tuple[int, int]]:
    """People's first opens and first clicks in each of `buckets` buckets of `seconds` from
    `start` (later ones in the last), read from the opened and clicked deliveries' indexes."""
    out = [[0, 0] for _ in range(buckets)]
    for i, column in enumerate((Delivery.opened_at, Delivery.clicked_at)):
        bucket = func.floor(seconds_since(session, column, start) / seconds).label("bucket")
        stmt = (
            select(bucket, func.count())
            .where(Delivery.campaign_id == campaign_id, column.is_not(None))
            .group_by(bucket)
        )
        for index, n in await session.execute(stmt):
            out[min(max(int(index), 0), buckets - 1)][i] += n
    return [(a, b) for a, b in out]


async def clicks_per_link(
    session: AsyncSession, campaign_id: str, limit: int = 50
) -> list[tuple[str, int, int]]:
    """(url, clicks by people, people who clicked it), most clicked first: the click events of the
    campaign's deliveries that were clicked (found through their index)."""
    clicked = (
        select(Delivery.id)
        .where(Delivery.campaign_id == campaign_id, Delivery.clicked_at.is_not(None))
        .scalar_subquery()
    )
    stmt = (
        select(Event.url, func.count(), func.count(func.distinct(Event.delivery_id)))
        .where(Event.delivery_id.in_(clicked), Event.type == "click", Event.machine.is_(False))
        .group_by(Event.url)
        .order_by(func.count().desc())
        .limit(limit)
    )
    return [(url or "", n, people) for url, n, people in await session.execute(stmt)]


async def deliveries_of_contact(
    session: AsyncSession, account_id: str, contact_id: str, limit: int = 100
) -> list[tuple[Any, ...]]:
    """The contact's deliveries, newest campaign first: (campaign id, name, status of the delivery,
    sent_at, opened_at, clicked_at, open count, unsubscribed_at, complained_at). Found campaign by
    campaign through the (campaign, contact) key: deliveries have no index by contact alone (one
    more index for every recipient queued)."""
    stmt = (
        select(
            Campaign.id,
            Campaign.name,
            Delivery.status,
            Delivery.sent_at,
            Delivery.opened_at,
            Delivery.clicked_at,
            Delivery.open_count,
            Delivery.unsubscribed_at,
            Delivery.complained_at,
        )
        .join(
            Delivery, and_(Delivery.campaign_id == Campaign.id, Delivery.contact_id == contact_id)
        )
        .where(Campaign.account_id == account_id)
        .order_by(Campaign.id.desc())
        .limit(limit)
    )
    return [tuple(row) for row in await session.execute(stmt)]


async def relays_down(session: AsyncSession) -> dict[str, tuple[datetime, str | None]]:
    """The relays the workers cannot reach: since when, and the last error."""
    rows = await session.execute(
        select(RelayStatus.relay, RelayStatus.down_since, RelayStatus.error).where(
            RelayStatus.down_since.is_not(None)
        )
    )
    return {relay: (since, error) for relay, since, error in rows if since is not None}
