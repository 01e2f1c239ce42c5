"""Opens, clicks, unsubscribes, bounces and complaints, as recorded from the public endpoints,
the bounce listener and relay webhooks."""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailcast import variants
from mailcast.db.models import Delivery
from mailcast.delivery.render import TEXT_ENV, recipient_context
from mailcast.delivery.tokens import Claim, InvalidToken, Purpose, TokenCodec
from mailcast.errors import NotFound
from mailcast.templates.links import tracked_links
from mailcast.tracking import repository as repo
from mailcast.tracking.classify import Hit

# Mail privacy proxies and link scanners fetch pixels and links without a person reading.
_MACHINE_AGENTS = re.compile(
    r"googleimageproxy|yahoomailproxy|ymailproxy|proofpoint|mimecast|barracuda|symantec|messagelabs|"
    r"forcepoint|trendmicro|sophos|fireeye|ironport|safelinks|bot\b|crawler|spider|scanner|preview|"
    r"python-requests|python-httpx|curl/|wget/|go-http-client|java/|okhttp|headless",
    re.IGNORECASE,
)


def is_machine(
    user_agent: str | None, sent_at: datetime | None, now: datetime, window_seconds: int
) -> bool:
    if _machine_agent((user_agent or "").strip()):
        return True
    return sent_at is not None and (now - sent_at).total_seconds() < window_seconds


@lru_cache(maxsize=4096)
def _machine_agent(agent: str) -> bool:
    """Remembered: readers' mail clients send a few hundred distinct user agents, and the
    pattern's search runs over the whole string."""
    # Apple Mail Privacy Protection fetches with a bare "Mozilla/5.0".
    return not agent or agent == "Mozilla/5.0" or _MACHINE_AGENTS.search(agent) is not None


def _claim(codec: TokenCodec, token: str, purpose: Purpose) -> Claim:
    try:
        return codec.decode(token, purpose)
    except InvalidToken:
        raise NotFound("This link is not valid") from None


def open_hit(codec: TokenCodec, token: str, user_agent: str | None, now: datetime) -> Hit | None:
    """The pixel load a token stands for; None for a token that is not an open token of ours."""
    try:
        claim = codec.decode(token, Purpose.OPEN)
    except InvalidToken:
        return None
    return Hit("open", claim.delivery_id, now, user_agent)


@dataclass(frozen=True)
class _CampaignLinks:
    links: list[str]
    unsubscribe_url: str


@dataclass(frozen=True)
class _ClickTarget:
    links: list[str]
    contact_id: str | None
    email: str
    unsubscribe_url: str


class ClickResolver:
    """The stored target of a tracked link (never a URL from the request). What a delivery's links
    are never changes once it was sent, so the most recent deliveries are kept in memory: a reader
    who clicks twice, or a scanner that follows every link, costs no read. The links of a
    campaign's variant are kept apart (its content is frozen once it sends), so a campaign and
    its body are read once per process, not once per recipient who clicks.

    A delivery not kept is read by its few columns, and the clicks waiting for a read share it,
    as group commit shares a write: while one statement is out, the deliveries clicked meanwhile
    gather for the next (most real clicks are a recipient's first, each of which would
    otherwise cost a session, a transaction and a statement)."""

    def __init__(self, codec: TokenCodec, size: int = 10_000, campaigns: int = 512) -> None:
        self.codec = codec
        self.size = size
        self.campaigns = campaigns
        self._recent: OrderedDict[int, _ClickTarget] = OrderedDict()
        self._variants: OrderedDict[tuple[str, str], _CampaignLinks] = OrderedDict()
        self._waiting: dict[int, list[asyncio.Future[_ClickTarget | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def resolve(
        self,
        sessions: async_sessionmaker[AsyncSession],
        token: str,
        user_agent: str | None,
        now: datetime,
    ) -> Hit:
        """A session is opened only when the database must be read (not for a cached delivery's
        plain link: opening and closing one is a good part of a click's cost)."""
        claim = _claim(self.codec, token, Purpose.CLICK)
        found = self._recent.get(claim.delivery_id)
        if found is None:
            found = await self._look_up(sessions, claim.delivery_id)
        if claim.link >= len(found.links):
            raise NotFound("This link is not valid")
        target = found.links[claim.link]
        if "{{" in target or "{%" in target:
            async with sessions() as session:
                contact = await repo.contact(session, found.contact_id)
            context = recipient_context(
                found.email,
                contact.first_name if contact else None,
                contact.last_name if contact else None,
                contact.attributes if contact else None,
                found.unsubscribe_url,
            )
            target = TEXT_ENV.from_string(target).render(**context).strip()
        return Hit("click", claim.delivery_id, now, user_agent, target)

    async def _look_up(
        self, sessions: async_sessionmaker[AsyncSession], delivery_id: int
    ) -> _ClickTarget:
        future: asyncio.Future[_ClickTarget | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(delivery_id, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_waiting(sessions))
        found = await asyncio.shield(
            future
        )  # a client that hangs up does not cancel the others' read
        if found is None:
            raise NotFound("This link is not valid")
        return found

    async def _read_waiting(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                async with sessions() as session:
                    found = await self._read(session, list(batch))
            except Exception as exc:  # every waiter learns; the next batch tries afresh
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved: the waiter may be gone
                continue
            for delivery_id, futures in batch.items():
                target = found.get(delivery_id)
                if target is not None:
                    _remember(self._recent, delivery_id, target, self.size)
                for future in futures:
                    if not future.done():
                        future.set_result(target)

    async def _read(
        self, session: AsyncSession, delivery_ids: list[int]
    ) -> dict[int, _ClickTarget]:
        found = {}
        for delivery_id, campaign_id, variant, contact_id, email in await repo.click_deliveries(
            session, delivery_ids
        ):
            variant_links = self._variants.get((campaign_id, variant))
            if variant_links is None:
                campaign = await repo.campaign(session, campaign_id)
                if campaign is None:
                    continue
                parts = variants.content(campaign, variant)
                variant_links = _CampaignLinks(
                    tracked_links(parts["html"], parts["text"]), campaign.unsubscribe_url
                )
                _remember(self._variants, (campaign_id, variant), variant_links, self.campaigns)
            found[delivery_id] = _ClickTarget(
                variant_links.links, contact_id, email, variant_links.unsubscribe_url
            )
        return found


K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Keep `value`, dropping the oldest entry past `size`."""
    cache[key] = value
    if len(cache) > size:
        cache.popitem(last=False)


@dataclass
class UnsubscribeTarget:
    email: str
    campaign_name: str
    # The sender's own page (the campaign's unsubscribe_url, with who and which).
    unsubscribe_url: str
    already: bool


def sender_page(url: str, email: str, campaign_id: str) -> str:
    """The campaign's `unsubscribe_url` with the person's address and the campaign's id as the
    query parameters `email` and `campaign_id` (replacing any of those names it had), so the
    sender's preference page knows who arrives."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("email", "campaign_id")
    ]
    query += [("email", email), ("campaign_id", campaign_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _target(session: AsyncSession, delivery_id: int) -> tuple[Delivery, UnsubscribeTarget]:
    found = await repo.delivery_with_campaign(session, delivery_id)
    if found is None:
        raise NotFound("This link is not valid")
    delivery, campaign = found
    contact = await repo.contact(session, delivery.contact_id)
    info = UnsubscribeTarget(
        delivery.email,
        campaign.name,
        sender_page(campaign.unsubscribe_url, delivery.email, campaign.id),
        already=bool(contact and contact.unsubscribed),
    )
    return delivery, info


async def unsubscribe_info(
    session: AsyncSession, codec: TokenCodec, token: str
) -> UnsubscribeTarget:
    _delivery, info = await _target(session, _claim(codec, token, Purpose.UNSUBSCRIBE).delivery_id)
    return info


async def unsubscribe(
    session: AsyncSession, codec: TokenCodec, token: str, now: datetime
) -> UnsubscribeTarget:
    """Idempotent. Takes effect for every campaign's next batch (the sender checks at claim
    time)."""
    return await unsubscribe_delivery(
        session, _claim(codec, token, Purpose.UNSUBSCRIBE).delivery_id, now
    )


async def unsubscribe_delivery(
    session: AsyncSession, delivery_id: int, now: datetime
) -> UnsubscribeTarget:
    """The unsubscribe of the contact a delivery went to (the page, one-click, or the mailto
    address)."""
    delivery, info = await _target(session, delivery_id)
    if delivery.contact_id:
        await repo.unsubscribe_contact(session, delivery.contact_id, now)
    if await repo.first_of_its_kind(session, delivery.id, "unsubscribed_at", now):
        await repo.add_event(session, delivery.id, "unsubscribe", now)
    return info


async def record_bounce(
    session: AsyncSession, delivery_id: int, hard: bool, diagnostic: str, now: datetime
) -> bool:
    found = await repo.delivery_with_campaign(session, delivery_id)
    if found is None:
        return False
    delivery, _ = found
    if not hard:
        return True  # a delay notice: the relay keeps trying; nothing to change
    await repo.mark_bounced(session, delivery.id, diagnostic, now)
    if not await repo.has_event(session, delivery.id, "bounce"):
        await repo.add_event(session, delivery.id, "bounce", now)
    if delivery.contact_id:
        await repo.suppress(session, delivery.contact_id, "bounce", now)
    return True


async def record_complaint(session: AsyncSession, delivery_id: int, now: datetime) -> bool:
    found = await repo.delivery_with_campaign(session, delivery_id)
    if found is None:
        return False
    delivery, _ = found
    if await repo.first_of_its_kind(session, delivery.id, "complained_at", now):
        await repo.add_event(session, delivery.id, "complaint", now)
    if delivery.contact_id:
        await repo.suppress(session, delivery.contact_id, "complaint", now)
        await repo.unsubscribe_contact(session, delivery.contact_id, now)
    return True
