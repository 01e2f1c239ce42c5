"""The sender: claim a batch of due deliveries, render each message, hand it to the transport and
record every answer as soon as it comes. It is a job: it commits at its own boundaries.

Crash safety rests on three writes: claim (one lease row per batch, nothing sent yet), then per
chunk of messages in flight `sending` (just before the relay sees them) and the outcome (just
after). A worker that dies leaves a lease (its unsent rows are claimable again once it runs
out: nobody got them) and `sending` rows (they may have reached the relay: they become
`unknown`, never re-sent)."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from typing import Any

from markupsafe import escape
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailcast.campaigns import ab
from mailcast.campaigns import service as campaigns
from mailcast.clock import Clock
from mailcast.config import Settings
from mailcast.db.models import Campaign
from mailcast.delivery import message as mime
from mailcast.delivery import repository as repo
from mailcast.delivery.dkim import Signer
from mailcast.delivery.render import CompiledVariant, RenderError, Rendered, compile_variant, recipient_context, render
from mailcast.delivery.tokens import Purpose, TokenCodec
from mailcast.delivery.transport import Envelope, Outcome, Result, Transport
from mailcast.domains import service as domains

log = logging.getLogger("mailcast.sender")


@dataclass
class CampaignPlan:
    """What every message of one campaign variant shares, prepared once."""

    campaign_id: str
    compiled: CompiledVariant
    sender: Address
    sender_domain: str
    reply_to: str | None
    bounce_domain: str
    dkim: Signer | None  # when the domain's key is published
    list_id: str
    feedback_id: str
    postal_address: str | None  # the account's, for the footer of a body without an unsubscribe link


def backoff(attempt: int, base: int, cap: int) -> timedelta:
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempt - 1)))


class Sender:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, transport: Transport,
                 clock: Clock, codec: TokenCodec, worker_id: str | None = None) -> None:
        self.sessions = sessions
        self.settings = settings
        self.transport = transport
        self.clock = clock
        self.codec = codec
        self.worker_id = worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self.lease = timedelta(seconds=settings.worker_lease_seconds)
        self.concurrency = settings.worker_concurrency
        self._plans: dict[tuple[str, str], CampaignPlan] = {}
        click = settings.public_url("/t/c/")
        self._click_prefix = (click, str(escape(click)))

    async def send_batch(self) -> int:
        """One batch; returns how many deliveries it claimed (0: nothing is due)."""
        size = self.settings.worker_batch_size
        async with self.sessions() as session:
            filling, running_low = await campaigns.queues_to_fill(session, self.settings)
        await self._fill(running_low)
        claimed = await self._claim(size)
        if len(claimed) < size and await self._fill(filling):
            # The due rows ran out while a snapshot has more (what is left unsent waits for a
            # retry, say): its next chunk now, instead of idling until the retries are due.
            claimed += await self._claim(size - len(claimed))
        if not claimed:
            return 0
        plans = await self._plans_for(claimed)
        for start in range(0, len(claimed), self.concurrency):
            await self._send_chunk(claimed[start : start + self.concurrency], plans)
        async with self.sessions() as session:  # its own transaction: a claim may be waiting on these rows
            # Every row was marked and given its outcome, or was not ours to send any more.
            await repo.end_leases(session, self.worker_id, {c.lease_id for c in claimed}, attempted=True)
            await session.commit()
        async with self.sessions() as session:
            finished = await repo.finish_done_campaigns(session, self.clock(), {c.campaign_id for c in claimed})
            await session.commit()
        for campaign_id in finished:
            log.info("campaign %s sent", campaign_id)
        return len(claimed)

    async def _claim(self, limit: int) -> list[repo.Claimed]:
        async with self.sessions() as session:
            claimed = await repo.claim(session, self.worker_id, self.clock(), limit, self.lease)
            await session.commit()
        return claimed

    async def _fill(self, campaign_ids: list[str]) -> int:
        """Queue the next chunk of each of these campaigns' snapshots, each in a transaction of
        its own (a fill that changed nothing is rolled back). Returns how many deliveries were
        queued."""
        queued = 0
        for campaign_id in campaign_ids:
            async with self.sessions() as session:
                n = await campaigns.fill_queue(session, self.settings, campaign_id, self.clock())
                if n is not None:
                    await session.commit()
                    queued += n
        return queued

    async def _plans_for(self, claimed: list[repo.Claimed]) -> dict[tuple[str, str], CampaignPlan]:
        wanted = {(c.campaign_id, c.variant) for c in claimed} - set(self._plans)
        if wanted:
            async with self.sessions() as session:
                campaigns = await repo.campaigns_for(session, list({cid for cid, _ in wanted}))
                for campaign_id, variant in wanted:
                    self._plans[(campaign_id, variant)] = await self._plan(session, campaigns[campaign_id], variant)
        return self._plans

    async def _plan(self, session: AsyncSession, campaign: Campaign, variant: str) -> CampaignPlan:
        return await plan_for(session, self.settings, campaign, variant)

    async def _send_chunk(self, chunk: list[repo.Claimed], plans) -> None:
        async with self.sessions() as session:
            ours = await repo.mark_sending(session, self.worker_id, chunk, self.clock(), self.lease)
            await session.commit()
        work = [c for c in chunk if c.id in ours]
        outcomes = await asyncio.gather(*(self._deliver(c, ours[c.id], plans[(c.campaign_id, c.variant)])
                                          for c in work))
        now = self.clock()
        async with self.sessions() as session:
            # When each deferred row was queued: its retries end `retry_lifetime_hours` after it.
            # Read for these rows only, not with every claimed one (bench/RESULTS.md, twelfth round).
            queued_at = await repo.created_at(session, [d.id for d, (result, _) in zip(work, outcomes)
                                                         if result.outcome is Outcome.DEFERRED])
            rows, bounced_contacts = [], []
            for delivery, (result, message_id) in zip(work, outcomes):
                rows.append(self._outcome_row(delivery, result, message_id, now, queued_at.get(delivery.id)))
                if result.outcome is Outcome.BOUNCED and delivery.contact_id:
                    bounced_contacts.append(delivery.contact_id)
            await repo.record(session, self.worker_id, rows)
            await repo.suppress_contacts(session, bounced_contacts, "bounce", now)
            await session.commit()

    def _outcome_row(self, delivery: repo.Claimed, result: Result, message_id: str | None, now: datetime,
                     queued_at: datetime | None) -> dict[str, Any]:
        response = f"{result.code} {result.message}" if result.code else result.message
        row: dict[str, Any] = {"id": delivery.id, "status": result.outcome.value, "smtp_response": response[:2000],
                               "updated_at": now, "message_id": message_id}
        if result.outcome is Outcome.SENT:
            row["sent_at"] = now
        elif result.outcome is Outcome.DEFERRED:
            attempt = delivery.attempts + 1
            retry_at = now + backoff(attempt, self.settings.retry_base_seconds, self.settings.retry_max_seconds)
            if queued_at is None or retry_at > queued_at + timedelta(hours=self.settings.retry_lifetime_hours):
                row["status"] = "failed"
                row["smtp_response"] = f"gave up after {attempt} attempts: {response}"[:2000]
            else:
                row["next_attempt_at"] = retry_at
        elif result.outcome is Outcome.BOUNCED:
            row["sent_at"] = now
        return row

    async def _deliver(self, delivery: repo.Claimed, recipient: repo.Recipient, plan: CampaignPlan
                       ) -> tuple[Result, str | None]:
        if not recipient.reachable:
            return _failed("unsubscribed or suppressed before sending"), None
        try:
            data, message_id = self.build(delivery, recipient, plan)
        except RenderError as exc:
            return _failed(str(exc)), None
        envelope = Envelope(sender=f"bounces+{self.codec.encode(delivery.id, Purpose.BOUNCE)}@{plan.bounce_domain}",
                            recipient=delivery.email, data=data, sender_domain=plan.sender_domain,
                            wire_ready=mime.builds_itself(delivery.email))
        return await self.transport.send(envelope), message_id

    def build(self, delivery: repo.Claimed, recipient: repo.Recipient, plan: CampaignPlan) -> tuple[bytes, str]:
        data, message_id, _ = compose(plan, self.codec, self.settings, self.clock(), delivery.id, delivery.email,
                                      recipient.first_name, recipient.last_name, recipient.metadata,
                                      click_prefix=self._click_prefix)
        return data, message_id


async def plan_for(session: AsyncSession, settings: Settings, campaign: Campaign, variant: str) -> CampaignPlan:
    """What every message of one campaign variant shares: the compiled content, the sender, the
    signer, the list headers."""
    sender = mime.parse_from(campaign.from_address)
    domain = await repo.signing_domain(session, campaign.account_id, sender.domain.lower())
    dkim = None
    if domain is not None and domains.signs_with_dkim(domain):
        dkim = Signer(sender.domain.lower(), domain.dkim_selector, domain.dkim_algorithm, domain.dkim_private_key,
                      mime.SIGNED_HEADERS)
    parts = ab.content(campaign, variant)
    postal_address = await repo.postal_address(session, campaign.account_id)
    compiled = compile_variant(parts["subject"], parts["html"], parts["text"], parts["preview_text"],
                               footer=True, postal_address=bool(postal_address))
    audience_name = await repo.audience_name(session, campaign.audience_id)
    return CampaignPlan(
        campaign_id=campaign.id, compiled=compiled, sender=sender, sender_domain=sender.domain.lower(),
        reply_to=campaign.reply_to, bounce_domain=settings.bounce_domain or sender.domain.lower(), dkim=dkim,
        list_id=mime.list_id(audience_name, campaign.audience_id, sender.domain.lower()),
        feedback_id=f"{campaign.id}:{campaign.account_id}:mailcast", postal_address=postal_address,
    )


def compose(plan: CampaignPlan, codec: TokenCodec, settings: Settings, now: datetime, delivery_id: int, email: str,
            first_name: str | None, last_name: str | None, metadata: dict[str, Any] | None,
            subject_prefix: str = "", click_prefix: tuple[str, str] | None = None) -> tuple[bytes, str, Rendered]:
    """One recipient's message as it goes on the wire (signed when the plan signs), its Message-ID,
    and what was rendered. Raises RenderError."""
    url = settings.public_url
    unsubscribe_token = codec.encode(delivery_id, Purpose.UNSUBSCRIBE)
    unsubscribe = url(f"/u/{unsubscribe_token}")
    context = recipient_context(email, first_name, last_name, metadata, unsubscribe, plan.postal_address)
    tokens = codec.encode_many(delivery_id, Purpose.CLICK, range(len(plan.compiled.links)))
    # A token is base64url (nothing to escape in HTML), so escaping the prefix once is enough.
    if click_prefix is None:
        click = url("/t/c/")
        click_prefix = (click, str(escape(click)))
    click, click_html = click_prefix
    pixel = url(f"/t/o/{codec.encode(delivery_id, Purpose.OPEN)}.gif")
    rendered = render(plan.compiled, context, [click + t for t in tokens], pixel, [click_html + t for t in tokens])
    if subject_prefix:
        rendered.subject = subject_prefix + rendered.subject
    message_id = mime.new_message_id(plan.sender_domain)
    name = " ".join(filter(None, (first_name, last_name)))
    mailto = f"mailto:unsubscribe+{unsubscribe_token}@{plan.bounce_domain}?subject=unsubscribe"
    data = mime.build(sender=plan.sender, recipient=email, recipient_name=name,
                      subject=rendered.subject, html=rendered.html_pieces, text=rendered.text_pieces,
                      message_id=message_id, date=now, unsubscribe_url=unsubscribe, unsubscribe_mailto=mailto,
                      reply_to=plan.reply_to, list_id=plan.list_id, feedback_id=plan.feedback_id)
    try:
        mime.check_headers(data)
    except mime.UnsafeHeaders as exc:
        raise RenderError(str(exc)) from exc
    if plan.dkim:
        data = plan.dkim.sign(data, now)
    return data, message_id, rendered


def _failed(reason: str) -> Result:
    return Result(Outcome.FAILED, None, reason)
