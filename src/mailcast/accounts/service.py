"""Accounts, plans and quotas, API keys and their scopes."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.accounts import repository as repo
from mailcast.config import PLANS, Settings
from mailcast.db.models import Account, ApiKey
from mailcast.errors import (
    NotFound,
    PlanLimitReached,
    QuotaExceeded,
    Unauthorized,
    ValidationFailed,
)
from mailcast.ids import new_id
from mailcast.scopes import Principal, Scope

KEY_PREFIX = "mc_live_"
_KEY_RE = re.compile(r"^mc_live_[A-Za-z0-9_-]{43}$")
# last_used_at is a hint, not an audit log: write it at most once a minute per key.
_TOUCH_EVERY = timedelta(seconds=60)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_account(
    session: AsyncSession, name: str, plan: str, now: datetime, postal_address: str | None = None
) -> tuple[Account, ApiKey, str]:
    if plan not in PLANS:
        raise ValidationFailed.on("plan", "unknown plan", f"plan must be one of {', '.join(PLANS)}")
    account = Account(
        id=new_id("acc"),
        name=name,
        plan=plan,
        postal_address=postal_address or None,
        created_at=now,
    )
    session.add(account)
    await session.flush()
    key, raw = await create_api_key(session, account.id, "Default key", Scope.FULL_ACCESS, now)
    return account, key, raw


async def plan_of(session: AsyncSession, account_id: str) -> str:
    """The account's plan ("free" for an account deleted meanwhile: the tightest limits)."""
    account = await repo.get_account(session, account_id)
    return account.plan if account is not None else "free"


async def get_account(session: AsyncSession, account_id: str) -> Account:
    account = await repo.get_account(session, account_id)
    if account is None:
        raise NotFound("No such account")
    return account


async def update_account(
    session: AsyncSession, account_id: str, changes: dict[str, Any]
) -> Account:
    """`changes`: name and/or postal_address (None or "" removes the address)."""
    account = await get_account(session, account_id)
    if "name" in changes:
        if not changes["name"]:
            raise ValidationFailed.on("name", "cannot be null")
        account.name = changes["name"]
    if "postal_address" in changes:
        account.postal_address = changes["postal_address"] or None
    await session.flush()
    return account


async def quota_used(
    session: AsyncSession, settings: Settings, account: Account, at: datetime
) -> tuple[str, int, int]:
    """(period, quota, used) of the month of `at`."""
    period = period_of(at)
    return (
        period,
        settings.monthly_quota(account.plan),
        await repo.usage(session, account.id, period),
    )


async def create_api_key(
    session: AsyncSession, account_id: str, name: str, scope: Scope, now: datetime
) -> tuple[ApiKey, str]:
    """Returns the stored key and the full secret, which is never stored and never shown again."""
    if await repo.get_account(session, account_id) is None:
        raise NotFound("No such account")
    raw = _new_raw_key()
    key = ApiKey(
        id=new_id("ak"),
        account_id=account_id,
        name=name,
        scope=scope.value,
        prefix=raw[: len(KEY_PREFIX) + 4],
        key_hash=hash_key(raw),
        created_at=now,
    )
    session.add(key)
    await session.flush()
    return key, raw


async def authenticate(session: AsyncSession, authorization: str, now: datetime) -> Principal:
    """Missing, malformed, unknown and revoked keys all fail the same way."""
    scheme, _, raw = authorization.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not _KEY_RE.match(raw):
        raise Unauthorized()
    key = await repo.key_by_hash(session, hash_key(raw))
    if key is None or key.revoked_at is not None:
        raise Unauthorized()
    if key.last_used_at is None or now - key.last_used_at >= _TOUCH_EVERY:
        await repo.touch_key(session, key.id, now)
    return Principal(account_id=key.account_id, key_id=key.id, scope=Scope(key.scope))


async def list_api_keys(
    session: AsyncSession, account_id: str, limit: int, cursor: str | None
) -> list[ApiKey]:
    return await repo.list_keys(session, account_id, limit, cursor)


async def revoke_api_key(
    session: AsyncSession, account_id: str, key_id: str, now: datetime
) -> None:
    key = await repo.get_key(session, account_id, key_id)
    if key is None:
        raise NotFound("No such API key")
    key.revoked_at = now
    await session.flush()


async def lock_account(session: AsyncSession, account_id: str) -> Account:
    """Serialises plan-limit and quota decisions of one account across concurrent requests."""
    account = await repo.lock_account(session, account_id)
    if account is None:
        raise NotFound("No such account")
    return account


def check_campaign_limit(settings: Settings, account: Account, existing: int) -> None:
    limit = settings.campaign_limit(account.plan)
    if limit is not None and existing >= limit:
        raise PlanLimitReached(
            f"The {account.plan} plan allows {limit} campaigns; delete one or upgrade the plan",
            {"plan": account.plan, "limit": limit, "current": existing},
        )


def period_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


async def check_quota(
    session: AsyncSession, settings: Settings, account: Account, needed: int, at: datetime
) -> None:
    """Refuse when `needed` marketing emails do not fit in what is left of the month of `at`."""
    quota = settings.monthly_quota(account.plan)
    period = period_of(at)
    used = await repo.usage(session, account.id, period)
    if used + needed > quota:
        raise QuotaExceeded(
            f"Sending {needed} emails would exceed the {account.plan} plan's monthly quota "
            f"({used} of {quota} used in {period})",
            {
                "quota": quota,
                "used": used,
                "needed": needed,
                "period": period,
                "plan": account.plan,
            },
        )


async def consume_quota(
    session: AsyncSession, settings: Settings, account: Account, emails: int, at: datetime
) -> None:
    await check_quota(session, settings, account, emails, at)
    if emails:
        await repo.add_usage(session, account.id, period_of(at), emails)


async def release_quota(session: AsyncSession, account_id: str, emails: int, at: datetime) -> None:
    """Give back what was counted but will never be sent (a cancelled remainder)."""
    if emails:
        await repo.add_usage(session, account_id, period_of(at), -emails)
