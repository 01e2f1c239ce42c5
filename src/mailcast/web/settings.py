"""The dashboard's sender domains, API keys (the owner's) and account: the same services as
`/v1/domains`, `/v1/api-keys` and `/v1/account`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from mailcast.accounts import service as accounts
from mailcast.accounts.schemas import AccountUpdate
from mailcast.accounts.users import SignedIn
from mailcast.api.deps import ClockDep, SessionDep, SettingsDep
from mailcast.domains import service as domains
from mailcast.errors import InsufficientScope, ValidationFailed
from mailcast.scopes import Scope
from mailcast.web import auth
from mailcast.web.auth import Signed
from mailcast.web.pages import page
from mailcast.web.routes import see

router = APIRouter(prefix="/dashboard/company/{account_id}", include_in_schema=False)


def _owner(signed: SignedIn) -> None:
    if not signed.manages_access:
        raise InsufficientScope(
            "Only the account's owners manage API keys and users", {"role": signed.user.role}
        )


@router.get("/domains", response_class=HTMLResponse)
async def domain_list(
    request: Request,
    account_id: str,
    signed: Signed,
    session: SessionDep,
    settings: SettingsDep,
    notice: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    auth.in_account(signed, account_id)
    found = await domains.list_domains(session, account_id, 100, None)
    return page(
        request,
        "settings/domains.html",
        signed,
        domains=[(d, domains.dns_records(d, settings)) for d in found],
        notice={"checked": "Looked the records up."}.get(notice or ""),
    )


@router.post("/domain/{domain_id}/verify")
async def verify(
    request: Request,
    account_id: str,
    domain_id: str,
    signed: Signed,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> Response:
    await auth.changing(request, signed)
    auth.in_account(signed, account_id)
    # The look-ups are a unit of work of their own (see verify_domain): the sign-in's transaction
    # ends first, so no connection is held while DNS answers (SQLite has one).
    await session.commit()
    await domains.verify_domain(
        request.app.state.sessions, request.app.state.dns, settings, account_id, domain_id, clock
    )
    return see(f"/dashboard/company/{account_id}/domains?notice=checked")


@router.get("/keys", response_class=HTMLResponse)
async def key_list(
    request: Request, account_id: str, signed: Signed, session: SessionDep
) -> Response:
    auth.in_account(signed, account_id)
    _owner(signed)
    keys = await accounts.list_api_keys(session, account_id, 100, None)
    return page(request, "settings/keys.html", signed, keys=keys, scopes=list(Scope), created=None)


@router.post("/keys", response_class=HTMLResponse)
async def create_key(
    request: Request, account_id: str, signed: Signed, session: SessionDep, clock: ClockDep
) -> Response:
    form = await auth.changing(request, signed)
    auth.in_account(signed, account_id)
    _owner(signed)
    name = str(form.get("name", "")).strip()
    if not name or len(name) > 200:
        raise ValidationFailed.on("name", "1 to 200 characters")
    try:
        scope = Scope(str(form.get("scope", "")))
    except ValueError:
        raise ValidationFailed.on(
            "scope", "unknown scope", "scope: read_only, sending_access or full_access"
        ) from None
    key, raw = await accounts.create_api_key(session, account_id, name, scope, clock())
    keys = await accounts.list_api_keys(session, account_id, 100, None)
    # The whole key is shown on this answer only, as the API shows it once.
    return page(
        request, "settings/keys.html", signed, keys=keys, scopes=list(Scope), created=(key, raw)
    )


@router.post("/key/{key_id}/revoke")
async def revoke_key(
    request: Request,
    account_id: str,
    key_id: str,
    signed: Signed,
    session: SessionDep,
    clock: ClockDep,
) -> Response:
    await auth.changing(request, signed)
    auth.in_account(signed, account_id)
    _owner(signed)
    await accounts.revoke_api_key(session, account_id, key_id, clock())
    return see(f"/dashboard/company/{account_id}/keys")


@router.get("/account", response_class=HTMLResponse)
async def account_page(
    request: Request,
    account_id: str,
    signed: Signed,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    notice: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    auth.in_account(signed, account_id)
    account = await accounts.get_account(session, account_id)
    period, quota, used = await accounts.quota_used(session, settings, account, clock())
    return page(
        request,
        "settings/account.html",
        signed,
        account=account,
        period=period,
        quota=quota,
        used=used,
        campaign_limit=settings.campaign_limit(account.plan),
        notice={"saved": "Saved."}.get(notice or ""),
    )


@router.post("/account")
async def save_account(
    request: Request, account_id: str, signed: Signed, session: SessionDep
) -> Response:
    form = await auth.changing(request, signed)
    auth.in_account(signed, account_id)
    _owner(signed)
    body = AccountUpdate.model_validate({"postal_address": str(form.get("postal_address", ""))})
    await accounts.update_account(session, account_id, {"postal_address": body.postal_address})
    return see(f"/dashboard/company/{account_id}/account?notice=saved")
