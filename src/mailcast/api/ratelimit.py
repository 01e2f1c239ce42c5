"""Rate limits (the `limits` library): per API key, per account by plan, per client address for
failed key attempts and for unauthenticated posts. Over a limit the answer is 429 in the error
shape, with `Retry-After` and the `RateLimit-*` headers."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from limits import RateLimitItem, parse_many
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from mailcast.config import PLANS, Settings
from mailcast.errors import MailcastError

_PLAN_KEPT_SECONDS = 60.0  # a plan change reaches the account's limit within this time


class RateLimited(MailcastError):
    status = 429
    code = "rate_limited"
    message = "Too many requests; try again later"

    def __init__(self, what: str, item: RateLimitItem, reset_at: float) -> None:
        wait = max(1, math.ceil(reset_at - time.time()))
        super().__init__(
            f"Too many requests for this {what} (limit {item}); try again in {wait} s",
            {"limit": str(item), "retry_after": wait},
        )
        self.headers = {
            "Retry-After": str(wait),
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(wait),
            "RateLimit-Policy": f"{item.amount};w={item.get_expiry()}",
        }


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        storage = settings.rate_limit_storage
        self.limiter = FixedWindowRateLimiter(
            storage_from_string(storage if storage.startswith("async+") else f"async+{storage}")
        )
        self.key = parse_many(settings.rate_limit_key)
        self.account = {
            plan: parse_many(getattr(settings, f"rate_limit_account_{plan}")) for plan in PLANS
        }
        self.failed_keys = parse_many(settings.rate_limit_failed_keys)
        self.posts = {
            "sign-in": parse_many(settings.rate_limit_sign_in),
            "unsubscribe": parse_many(settings.rate_limit_unsubscribe),
        }
        self._plans: dict[str, tuple[str, float]] = {}

    async def _hit(self, items: list[RateLimitItem], what: str, *identifiers: str) -> None:
        for item in items:
            if not await self.limiter.hit(item, what, *identifiers):
                stats = await self.limiter.get_window_stats(item, what, *identifiers)
                raise RateLimited(what, item, stats.reset_time)

    async def caller(
        self, key_id: str, account_id: str, plan: Callable[[], Awaitable[str]]
    ) -> None:
        """One request of an authenticated caller: its key's limit, then its account's."""
        await self._hit(self.key, "API key", key_id)
        known = self._plans.get(account_id)
        if known is None or known[1] < time.monotonic():
            known = (await plan(), time.monotonic() + _PLAN_KEPT_SECONDS)
            self._plans[account_id] = known
        await self._hit(self.account.get(known[0], self.account["free"]), "account", account_id)

    async def refuse_failed_keys(self, address: str) -> None:
        """Before a key is looked up: an address past its failed attempts is refused outright."""
        for item in self.failed_keys:
            if not await self.limiter.test(item, "address", address):
                stats = await self.limiter.get_window_stats(item, "address", address)
                raise RateLimited("address", item, stats.reset_time)

    async def failed_key(self, address: str) -> None:
        for item in self.failed_keys:
            await self.limiter.hit(item, "address", address)

    async def unauthenticated(self, what: str, address: str) -> None:
        """An unauthenticated post (`what`: sign-in or unsubscribe) from a client address."""
        await self._hit(self.posts[what], "address", f"{what}:{address}")
