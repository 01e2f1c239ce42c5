from __future__ import annotations

from fastapi import APIRouter

from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES, put_and_patch
from mailcast.api.schemas import Deleted
from mailcast.templates import service
from mailcast.templates.schemas import TemplateCreate, TemplateOut, TemplateUpdate

router = APIRouter(prefix="/v1/templates", tags=["Templates"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=TemplateOut)
async def create_template(
    body: TemplateCreate, principal: FullKey, session: SessionDep, clock: ClockDep
) -> TemplateOut:
    """Save a template. Merge tags are Liquid (`{{ first_name | default: "there" }}`); a syntax
    error is a 422 naming the field."""
    return TemplateOut.model_validate(
        await service.create_template(session, principal.account_id, body, clock())
    )


@router.get("", response_model=Page[TemplateOut])
async def list_templates(
    principal: ReadKey, session: SessionDep, page: PageDep
) -> Page[TemplateOut]:
    rows = await service.list_templates(session, principal.account_id, page.limit, page.cursor)
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[TemplateOut](
        data=[TemplateOut.model_validate(t) for t in items], has_more=has_more, next_cursor=cursor
    )


@router.get("/{template_id}", response_model=TemplateOut)
async def get_template(template_id: str, principal: ReadKey, session: SessionDep) -> TemplateOut:
    return TemplateOut.model_validate(
        await service.get_template(session, principal.account_id, template_id)
    )


async def update_template(
    template_id: str, body: TemplateUpdate, principal: FullKey, session: SessionDep, clock: ClockDep
) -> TemplateOut:
    """Update the given fields of a template (validated again as a whole)."""
    template = await service.update_template(
        session, principal.account_id, template_id, body, clock()
    )
    return TemplateOut.model_validate(template)


put_and_patch(router, "/{template_id}", update_template, response_model=TemplateOut)


@router.delete("/{template_id}", response_model=Deleted)
async def delete_template(template_id: str, principal: FullKey, session: SessionDep) -> Deleted:
    """Delete a template. 409 while an unfinished campaign uses it."""
    await service.delete_template(session, principal.account_id, template_id)
    return Deleted(id=template_id, object="template")
