from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.accounts import service
from mailcast.accounts.schemas import (
    AccountOut,
    AccountUpdate,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    QuotaOut,
)
from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep, SettingsDep
from mailcast.api.pagination import Page, page_of
from mailcast.api.routing import ERROR_RESPONSES, put_and_patch
from mailcast.api.schemas import Deleted
from mailcast.config import Settings
from mailcast.db.models import Account
from mailcast.scopes import Scope

router = APIRouter(prefix="/v1/api-keys", tags=["API keys"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, principal: FullKey, session: SessionDep, clock: ClockDep
) -> ApiKeyCreated:
    """Create an API key. The full key is in this response only; store it now."""
    key, raw = await service.create_api_key(
        session, principal.account_id, body.name, body.scope, clock()
    )
    return ApiKeyCreated(
        id=key.id,
        name=key.name,
        scope=Scope(key.scope),
        key=raw,
        key_prefix=key.prefix,
        created_at=key.created_at,
    )


@router.get("", response_model=Page[ApiKeyOut])
async def list_api_keys(principal: ReadKey, session: SessionDep, page: PageDep) -> Page[ApiKeyOut]:
    """List the account's active keys (prefixes only, never the secret)."""
    rows = await service.list_api_keys(session, principal.account_id, page.limit, page.cursor)
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[ApiKeyOut](
        data=[ApiKeyOut.of(k) for k in items], has_more=has_more, next_cursor=cursor
    )


@router.delete("/{key_id}", response_model=Deleted)
async def revoke_api_key(
    key_id: str, principal: FullKey, session: SessionDep, clock: ClockDep
) -> Deleted:
    """Revoke a key; requests with it get 401 from now on."""
    await service.revoke_api_key(session, principal.account_id, key_id, clock())
    return Deleted(id=key_id, object="api_key")


account_router = APIRouter(prefix="/v1/account", tags=["Account"], responses=ERROR_RESPONSES)


async def _account_out(
    session: AsyncSession, settings: Settings, account: Account, now: datetime
) -> AccountOut:
    period, quota, used = await service.quota_used(session, settings, account, now)
    return AccountOut(
        id=account.id,
        name=account.name,
        plan=account.plan,
        postal_address=account.postal_address,
        campaign_limit=settings.campaign_limit(account.plan),
        quota=QuotaOut(period=period, limit=quota, used=used, remaining=max(0, quota - used)),
        created_at=account.created_at,
    )


@account_router.get("", response_model=AccountOut)
async def get_account(
    principal: ReadKey, session: SessionDep, clock: ClockDep, settings: SettingsDep
) -> AccountOut:
    """The key's account: plan, limits, this month's quota, postal address."""
    account = await service.get_account(session, principal.account_id)
    return await _account_out(session, settings, account, clock())


async def update_account(
    body: AccountUpdate,
    principal: FullKey,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> AccountOut:
    """Change the account's name or postal address (fields left out are kept)."""
    account = await service.update_account(
        session, principal.account_id, {f: getattr(body, f) for f in body.model_fields_set}
    )
    return await _account_out(session, settings, account, clock())


put_and_patch(account_router, "", update_account, response_model=AccountOut)
