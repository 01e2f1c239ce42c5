from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db.lists import among
from mailcast.db.models import Campaign, Contact, Delivery, Event
from mailcast.db.rows import changed
from mailcast.statuses import DeliveryStatus


async def delivery_with_campaign(
    session: AsyncSession, delivery_id: int
) -> tuple[Delivery, Campaign] | None:
    stmt = (
        select(Delivery, Campaign)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.id == delivery_id)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row else None


async def click_deliveries(
    session: AsyncSession, delivery_ids: list[int]
) -> list[tuple[int, str, str, str | None, str]]:
    """(id, campaign id, variant, contact id, address) of each delivery found: what a click
    needs."""
    stmt = select(
        Delivery.id, Delivery.campaign_id, Delivery.variant, Delivery.contact_id, Delivery.email
    ).where(among(session, Delivery.id, delivery_ids))
    return [(row[0], row[1], row[2], row[3], row[4]) for row in await session.execute(stmt)]


async def campaign(session: AsyncSession, campaign_id: str) -> Campaign | None:
    return await session.get(Campaign, campaign_id)


async def contact(session: AsyncSession, contact_id: str | None) -> Contact | None:
    return await session.get(Contact, contact_id) if contact_id else None


async def has_event(
    session: AsyncSession, delivery_id: int, kind: str, machine: bool | None = None
) -> bool:
    stmt = select(Event.id).where(Event.delivery_id == delivery_id, Event.type == kind)
    if machine is not None:
        stmt = stmt.where(Event.machine.is_(machine))
    return (await session.execute(stmt.limit(1))).first() is not None


async def count_open(session: AsyncSession, delivery_id: int) -> None:
    await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(open_count=Delivery.open_count + 1)
        .execution_options(synchronize_session=False)
    )


async def first_of_its_kind(
    session: AsyncSession, delivery_id: int, column: str, at: datetime
) -> bool:
    """Sets the delivery's `complained_at` / `unsubscribed_at` if still empty; whether it was,
    i.e. whether this is the delivery's first such event. The row's lock makes two at once
    count once (the campaign's figures follow the column)."""
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, getattr(Delivery, column).is_(None))
        .values({column: at})
        .execution_options(synchronize_session=False)
    )
    return changed(result) == 1


async def add_event(
    session: AsyncSession,
    delivery_id: int,
    kind: str,
    at: datetime,
    url: str | None = None,
    user_agent: str | None = None,
    machine: bool = False,
) -> None:
    await session.execute(
        insert(Event).values(
            delivery_id=delivery_id,
            type=kind,
            at=at,
            url=url,
            user_agent=(user_agent or "")[:1000] or None,
            machine=machine,
        )
    )


async def unsubscribe_contact(session: AsyncSession, contact_id: str, at: datetime) -> bool:
    result = await session.execute(
        update(Contact)
        .where(Contact.id == contact_id, Contact.unsubscribed.is_(False))
        .values(unsubscribed=True, unsubscribed_at=at, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    return changed(result) > 0


async def mark_bounced(
    session: AsyncSession, delivery_id: int, response: str, at: datetime
) -> None:
    """A bounce reported after the relay accepted the message: it counts as sent and bounced."""
    await session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status.in_((DeliveryStatus.SENT, DeliveryStatus.UNKNOWN)),
        )
        .values(status=DeliveryStatus.BOUNCED, smtp_response=response[:2000], updated_at=at)
        .execution_options(synchronize_session=False)
    )


async def suppress(session: AsyncSession, contact_id: str, reason: str, at: datetime) -> None:
    await session.execute(
        update(Contact)
        .where(Contact.id == contact_id, Contact.suppressed_reason.is_(None))
        .values(suppressed_reason=reason, updated_at=at)
        .execution_options(synchronize_session=False)
    )
