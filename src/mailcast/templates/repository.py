from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.api.pagination import paginate_query
from mailcast.db.models import Template


async def get(session: AsyncSession, account_id: str, template_id: str) -> Template | None:
    stmt = select(Template).where(Template.id == template_id, Template.account_id == account_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(session: AsyncSession, account_id: str, limit: int, cursor: str | None) -> list[Template]:
    stmt = select(Template).where(Template.account_id == account_id)
    return list((await session.execute(paginate_query(stmt, Template.id, limit, cursor))).scalars())


async def delete_one(session: AsyncSession, account_id: str, template_id: str) -> bool:
    stmt = delete(Template).where(Template.id == template_id, Template.account_id == account_id)
    return (await session.execute(stmt)).rowcount > 0
