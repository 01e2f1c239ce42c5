from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep, SettingsDep
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES
from mailcast.api.schemas import Deleted
from mailcast.config import Settings
from mailcast.db.models import Domain
from mailcast.domains import service
from mailcast.domains.schemas import DomainCreate, DomainOut, DomainVerifyOut

router = APIRouter(prefix="/v1/domains", tags=["Domains"], responses=ERROR_RESPONSES)


def _out(domain: Domain, settings: Settings) -> dict[str, Any]:
    return dict(
        id=domain.id,
        name=domain.name,
        status=domain.status,
        spf_verified=domain.spf_verified,
        dkim_verified=domain.dkim_verified,
        dkim_algorithm=domain.dkim_algorithm,
        dmarc_verified=domain.dmarc_verified,
        dns_records=service.dns_records(domain, settings),
        verified_at=domain.verified_at,
        last_checked_at=domain.last_checked_at,
        created_at=domain.created_at,
    )


@router.post("", status_code=201, response_model=DomainOut)
async def create_domain(
    body: DomainCreate,
    principal: FullKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> DomainOut:
    """Add a sender domain. Publish the returned DNS records (SPF, DKIM with a key generated for
    this domain, DMARC), then call verify."""
    domain = await service.create_domain(
        session,
        principal.account_id,
        body.name,
        clock(),
        settings,
        dkim_algorithm=body.dkim_algorithm,
    )
    return DomainOut(**_out(domain, settings))


@router.get("", response_model=Page[DomainOut])
async def list_domains(
    principal: ReadKey, session: SessionDep, page: PageDep, settings: SettingsDep
) -> Page[DomainOut]:
    rows = await service.list_domains(session, principal.account_id, page.limit, page.cursor)
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[DomainOut](
        data=[DomainOut(**_out(d, settings)) for d in items], has_more=has_more, next_cursor=cursor
    )


@router.get("/{domain_id}", response_model=DomainOut)
async def get_domain(
    domain_id: str, principal: ReadKey, session: SessionDep, settings: SettingsDep
) -> DomainOut:
    return DomainOut(
        **_out(await service.get_domain(session, principal.account_id, domain_id), settings)
    )


@router.post("/{domain_id}/verify", response_model=DomainVerifyOut)
async def verify_domain(
    domain_id: str, principal: FullKey, clock: ClockDep, settings: SettingsDep, request: Request
) -> DomainVerifyOut:
    """Look the records up in DNS now. Verified when SPF and DKIM match; DMARC is reported."""
    domain, problems = await service.verify_domain(
        request.app.state.sessions,
        request.app.state.dns,
        settings,
        principal.account_id,
        domain_id,
        clock,
    )
    return DomainVerifyOut(**_out(domain, settings), problems=problems)


@router.delete("/{domain_id}", response_model=Deleted)
async def delete_domain(domain_id: str, principal: FullKey, session: SessionDep) -> Deleted:
    await service.delete_domain(session, principal.account_id, domain_id)
    return Deleted(id=domain_id, object="domain")
