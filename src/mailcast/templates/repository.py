from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db import owned
from mailcast.db.models import Template


async def get(session: AsyncSession, account_id: str, template_id: str) -> Template | None:
    return await owned.get(session, Template, account_id, template_id)


async def list_page(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[Template]:
    return await owned.page(session, Template, account_id, limit, cursor)


async def delete_one(session: AsyncSession, account_id: str, template_id: str) -> bool:
    return await owned.delete_one(session, Template, account_id, template_id)
