"""The send queue: claiming with leases, marking, recording. All of its SQL lives here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db.models import DUE_CONDITION, PENDING, Campaign, Contact, Delivery, Domain


@dataclass
class Claimed:
    id: int
    campaign_id: str
    contact_id: str | None
    email: str
    variant: str
    attempts: int
    created_at: datetime
    first_name: str | None
    last_name: str | None
    metadata: dict[str, Any] | None
    reachable: bool  # the contact still exists, is subscribed and not suppressed


async def claim(session: AsyncSession, worker: str, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
    """Lease up to `limit` due deliveries of sending campaigns, the campaign that started first
    first, each campaign's rows by due time. Every campaign is read through the partial index of
    due rows (`ix_deliveries_due`), so a claim costs the same with a million sent rows behind it.
    On PostgreSQL concurrent workers skip each other's rows (FOR UPDATE SKIP LOCKED); SQLite runs
    one worker at a time."""
    sending = (await session.execute(
        select(Campaign.id).where(Campaign.status == "sending").order_by(Campaign.send_started_at, Campaign.id)
    )).scalars().all()
    rows: list = []
    postgresql = session.bind.dialect.name == "postgresql"
    for campaign_id in sending:
        due = (
            select(Delivery.id)
            .where(
                Delivery.campaign_id == campaign_id,
                text(DUE_CONDITION),
                Delivery.next_attempt_at <= now,
                or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now),
            )
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit - len(rows))
            .with_for_update(skip_locked=True)
        )
        lease_them = (
            update(Delivery).where(Delivery.id.in_(due.scalar_subquery()))
            .values(lease_owner=worker, lease_expires_at=now + lease)
            .execution_options(synchronize_session=False)
        )
        if postgresql:  # one statement: the rows come back with their contacts
            leased = lease_them.returning(*_CLAIMED_DELIVERY).cte("leased")
            rows += (await session.execute(
                select(leased, *_CLAIMED_CONTACT).outerjoin(Contact, Contact.id == leased.c.contact_id)
            )).all()
        else:  # SQLite has no UPDATE in a WITH
            ids = list((await session.execute(lease_them.returning(Delivery.id))).scalars())
            if ids:
                rows += (await session.execute(
                    select(*_CLAIMED_DELIVERY, *_CLAIMED_CONTACT)
                    .outerjoin(Contact, Contact.id == Delivery.contact_id).where(Delivery.id.in_(ids))
                )).all()
        if len(rows) >= limit:
            break
    rows.sort(key=lambda r: r[0])
    return [
        Claimed(id=r[0], campaign_id=r[1], contact_id=r[2], email=r[3], variant=r[4], attempts=r[5],
                created_at=r[6], first_name=r[7], last_name=r[8], metadata=r[9],
                reachable=r[12] is not None and not r[10] and r[11] is None)
        for r in rows
    ]


_CLAIMED_DELIVERY = (Delivery.id, Delivery.campaign_id, Delivery.contact_id, Delivery.email, Delivery.variant,
                     Delivery.attempts, Delivery.created_at)
# Contact.id last: NULL when the contact was deleted (its delivery keeps the id; see the model).
_CLAIMED_CONTACT = (Contact.first_name, Contact.last_name, Contact.attributes, Contact.unsubscribed,
                    Contact.suppressed_reason, Contact.id)


async def mark_sending(session: AsyncSession, worker: str, ids: Sequence[int], now: datetime,
                       lease: timedelta) -> set[int]:
    """Just before handing them to a relay. Only rows still leased to this worker and still
    pending come back: a row cancelled or re-leased meanwhile is not sent."""
    stmt = (
        update(Delivery)
        .where(Delivery.id.in_(list(ids)), Delivery.lease_owner == worker, Delivery.status.in_(PENDING))
        .values(status="sending", attempts=Delivery.attempts + 1, lease_expires_at=now + lease, updated_at=now)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    return set((await session.execute(stmt)).scalars())


async def record(session: AsyncSession, worker: str, results: list[dict[str, Any]]) -> None:
    """Each dict: id, status, and the columns to set. Guarded by the lease owner; a row that the
    recovery already called unknown still takes the real answer. One executemany per set of
    columns (a statement per message was a third of a worker's time)."""
    table = Delivery.__table__
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in results:
        groups.setdefault(tuple(sorted(k for k in values if k != "id")), []).append(values)
    for columns, rows in groups.items():
        stmt = (
            update(table)
            .where(table.c.id == bindparam("row_id"), table.c.lease_owner == worker,
                   # not IN (...): an expanding parameter cannot go into an executemany
                   or_(table.c.status == "sending", table.c.status == "unknown"))
            .values({"lease_owner": None, "lease_expires_at": None,
                     **{c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns}})
        )
        await session.execute(stmt, [{"row_id": r["id"], **{f"v_{c}": r[c] for c in columns}} for r in rows])


async def release(session: AsyncSession, worker: str, ids: Sequence[int]) -> None:
    """Give back leased rows this worker will not send now (paused, cancelled or shutting down)."""
    if ids:
        await session.execute(
            update(Delivery).where(Delivery.id.in_(list(ids)), Delivery.lease_owner == worker,
                                   Delivery.status.in_(PENDING))
            .values(lease_owner=None, lease_expires_at=None).execution_options(synchronize_session=False)
        )


async def recover_expired(session: AsyncSession, now: datetime) -> int:
    """Rows a dead worker left in `sending`: they may have reached the relay, so they become
    `unknown` (counted, never re-sent). Leased but unsent rows simply become claimable again."""
    result = await session.execute(
        update(Delivery).where(Delivery.status == "sending", Delivery.lease_expires_at < now)
        .values(status="unknown", smtp_response="the worker stopped while sending; not re-sent", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def campaigns_for(session: AsyncSession, ids: Sequence[str]) -> dict[str, Campaign]:
    rows = await session.execute(select(Campaign).where(Campaign.id.in_(list(ids))))
    return {c.id: c for c in rows.scalars()}


async def signing_domain(session: AsyncSession, account_id: str, name: str) -> Domain | None:
    stmt = select(Domain).where(Domain.account_id == account_id, Domain.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def finish_done_campaigns(session: AsyncSession, now: datetime, campaign_ids: Sequence[str] | None = None
                                ) -> list[str]:
    """sending -> sent for campaigns with nothing left to send (guarded, so it happens once)."""
    # "held": an A/B holdback waiting for the winner; the campaign is sent only after it went out.
    unfinished = exists().where(
        Delivery.campaign_id == Campaign.id, Delivery.status.in_(("queued", "deferred", "sending", "held"))
    )
    where = [Campaign.status == "sending", ~unfinished]
    if campaign_ids is not None:
        where.append(Campaign.id.in_(list(campaign_ids)))
    stmt = (update(Campaign).where(and_(*where)).values(status="sent", sent_at=now, updated_at=now)
            .returning(Campaign.id).execution_options(synchronize_session=False))
    return list((await session.execute(stmt)).scalars())


async def suppress_contacts(session: AsyncSession, contact_ids: Sequence[str], reason: str, now: datetime) -> None:
    if contact_ids:
        await session.execute(
            update(Contact).where(Contact.id.in_(list(contact_ids)), Contact.suppressed_reason.is_(None))
            .values(suppressed_reason=reason, updated_at=now).execution_options(synchronize_session=False)
        )


async def due_scheduled(session: AsyncSession, now: datetime, limit: int = 50) -> list[tuple[str, str]]:
    stmt = (select(Campaign.id, Campaign.account_id)
            .where(Campaign.status == "scheduled", Campaign.scheduled_at <= now)
            .order_by(Campaign.scheduled_at).limit(limit))
    return [(r[0], r[1]) for r in await session.execute(stmt)]


async def count_by_status(session: AsyncSession, campaign_id: str) -> dict[str, int]:
    stmt = select(Delivery.status, func.count()).where(Delivery.campaign_id == campaign_id).group_by(Delivery.status)
    return {status: n for status, n in await session.execute(stmt)}
