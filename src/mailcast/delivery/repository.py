"""The send queue's SQL that both databases share: claiming with leases, marking, ending leases,
recovering; what differs by database is in `store`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import ColumnElement, CompoundSelect, Select, TextClause, Update

from mailcast.db.lists import among
from mailcast.db.models import (
    DUE_CONDITION,
    Account,
    Audience,
    Campaign,
    Contact,
    Delivery,
    DeliveryLease,
    Domain,
    RelayStatus,
    table_of,
)
from mailcast.db.rows import changed
from mailcast.db.types import UTCDateTime
from mailcast.db.upsert import insert_for
from mailcast.delivery.transport import RelayHealth
from mailcast.statuses import PENDING, CampaignStatus, DeliveryStatus


class Claimed(NamedTuple):  # a tuple: a claim makes a thousand of them
    id: int
    campaign_id: str
    contact_id: str | None
    email: str
    variant: str
    attempts: int
    lease_id: int  # the batch's DeliveryLease


@dataclass
class Recipient:
    """A delivery's contact as it is just before the message goes out (`prepare`)."""

    first_name: str | None
    last_name: str | None
    metadata: dict[str, Any] | None
    reachable: bool  # the contact still exists, is subscribed and not suppressed


UNREACHABLE = Recipient(None, None, None, False)  # the contact was deleted


async def claim(
    session: AsyncSession, worker: str, now: datetime, limit: int, lease: timedelta
) -> list[Claimed]:
    """Lease up to `limit` due deliveries of sending campaigns: campaigns in the order they
    started, each one's rows by due time. A lease is one `DeliveryLease` row per campaign
    covering a range of the queue's order; the rows themselves are only read.

    Claims of one campaign take turns on its row lock; under it, leases that ran out are deleted
    and rows inside a live lease's range are skipped, so no row is leased twice. A claim reads
    from the campaign's `queue_from` key and leaves there the first key of its oldest live lease:
    nothing due and unleased lies before that key. A row that still lands before it (a worker's
    clock behind) is read later, from the head, when a claim finds less than a full batch.
    docs/design.md ("claim") gives the reasoning."""
    connection = await session.connection()  # plain rows: no ORM loading of a thousand of them
    claimed: list[Claimed] = []
    after = None  # (send_started_at, id) of the campaign done last
    while len(claimed) < limit:
        if after is None:
            campaign = (await connection.execute(_NEXT_CAMPAIGN, {"now": now})).first()
        else:
            campaign = (
                await connection.execute(
                    _NEXT_CAMPAIGN_AFTER, {"now": now, "after_at": after[0], "after_id": after[1]}
                )
            ).first()
        if campaign is None:
            break
        campaign_id, started_at, from_at, from_id = campaign
        after = (started_at, campaign_id)
        # Read once the lock is ours, by a statement of its own: a statement that waited for the
        # lock reads with the snapshot it began with (PostgreSQL), without the lease that the
        # claim it waited for committed.
        expired, leased = (
            await connection.execute(_LEASE_STATE, {"campaign_id": campaign_id, "now": now})
        ).one()
        if expired:
            await connection.execute(_DELETE_RAN_OUT, {"campaign_id": campaign_id, "now": now})
        start = (from_at, from_id) if from_at is not None and from_id is not None else None
        claimed += await _claim_campaign(
            connection, campaign_id, start, leased, worker, now, limit - len(claimed), lease
        )
    return claimed


# A claim's statements are built once, with bound parameters: building them is Python's work
# on every claim otherwise.
_NOW = bindparam("now", type_=UTCDateTime())
_CAMPAIGN_ID = bindparam("campaign_id", type_=String())
# Whether the campaign has leases that ran out; whether one lives: with none, no row needs the check
# against the leases' ranges (only claims add leases, and they take turns on the campaign's lock).
_LEASE_STATE = select(
    exists().where(DeliveryLease.campaign_id == _CAMPAIGN_ID, DeliveryLease.expires_at <= _NOW),
    exists().where(DeliveryLease.campaign_id == _CAMPAIGN_ID, DeliveryLease.expires_at > _NOW),
)
# The next sending campaign, locked (FOR NO KEY UPDATE: a lease's foreign key check does not wait).
_NEXT_CAMPAIGN = (
    select(
        Campaign.id,
        Campaign.send_started_at,
        Campaign.queue_from_at,
        Campaign.queue_from_id,
    )
    .where(Campaign.status == CampaignStatus.SENDING)
    .order_by(Campaign.send_started_at, Campaign.id)
    .limit(1)
    .with_for_update(of=Campaign, key_share=True)
)
_NEXT_CAMPAIGN_AFTER = _NEXT_CAMPAIGN.where(
    tuple_(Campaign.send_started_at, Campaign.id)
    > tuple_(bindparam("after_at", type_=UTCDateTime()), bindparam("after_id", type_=String()))
)
_LEASES = table_of(DeliveryLease)
_DELETE_RAN_OUT = delete(_LEASES).where(
    _LEASES.c.campaign_id == _CAMPAIGN_ID, _LEASES.c.expires_at <= _NOW
)
# The lease's first and last keys are read by id here, not with every row of the claim (a
# timestamp decoded per row). A due row's key does not change meanwhile: only a retry and a
# released holdback give a row a new one, and neither row is due.
_FIRST, _LAST = bindparam("first", type_=BigInteger()), bindparam("last", type_=BigInteger())
_INSERT_LEASE = (
    insert(_LEASES)
    .values(
        first_id=_FIRST,
        first_at=select(Delivery.next_attempt_at).where(Delivery.id == _FIRST).scalar_subquery(),
        last_id=_LAST,
        last_at=select(Delivery.next_attempt_at).where(Delivery.id == _LAST).scalar_subquery(),
    )
    .returning(_LEASES.c.id)
)
_FIRST_KEYS = select(_LEASES.c.first_at.label("at"), _LEASES.c.first_id.label("id")).where(
    _LEASES.c.campaign_id == _CAMPAIGN_ID
)


def _move_start(select_keys: Select[Any] | CompoundSelect[Any]) -> Update:
    """Set the campaign's start to the smallest of `keys` (a select of (at, id); none: the head)."""
    keys = select_keys.subquery()
    smallest = select(keys.c.at, keys.c.id).order_by(keys.c.at, keys.c.id).limit(1)
    return (
        update(table_of(Campaign))
        .where(table_of(Campaign).c.id == _CAMPAIGN_ID)
        .values(
            queue_from_at=smallest.with_only_columns(keys.c.at).scalar_subquery(),
            queue_from_id=smallest.with_only_columns(keys.c.id).scalar_subquery(),
        )
    )


# The next claim's start: the first key of the oldest live lease, or the head when none lives.
_MOVE_START = _move_start(_FIRST_KEYS)
# At the end of a batch read with no other lease in the way (see `end_leases`): its last key,
# or the first key of a lease older than that.
_MOVE_START_PAST = _move_start(
    union_all(
        _FIRST_KEYS,
        select(
            bindparam("last_at", type_=UTCDateTime()).label("at"),
            bindparam("last_id", type_=BigInteger()).label("id"),
        ),
    )
)


async def _claim_campaign(
    connection: AsyncConnection,
    campaign_id: str,
    start: tuple[datetime, int] | None,
    leased: bool,
    worker: str,
    now: datetime,
    limit: int,
    lease: timedelta,
) -> list[Claimed]:
    rows = await _due_rows(connection, campaign_id, now, limit, start, leased)
    from_head = len(rows) < limit and start is not None
    if from_head:
        rows = await _due_rows(
            connection, campaign_id, now, limit, None, leased
        )  # the head too (see `claim`)
    lease_id = None
    if rows:
        lease_id = (
            await connection.execute(
                _INSERT_LEASE,
                {
                    "campaign_id": campaign_id,
                    "owner": worker,
                    "expires_at": now + lease,
                    "sole": not leased,
                    "first": rows[0][0],
                    "last": rows[-1][0],
                },
            )
        ).scalar_one()
    if not rows and start is None:
        return []  # nothing to move (an idle poll writes nothing)
    if leased or from_head or not rows:
        # A sole batch read from the start leaves it: nothing due lies between the start and the
        # batch, and the batch's end moves the start past it (`end_leases`). One statement less.
        await connection.execute(_MOVE_START, {"campaign_id": campaign_id})
    if lease_id is None:
        return []
    return [
        Claimed(id_, campaign_id, contact_id, email, variant, attempts, lease_id)
        for (id_, contact_id, email, variant, attempts) in rows
    ]


async def _due_rows(
    connection: AsyncConnection,
    campaign_id: str,
    now: datetime,
    limit: int,
    start: tuple[datetime, int] | None,
    leased: bool,
) -> Sequence[Any]:
    """The campaign's first `limit` due rows that no live lease covers (`leased`: whether the
    campaign has one), from `start` (a key of the queue's order; None: the head)."""
    params = {"campaign_id": campaign_id, "now": now, "limit": limit}
    if start is not None:
        params["start_at"], params["start_id"] = start
    return (await connection.execute(_DUE_ROWS[(leased, start is not None)], params)).all()


# A due row inside the range of a live lease of its campaign (the claim deleted the expired ones).
_LEASED = exists().where(
    DeliveryLease.campaign_id == Delivery.campaign_id,
    tuple_(Delivery.next_attempt_at, Delivery.id).between(
        tuple_(DeliveryLease.first_at, DeliveryLease.first_id),
        tuple_(DeliveryLease.last_at, DeliveryLease.last_id),
    ),
)
_CLAIMED = (Delivery.id, Delivery.contact_id, Delivery.email, Delivery.variant, Delivery.attempts)


def _due_rows_statement(leased: bool, from_start: bool) -> Select[int, str | None, str, str, int]:
    where: list[ColumnElement[bool] | TextClause] = [
        Delivery.campaign_id == _CAMPAIGN_ID,
        text(DUE_CONDITION),
        Delivery.next_attempt_at <= _NOW,
    ]
    if leased:
        where.append(~_LEASED)
    if from_start:
        where.append(
            tuple_(Delivery.next_attempt_at, Delivery.id)
            >= tuple_(
                bindparam("start_at", type_=UTCDateTime()),
                bindparam("start_id", type_=BigInteger()),
            )
        )
    return (
        select(*_CLAIMED)
        .where(*where)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(bindparam("limit", type_=Integer()))
    )


_DUE_ROWS = {
    (leased, from_start): _due_rows_statement(leased, from_start)
    for leased in (False, True)
    for from_start in (False, True)
}


def _pending(status: Any) -> ColumnElement[bool]:
    """Queued or deferred, for rows looked up by id. Through coalesce (a status is never null) so
    that PostgreSQL reads them by primary key: the bare condition is the due index's predicate,
    and the planner may then scan that whole index for a handful of ids."""
    return func.coalesce(status, "").in_(PENDING)


async def prepare(
    session: AsyncSession, worker: str, chunk: Sequence[Claimed], now: datetime, lease: timedelta
) -> dict[int, Recipient]:
    """A chunk about to be rendered: renews its leases, and returns the rows of a lease this
    worker still holds that are still pending, each with its contact as it is now (a row
    cancelled meanwhile, or of a lease taken over, is not sent; a contact who unsubscribed after
    the claim is not written to). Nothing is marked: see `mark_on_wire`."""
    held = set(
        (
            await session.execute(
                update(DeliveryLease)
                .where(
                    DeliveryLease.id.in_({c.lease_id for c in chunk}), DeliveryLease.owner == worker
                )
                .values(expires_at=now + lease)
                .returning(DeliveryLease.id)
                .execution_options(synchronize_session=False)
            )
        ).scalars()
    )
    ids = [c.id for c in chunk if c.lease_id in held]
    if not ids:
        return {}
    pending = (
        await session.execute(
            select(Delivery.id, Delivery.contact_id).where(
                among(session, Delivery.id, ids), _pending(Delivery.status)
            )
        )
    ).all()
    # A deleted contact's delivery keeps its id (see the model): no row here, so unreachable.
    wanted = {contact_id for _, contact_id in pending if contact_id is not None}
    contacts = (
        {
            contact_id: Recipient(
                first_name, last_name, attributes, not unsubscribed and suppressed is None
            )
            for contact_id, first_name, last_name, attributes, unsubscribed, suppressed in (
                await session.execute(
                    select(
                        Contact.id,
                        Contact.first_name,
                        Contact.last_name,
                        Contact.attributes,
                        Contact.unsubscribed,
                        Contact.suppressed_reason,
                    ).where(among(session, Contact.id, wanted))
                )
            ).all()
        }
        if wanted
        else {}
    )
    return {id_: contacts.get(contact_id, UNREACHABLE) for id_, contact_id in pending}


# One statement, built once: a flush of the sender's writes marks a few rows at a time, many
# times a second. The ids as an expanding IN: only as many lists as relay connections.
_MARKS = table_of(DeliveryLease)
_MARK_ON_WIRE = (
    update(table_of(Delivery))
    .where(
        table_of(Delivery).c.id.in_(bindparam("ids", expanding=True)),
        _pending(table_of(Delivery).c.status),
        # the row lies in the range of a lease this worker holds (`claim` deletes leases that ran
        # out)
        exists().where(
            _MARKS.c.campaign_id == table_of(Delivery).c.campaign_id,
            _MARKS.c.owner == bindparam("worker"),
            tuple_(table_of(Delivery).c.next_attempt_at, table_of(Delivery).c.id).between(
                tuple_(_MARKS.c.first_at, _MARKS.c.first_id),
                tuple_(_MARKS.c.last_at, _MARKS.c.last_id),
            ),
        ),
    )
    .values(
        status=DeliveryStatus.SENDING,
        attempts=table_of(Delivery).c.attempts + 1,
        lease_owner=bindparam("worker"),
        lease_expires_at=bindparam("expires", type_=UTCDateTime()),
        updated_at=_NOW,
    )
    .returning(table_of(Delivery).c.id)
)


async def mark_on_wire(
    session: AsyncSession, worker: str, ids: Sequence[int], now: datetime, lease: timedelta
) -> set[int]:
    """`sending`: these rows' messages go on the wire now. Only pending rows of a lease this
    worker holds are marked, and the status guard lets one worker mark a row once; the ids
    marked come back."""
    if not ids:
        return set()
    connection = await session.connection()
    result = await connection.execute(
        _MARK_ON_WIRE, {"ids": list(ids), "worker": worker, "now": now, "expires": now + lease}
    )
    return set(result.scalars())


async def renew(
    session: AsyncSession, worker: str, lease_ids: Iterable[int], now: datetime, lease: timedelta
) -> None:
    """The heartbeat of a batch being sent: its leases live `lease` longer."""
    await session.execute(
        update(DeliveryLease)
        .where(DeliveryLease.id.in_(set(lease_ids)), DeliveryLease.owner == worker)
        .values(expires_at=now + lease)
        .execution_options(synchronize_session=False)
    )


async def created_at(session: AsyncSession, ids: Sequence[int]) -> dict[int, datetime]:
    """When each of these deliveries was queued."""
    if not ids:
        return {}
    rows = await session.execute(
        select(Delivery.id, Delivery.created_at).where(among(session, Delivery.id, ids))
    )
    return {id_: at for id_, at in rows}


async def end_leases(
    session: AsyncSession, worker: str, lease_ids: Iterable[int], attempted: bool = False
) -> None:
    """A batch is done (or will not be sent now): its rows not sent are claimable again at once.

    `attempted`: every row of these leases was marked `sending` and given its outcome (the sender's
    whole batch), so none is due under its old key any more. A lease whose claim found no other
    lease of its campaign alive (`sole`) then read every due row from the campaign's start to its
    last key, and the start moves to that last key (or to the first key of an older lease that
    lives): the next claim does not walk past this batch's rows, which stay in the due index as dead
    entries until VACUUM. Only a sole lease: another claim's range can span a lease it skipped,
    whose rows may come back unsent. The campaigns are locked first, in the order claims lock them,
    so no claim adds a lease in between."""
    ids = set(lease_ids)
    if attempted:
        await session.execute(_LOCK_SOLE_CAMPAIGNS, {"ids": list(ids), "worker": worker})
    ended = await session.execute(
        delete(_LEASES)
        .where(_LEASES.c.id.in_(ids), _LEASES.c.owner == worker)
        .returning(_LEASES.c.campaign_id, _LEASES.c.sole, _LEASES.c.last_at, _LEASES.c.last_id)
    )
    for campaign_id, sole, last_at, last_id in ended.all():
        if attempted and sole:
            await session.execute(
                _MOVE_START_PAST,
                {"campaign_id": campaign_id, "last_at": last_at, "last_id": last_id},
            )


# Locks the campaigns whose start a sole one of these leases may move, as claims lock them.
_LOCK_SOLE_CAMPAIGNS = (
    select(Campaign.id)
    .where(
        Campaign.id.in_(
            select(_LEASES.c.campaign_id).where(
                _LEASES.c.id.in_(bindparam("ids", expanding=True)),
                _LEASES.c.owner == bindparam("worker"),
                _LEASES.c.sole,
            )
        )
    )
    .order_by(Campaign.send_started_at, Campaign.id)
    .with_for_update(of=Campaign, key_share=True)
)


async def recover_expired(session: AsyncSession, now: datetime) -> int:
    """Rows a dead worker left `sending` (their lease ran out and no lease of that worker lives:
    it stopped renewing them): the message may or may not have reached the relay, so the row is
    due again at once and flagged `in_doubt` (sent at least once; maybe twice). A dead worker's
    claimed rows that it never marked simply become claimable when its lease runs out (the next
    claim of the campaign deletes it). Here only leases of campaigns no longer sending are
    cleared away: they have no claim to do it, and no claim contends for them."""
    await session.execute(
        delete(DeliveryLease)
        .where(
            DeliveryLease.expires_at <= now,
            DeliveryLease.campaign_id.not_in(
                select(Campaign.id).where(Campaign.status == CampaignStatus.SENDING)
            ),
        )
        .execution_options(synchronize_session=False)
    )
    alive = exists().where(
        DeliveryLease.owner == Delivery.lease_owner, DeliveryLease.expires_at > now
    )
    sending = select(Campaign.id).where(
        Campaign.status.in_((CampaignStatus.SENDING, CampaignStatus.PAUSED))
    )
    orphaned = [Delivery.status == DeliveryStatus.SENDING, Delivery.lease_expires_at < now, ~alive]
    again = await session.execute(
        update(Delivery)
        .where(*orphaned, Delivery.campaign_id.in_(sending))
        .values(
            status=DeliveryStatus.DEFERRED,
            next_attempt_at=now,
            in_doubt=True,
            lease_owner=None,
            lease_expires_at=None,
            smtp_response="the worker stopped while this message was on the wire; sent again",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    # A campaign cancelled meanwhile sends nothing more: such a row stays in doubt, as `unknown`
    # (its owner kept: should that worker answer after all, `record` takes the answer).
    stopped = await session.execute(
        update(Delivery)
        .where(*orphaned, Delivery.campaign_id.not_in(sending))
        .values(
            status=DeliveryStatus.UNKNOWN,
            in_doubt=True,
            smtp_response="the worker stopped while this message was on the wire",
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return changed(again) + changed(stopped)


async def campaigns_for(session: AsyncSession, ids: Sequence[str]) -> dict[str, Campaign]:
    rows = await session.execute(select(Campaign).where(Campaign.id.in_(list(ids))))
    return {c.id: c for c in rows.scalars()}


async def signing_domain(session: AsyncSession, account_id: str, name: str) -> Domain | None:
    stmt = select(Domain).where(Domain.account_id == account_id, Domain.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def postal_address(session: AsyncSession, account_id: str) -> str | None:
    return (
        await session.execute(select(Account.postal_address).where(Account.id == account_id))
    ).scalar_one_or_none()


async def audience_name(session: AsyncSession, audience_id: str) -> str | None:
    """None when the audience was deleted since (a campaign outlives it)."""
    return (
        await session.execute(select(Audience.name).where(Audience.id == audience_id))
    ).scalar_one_or_none()


async def finish_done_campaigns(
    session: AsyncSession, now: datetime, campaign_ids: Sequence[str] | None = None
) -> list[str]:
    """sending -> sent for campaigns with nothing left to send, their whole snapshot queued
    (guarded, so it happens once)."""
    # "held": an A/B holdback waiting for the winner; the campaign is sent only after it went out.
    unfinished = exists().where(
        Delivery.campaign_id == Campaign.id,
        Delivery.status.in_(
            (
                DeliveryStatus.QUEUED,
                DeliveryStatus.DEFERRED,
                DeliveryStatus.SENDING,
                DeliveryStatus.HELD,
            )
        ),
    )
    where = [
        Campaign.status == CampaignStatus.SENDING,
        Campaign.queue_filled.is_(True),
        ~unfinished,
    ]
    if campaign_ids is not None:
        where.append(Campaign.id.in_(list(campaign_ids)))
    stmt = (
        update(Campaign)
        .where(and_(*where))
        .values(status=CampaignStatus.SENT, sent_at=now, updated_at=now)
        .returning(Campaign.id)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(stmt)).scalars())


async def suppress_contacts(
    session: AsyncSession, contact_ids: Sequence[str], reason: str, now: datetime
) -> None:
    if contact_ids:
        await session.execute(
            update(Contact)
            .where(Contact.id.in_(list(contact_ids)), Contact.suppressed_reason.is_(None))
            .values(suppressed_reason=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )


async def due_scheduled(
    session: AsyncSession, now: datetime, limit: int = 50
) -> list[tuple[str, str]]:
    stmt = (
        select(Campaign.id, Campaign.account_id)
        .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.scheduled_at <= now)
        .order_by(Campaign.scheduled_at)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in await session.execute(stmt)]


async def count_by_status(session: AsyncSession, campaign_id: str) -> dict[str, int]:
    stmt = (
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    )
    return {status: n for status, n in await session.execute(stmt)}


async def save_relay_health(
    session: AsyncSession, health: Sequence[RelayHealth], now: datetime
) -> None:
    """Each relay as this worker sees it: down since the first worker found it down, or
    reachable."""
    insert = insert_for(session)
    for relay in health:
        stmt = insert(RelayStatus).values(
            relay=relay.relay, down_since=relay.down_since, error=relay.error, updated_at=now
        )
        changes: dict[str, Any]
        if relay.down_since is None:
            changes = {"down_since": None, "error": None, "updated_at": now}
        else:
            changes = {
                "down_since": func.coalesce(RelayStatus.down_since, stmt.excluded.down_since),
                "error": stmt.excluded.error,
                "updated_at": now,
            }
        await session.execute(stmt.on_conflict_do_update(index_elements=["relay"], set_=changes))
