"""A campaign's figures, from the counts the database keeps with every change of a delivery
(CampaignCount: triggers add a row of differences per statement on PostgreSQL, update one row a
campaign on SQLite). Reading them is the same SQL on both; folding and recounting differ, so they
sit behind `CountStore`, chosen where the worker and the command line are assembled."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, case, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql import ColumnElement

from mailcast.db.functions import try_lock
from mailcast.db.lists import among, is_postgresql
from mailcast.db.models import Campaign, CampaignCount, Delivery, table_of
from mailcast.db.rows import changed
from mailcast.statuses import DeliveryStatus


@dataclass
class Stats:
    total: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    failed: int = 0
    unknown: int = 0
    machine_opened: int = 0


# A campaign's figures (total first), each the sum of its rows of counts: CampaignCount's columns.
_FIGURES = tuple(c.name for c in table_of(CampaignCount).c if c.name not in ("id", "campaign_id"))


async def stats(session: AsyncSession, campaign_ids: Sequence[str]) -> dict[str, Stats]:
    """A few rows a campaign, whatever its size and however many events it has."""
    result = {cid: Stats() for cid in campaign_ids}
    if not campaign_ids:
        return result
    sums = (
        select(CampaignCount.campaign_id, *[func.sum(getattr(CampaignCount, f)) for f in _FIGURES])
        .where(among(session, CampaignCount.campaign_id, list(campaign_ids)))
        .group_by(CampaignCount.campaign_id)
    )
    for campaign_id, *values in await session.execute(sums):
        s = result[campaign_id]
        for figure, value in zip(_FIGURES, values, strict=True):
            setattr(s, figure, int(value))  # PostgreSQL's sum of bigints is a numeric
        s.sent += s.bounced  # what reached the relay: bounced mail was sent too
    for s in result.values():
        s.delivered = s.sent - s.bounced
    return result


# Each figure's 0-or-1 for a delivery, as the triggers count it (migration 0008).
_FACTS: dict[str, ColumnElement[bool]] = {
    **{
        str(status): Delivery.status == status
        for status in (
            DeliveryStatus.SENT,
            DeliveryStatus.BOUNCED,
            DeliveryStatus.FAILED,
            DeliveryStatus.UNKNOWN,
        )
    },
    "opened": Delivery.opened_at.is_not(None),
    "clicked": Delivery.clicked_at.is_not(None),
    "complained": Delivery.complained_at.is_not(None),
    "unsubscribed": Delivery.unsubscribed_at.is_not(None),
    "machine_opened": and_(Delivery.machine_opened_at.is_not(None), Delivery.opened_at.is_(None)),
}
_RECOUNT = insert(CampaignCount).from_select(
    ["campaign_id", *_FIGURES],
    select(
        Delivery.campaign_id,
        func.count(),
        *[func.sum(case((_FACTS[f], 1), else_=0)) for f in _FIGURES[1:]],
    )
    .where(Delivery.campaign_id.in_(select(Campaign.id)))
    .group_by(Delivery.campaign_id),
)


class CountStore(ABC):
    @abstractmethod
    async def fold(self, session: AsyncSession) -> int:
        """Keeps reading a campaign's counts a matter of a row or a few: each worker calls it every
        second, in a transaction of its own. The number of campaigns folded."""

    async def recount(self, session: AsyncSession) -> int:
        """Every campaign's counts counted again from its deliveries (`mailcast recount`): the
        counts are a cache of what the deliveries say, and this re-derives them. The number of
        campaigns counted."""
        await session.execute(delete(CampaignCount))
        return changed(await session.execute(_RECOUNT))


class SqliteCountStore(CountStore):
    async def fold(self, session: AsyncSession) -> int:
        return 0  # one row a campaign already


# Each campaign's rows of counts, where it has more than one, replaced by their sum. Its campaigns
# are locked first (FOR KEY SHARE: nothing but deleting them waits): a campaign deleted meanwhile
# is skipped, and one being deleted is waited for, then skipped. Rows added while it runs are not
# in its snapshot and stay; two folds at once each sum only what they deleted.
_FOLD_COUNTS = text(
    "WITH locked AS (SELECT id FROM campaigns WHERE id IN "
    "(SELECT campaign_id FROM campaign_counts GROUP BY campaign_id HAVING count(*) > 1) FOR KEY "
    "SHARE), "
    "folded AS (DELETE FROM campaign_counts WHERE campaign_id IN (SELECT id FROM locked) "
    f"RETURNING campaign_id, {', '.join(_FIGURES)}) "
    f"INSERT INTO campaign_counts (campaign_id, {', '.join(_FIGURES)}) "
    f"SELECT campaign_id, {', '.join(f'sum({f})' for f in _FIGURES)} FROM folded GROUP BY "
    "campaign_id"
)
_FOLD_LOCK = 0x6D63_636F_756E_7473  # "mccounts"


class PostgresCountStore(CountStore):
    async def fold(self, session: AsyncSession) -> int:
        # One fold at a time (the others skip their turn): two would wait on each other's rows.
        if not await try_lock(session, _FOLD_LOCK):
            return 0
        return changed(await session.execute(_FOLD_COUNTS))

    async def recount(self, session: AsyncSession) -> int:
        # Writers of counts wait until the recount commits (readers go on): a statement that
        # changes deliveries meanwhile would add a row the recount then counts twice.
        await session.execute(text("LOCK TABLE campaign_counts IN EXCLUSIVE MODE"))
        return await super().recount(session)


def count_store(bind: AsyncEngine | AsyncSession) -> CountStore:
    if is_postgresql(bind):
        return PostgresCountStore()
    return SqliteCountStore()
