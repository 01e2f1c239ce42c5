"""Saved templates: subject, HTML and text with Liquid merge tags."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.db import usage
from mailcast.db.models import Template
from mailcast.errors import Conflict, NotFound, ValidationFailed
from mailcast.ids import new_id
from mailcast.templates import repository as repo
from mailcast.templates.schemas import TemplateCreate, TemplateUpdate
from mailcast.templates.syntax import check_fields


async def create_template(
    session: AsyncSession, account_id: str, body: TemplateCreate, now: datetime
) -> Template:
    if not (body.html or body.text):
        raise ValidationFailed.on("html", "html or text required", "A template needs html or text")
    check_fields(subject=body.subject, html=body.html, text=body.text)
    template = Template(
        id=new_id("tmpl"),
        account_id=account_id,
        name=body.name,
        subject=body.subject,
        html=body.html,
        text=body.text,
        engine="liquid",
        variables=body.variables,
        created_at=now,
        updated_at=now,
    )
    session.add(template)
    await session.flush()
    return template


async def get_template(session: AsyncSession, account_id: str, template_id: str) -> Template:
    template = await repo.get(session, account_id, template_id)
    if template is None:
        raise NotFound("No such template")
    return template


async def list_templates(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[Template]:
    return await repo.list_page(session, account_id, limit, cursor)


async def update_template(
    session: AsyncSession, account_id: str, template_id: str, body: TemplateUpdate, now: datetime
) -> Template:
    template = await get_template(session, account_id, template_id)
    fields = body.model_fields_set - {"engine"}
    if "name" in fields and body.name is None:
        raise ValidationFailed.on("name", "cannot be null")
    for field in fields:
        setattr(template, field, getattr(body, field))
    if not (template.html or template.text):
        raise ValidationFailed.on("html", "html or text required", "A template needs html or text")
    check_fields(subject=template.subject, html=template.html, text=template.text)
    template.updated_at = now
    await session.flush()
    return template


async def delete_template(session: AsyncSession, account_id: str, template_id: str) -> None:
    await get_template(session, account_id, template_id)
    users = await usage.campaigns_using_template(session, account_id, template_id)
    if users:
        raise Conflict(
            "Campaigns that have not finished still use this template", {"campaign_ids": users}
        )
    await repo.delete_one(session, account_id, template_id)
