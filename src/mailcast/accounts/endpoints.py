from __future__ import annotations

from fastapi import APIRouter

from mailcast.accounts import service
from mailcast.accounts.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from mailcast.api.deps import ClockDep, FullKey, PageDep, ReadKey, SessionDep
from mailcast.api.routing import ERROR_RESPONSES
from mailcast.api.pagination import Page, page_of
from mailcast.api.schemas import Deleted

router = APIRouter(prefix="/v1/api-keys", tags=["API keys"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, principal: FullKey, session: SessionDep, clock: ClockDep):
    """Create an API key. The full key is in this response only; store it now."""
    key, raw = await service.create_api_key(session, principal.account_id, body.name, body.scope, clock())
    return ApiKeyCreated(id=key.id, name=key.name, scope=key.scope, key=raw, key_prefix=key.prefix,
                         created_at=key.created_at)


@router.get("", response_model=Page[ApiKeyOut])
async def list_api_keys(principal: ReadKey, session: SessionDep, page: PageDep):
    """List the account's active keys (prefixes only, never the secret)."""
    rows = await service.list_api_keys(session, principal.account_id, page.limit, page.cursor)
    items, has_more, cursor = page_of(rows, page.limit)
    return Page[ApiKeyOut](data=[ApiKeyOut.of(k) for k in items], has_more=has_more, next_cursor=cursor)


@router.delete("/{key_id}", response_model=Deleted)
async def revoke_api_key(key_id: str, principal: FullKey, session: SessionDep, clock: ClockDep):
    """Revoke a key; requests with it get 401 from now on."""
    await service.revoke_api_key(session, principal.account_id, key_id, clock())
    return Deleted(id=key_id, object="api_key")
