"""Which unfinished campaigns use an audience or a template: what refuses deleting one. Below the
campaign, audience and template packages, which all need it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db.models import Campaign
from mailcast.statuses import UNFINISHED


async def _unfinished_using(
    session: AsyncSession, account_id: str, column: Any, value: str
) -> list[str]:
    stmt = select(Campaign.id).where(
        Campaign.account_id == account_id, column == value, Campaign.status.in_(sorted(UNFINISHED))
    )
    return list((await session.execute(stmt)).scalars())


async def campaigns_using_audience(
    session: AsyncSession, account_id: str, audience_id: str
) -> list[str]:
    return await _unfinished_using(session, account_id, Campaign.audience_id, audience_id)


async def campaigns_using_template(
    session: AsyncSession, account_id: str, template_id: str
) -> list[str]:
    return await _unfinished_using(session, account_id, Campaign.template_id, template_id)
