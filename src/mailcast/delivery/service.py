"""The sender: claim a batch of due deliveries, render each message, hand it to the transport and
record every answer as soon as it comes. It is a job: it commits at its own boundaries.

Crash safety rests on three writes: the claim (one lease row per batch, renewed by heartbeat;
nothing sent yet), `sending` for one message when a relay connection is in hand and its envelope
is about to be written, and its outcome right after the reply, before that connection takes
another message (`Ledger`). So a worker that dies leaves its lease (its unsent rows are claimable
once it runs out) and at most one `sending` row per relay connection, which is sent again
flagged `in_doubt`: the relay may or may not have taken it."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from functools import partial
from typing import Any, Protocol, TypeVar

from markupsafe import escape
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailcast import variants
from mailcast.clock import Clock
from mailcast.config import Settings
from mailcast.db.models import Campaign
from mailcast.delivery import message as mime
from mailcast.delivery import repository as repo
from mailcast.delivery.dkim import Signer
from mailcast.delivery.render import (
    CompiledVariant,
    Rendered,
    RenderError,
    compile_variant,
    recipient_context,
    render,
)
from mailcast.delivery.store import DeliveryStore, SentWriter
from mailcast.delivery.tokens import Purpose, TokenCodec
from mailcast.delivery.transport import Envelope, Outcome, Result, Transport
from mailcast.domains import service as domains
from mailcast.domains.keys import KeyUnreadable, sealer
from mailcast.statuses import DeliveryStatus

log = logging.getLogger("mailcast.sender")

# A chunk's deliveries still the worker's to send, each with its contact as it is now.
Prepared = list[tuple[repo.Claimed, repo.Recipient]]


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
    postal_address: (
        str | None
    )  # the account's, for the footer of a body without an unsubscribe link


def backoff(attempt: int, base: int, cap: int) -> timedelta:
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempt - 1)))


class CampaignQueues(Protocol):
    """The campaign side of sending (`campaigns.service`): snapshots queued a chunk at a time,
    and a campaign paused when it cannot be sent."""

    async def queues_to_fill(
        self, session: AsyncSession, settings: Settings
    ) -> tuple[list[str], list[str]]: ...

    async def fill_queue(
        self, session: AsyncSession, settings: Settings, campaign_id: str, now: datetime
    ) -> int | None: ...

    async def pause_for(
        self, session: AsyncSession, campaign_id: str, reason: str, now: datetime
    ) -> bool: ...


class Sender:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        transport: Transport,
        clock: Clock,
        codec: TokenCodec,
        queues: CampaignQueues,
        store: DeliveryStore,
        worker_id: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.queues = queues
        self.store = store
        self.settings = settings
        self.transport = transport
        self.clock = clock
        self.codec = codec
        self.worker_id = worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self.lease = timedelta(seconds=settings.worker_lease_seconds)
        self.concurrency = settings.worker_concurrency
        self._plans: dict[tuple[str, str], CampaignPlan] = {}
        self._engine = sessions.kw["bind"]
        self._health = transport.health() if transport is not None else []  # as last written
        click = settings.public_url("/t/c/")
        self._click_prefix = (click, str(escape(click)))

    async def send_batch(self) -> int:
        """One batch; returns how many deliveries it claimed (0: nothing is due, or no relay can
        be reached now)."""
        await self._publish_health()
        if self.transport.paused_for():
            return 0
        size = self.settings.worker_batch_size
        async with self.sessions() as session:
            filling, running_low = await self.queues.queues_to_fill(session, self.settings)
        await self._fill(running_low)
        claimed = await self._claim(size)
        if len(claimed) < size and await self._fill(filling):
            # The due rows ran out while a snapshot has more (what is left unsent waits for a
            # retry, say): its next chunk now, instead of idling until the retries are due.
            claimed += await self._claim(size - len(claimed))
        if not claimed:
            return 0
        leases = {c.lease_id for c in claimed}
        heartbeat = asyncio.create_task(self._heartbeat(leases))
        ledger = Ledger(self)
        try:
            plans = await self._plans_for(claimed)
            if len(sendable := [c for c in claimed if (c.campaign_id, c.variant) in plans]) < len(
                claimed
            ):
                ledger.complete = False  # a paused campaign's rows stay due where they are
                claimed = sendable
            await self._send_chunks(claimed, plans, ledger)
        finally:
            heartbeat.cancel()
            await ledger.close()
        async with (
            self.sessions() as session
        ):  # its own transaction: a claim may be waiting on these rows
            # `attempted`: every row was marked and given its outcome, or was not ours to send any
            # more.
            await self.store.end_leases(session, self.worker_id, leases, ledger.complete)
            await session.commit()
        async with self.sessions() as session:
            finished = await repo.finish_done_campaigns(
                session, self.clock(), list({c.campaign_id for c in claimed})
            )
            await session.commit()
        for campaign_id in finished:
            log.info("campaign %s sent", campaign_id)
        await self._publish_health()
        return len(claimed)

    async def _publish_health(self) -> None:
        """The relays' state, written when it changed: the campaign pages show a relay that is
        down."""
        health = self.transport.health()
        if health == self._health:
            return
        await self.write(lambda session: repo.save_relay_health(session, health, self.clock()))
        self._health = health

    async def _heartbeat(self, leases: set[int]) -> None:
        """Renews the batch's leases while it is sent: another worker takes them over only once
        this one stopped renewing them (it died)."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                await self.write(
                    lambda session: self.store.renew(
                        session, self.worker_id, leases, self.clock(), self.lease
                    )
                )
            except DBAPIError:
                log.warning("could not renew the batch's lease; retrying", exc_info=True)

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work` in a transaction of its own, committed; tried again as `retrying` says."""

        async def once() -> T:
            async with self.sessions() as session:
                result = await work(session)
                await session.commit()
            return result

        return await self.retrying(once)

    async def retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, tried again while the database cannot be reached (a restart, say), for up
        to a lease's time."""
        deadline = asyncio.get_running_loop().time() + self.lease.total_seconds()
        pause = 0.1
        while True:
            try:
                return await attempt()
            except _TRANSIENT as exc:
                if not _transient(exc):
                    raise
                if asyncio.get_running_loop().time() + pause > deadline:
                    raise
                log.warning(
                    "database unavailable (%s); trying again in %.1f s",
                    exc.__class__.__name__,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _claim(self, limit: int) -> list[repo.Claimed]:
        async with self.sessions() as session:
            claimed = await self.store.claim(
                session, self.worker_id, self.clock(), limit, self.lease
            )
            await session.commit()
        return claimed

    async def _fill(self, campaign_ids: list[str]) -> int:
        """Queue the next chunk of each of these campaigns' snapshots, each in a transaction of
        its own (a fill that changed nothing is rolled back). Returns how many deliveries were
        queued."""
        queued = 0
        for campaign_id in campaign_ids:
            async with self.sessions() as session:
                n = await self.queues.fill_queue(session, self.settings, campaign_id, self.clock())
                if n is not None:
                    await session.commit()
                    queued += n
        return queued

    async def _plans_for(self, claimed: list[repo.Claimed]) -> dict[tuple[str, str], CampaignPlan]:
        """The plan of each campaign variant claimed; a campaign whose DKIM key cannot be opened
        is paused with the reason and has none."""
        wanted = {(c.campaign_id, c.variant) for c in claimed} - set(self._plans)
        unsendable: dict[str, str] = {}
        if wanted:
            async with self.sessions() as session:
                rows = await repo.campaigns_for(session, list({cid for cid, _ in wanted}))
                for campaign_id, variant in sorted(wanted):
                    try:
                        self._plans[(campaign_id, variant)] = await self._plan(
                            session, rows[campaign_id], variant
                        )
                    except KeyUnreadable as exc:
                        unsendable[campaign_id] = f"paused: {exc}"
        for campaign_id, reason in unsendable.items():
            log.error("campaign %s %s", campaign_id, reason)
            await self.write(partial(self._pause, campaign_id, reason))
        return self._plans

    async def _pause(self, campaign_id: str, reason: str, session: AsyncSession) -> None:
        await self.queues.pause_for(session, campaign_id, reason, self.clock())

    async def _plan(self, session: AsyncSession, campaign: Campaign, variant: str) -> CampaignPlan:
        return await plan_for(session, self.settings, campaign, variant)

    async def _send_chunks(
        self,
        claimed: list[repo.Claimed],
        plans: dict[tuple[str, str], CampaignPlan],
        ledger: Ledger,
    ) -> None:
        """The batch through as many senders as the transport has connections: each takes the
        next prepared delivery once its previous one has its answer, so a message is rendered
        when a connection is free for it, and no task waits per message."""
        feed = _Feed(self._prepare, claimed, self.concurrency)
        senders = [
            asyncio.create_task(self._send_from(feed, plans, ledger))
            for _ in range(min(self.concurrency, self.transport.capacity()))
        ]
        try:
            await asyncio.gather(*senders)
        except BaseException:
            # Every message begun ends before the batch does (its outcome is the ledger's).
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            raise
        finally:
            await feed.close()

    async def _send_from(
        self, feed: _Feed, plans: dict[tuple[str, str], CampaignPlan], ledger: Ledger
    ) -> None:
        while not ledger.refusing and (taken := await feed.take()) is not None:
            delivery, recipient = taken
            await self._deliver(
                delivery, recipient, plans[(delivery.campaign_id, delivery.variant)], ledger
            )

    async def _prepare(self, chunk: list[repo.Claimed]) -> Prepared:
        ours = await self.write(
            lambda session: self.store.prepare(
                session, self.worker_id, chunk, self.clock(), self.lease
            )
        )
        return [(c, ours[c.id]) for c in chunk if c.id in ours]

    def _outcome_row(
        self,
        delivery: repo.Claimed,
        result: Result,
        message_id: str | None,
        now: datetime,
        queued_at: datetime | None,
        marked: bool,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": delivery.id,
            "status": result.outcome.value,
            "smtp_response": _reply(result),
            "updated_at": now,
            "message_id": message_id,
        }
        if result.outcome is Outcome.PAUSED:
            # Not tried: the relay is unreachable. Due again when it is probed; no attempt counted.
            row.update(
                status=DeliveryStatus.DEFERRED,
                next_attempt_at=now + timedelta(seconds=result.retry_after),
            )
            return row
        if not marked and result.outcome is Outcome.DEFERRED:
            row["attempts"] = delivery.attempts + 1  # marking counts it otherwise
        if result.outcome is Outcome.UNKNOWN:
            # The reply to a complete message was lost: like any MTA, send it again (a possible
            # duplicate SMTP cannot rule out), flagged so the duplicate is accounted for.
            row["in_doubt"] = True
        if result.outcome is Outcome.SENT:
            row["sent_at"] = now
        elif result.outcome in (Outcome.DEFERRED, Outcome.UNKNOWN):
            row["status"] = DeliveryStatus.DEFERRED
            attempt = delivery.attempts + 1
            retry_at = now + backoff(
                attempt, self.settings.retry_base_seconds, self.settings.retry_max_seconds
            )
            if queued_at is None or retry_at > queued_at + timedelta(
                hours=self.settings.retry_lifetime_hours
            ):
                row["status"] = (
                    DeliveryStatus.UNKNOWN
                    if result.outcome is Outcome.UNKNOWN
                    else DeliveryStatus.FAILED
                )
                gave_up = f"gave up after {attempt} attempts: {row['smtp_response']}"
                row["smtp_response"] = gave_up[:2000]
            else:
                row["next_attempt_at"] = retry_at
        elif result.outcome is Outcome.BOUNCED:
            row["sent_at"] = now
        return row

    async def _deliver(
        self, delivery: repo.Claimed, recipient: repo.Recipient, plan: CampaignPlan, ledger: Ledger
    ) -> None:
        if not recipient.reachable:
            ledger.record(
                delivery, _failed("unsubscribed or suppressed before sending"), None, marked=False
            )
            return
        try:
            data, message_id = self.build(delivery, recipient, plan)
        except RenderError as exc:
            ledger.record(delivery, _failed(str(exc)), None, marked=False)
            return
        marking: asyncio.Future[bool] | None = None

        def on_wire() -> asyncio.Future[bool]:
            nonlocal marking
            marking = ledger.mark(delivery.id)
            return marking

        envelope = Envelope(
            sender=f"bounces+{self.codec.encode(delivery.id, Purpose.BOUNCE)}@{plan.bounce_domain}",
            recipient=delivery.email,
            data=data,
            sender_domain=plan.sender_domain,
            wire_ready=mime.builds_itself(delivery.email),
            on_wire=on_wire,
        )
        result = await self.transport.send(envelope)
        if result.outcome is not Outcome.SKIPPED:
            # The transport awaited the mark before answering whenever it asked for one.
            marked = marking is not None and marking.done() and marking.result()
            ledger.record(delivery, result, message_id, marked=marked)

    def build(
        self, delivery: repo.Claimed, recipient: repo.Recipient, plan: CampaignPlan
    ) -> tuple[bytes, str]:
        data, message_id, _ = compose(
            plan,
            self.codec,
            self.settings,
            self.clock(),
            delivery.id,
            delivery.email,
            recipient.first_name,
            recipient.last_name,
            recipient.metadata,
            click_prefix=self._click_prefix,
        )
        return data, message_id


async def plan_for(
    session: AsyncSession, settings: Settings, campaign: Campaign, variant: str
) -> CampaignPlan:
    """What every message of one campaign variant shares: the compiled content, the sender, the
    signer, the list headers."""
    sender = mime.parse_from(campaign.from_address)
    domain = await repo.signing_domain(session, campaign.account_id, sender.domain.lower())
    dkim = None
    if domain is not None and domains.signs_with_dkim(domain):
        dkim = Signer(
            sender.domain.lower(),
            domain.dkim_selector,
            domain.dkim_algorithm,
            sealer(settings.secret()).open(domain.dkim_private_key),
            mime.SIGNED_HEADERS,
        )
    parts = variants.content(campaign, variant)
    postal_address = await repo.postal_address(session, campaign.account_id)
    compiled = compile_variant(
        parts["subject"] or "",
        parts["html"],
        parts["text"],
        parts["preview_text"],
        footer=True,
        postal_address=bool(postal_address),
    )
    audience_name = await repo.audience_name(session, campaign.audience_id)
    return CampaignPlan(
        campaign_id=campaign.id,
        compiled=compiled,
        sender=sender,
        sender_domain=sender.domain.lower(),
        reply_to=campaign.reply_to,
        bounce_domain=settings.bounce_domain or sender.domain.lower(),
        dkim=dkim,
        list_id=mime.list_id(audience_name, campaign.audience_id, sender.domain.lower()),
        feedback_id=f"{campaign.id}:{campaign.account_id}:mailcast",
        postal_address=postal_address,
    )


def compose(
    plan: CampaignPlan,
    codec: TokenCodec,
    settings: Settings,
    now: datetime,
    delivery_id: int,
    email: str,
    first_name: str | None,
    last_name: str | None,
    metadata: dict[str, Any] | None,
    subject_prefix: str = "",
    click_prefix: tuple[str, str] | None = None,
) -> tuple[bytes, str, Rendered]:
    """One recipient's message as it goes on the wire (signed when the plan signs), its Message-ID,
    and what was rendered. Raises RenderError."""
    url = settings.public_url
    unsubscribe_token = codec.encode(delivery_id, Purpose.UNSUBSCRIBE)
    unsubscribe = url(f"/u/{unsubscribe_token}")
    context = recipient_context(
        email, first_name, last_name, metadata, unsubscribe, plan.postal_address
    )
    tokens = codec.encode_many(delivery_id, Purpose.CLICK, range(len(plan.compiled.links)))
    # A token is base64url (nothing to escape in HTML), so escaping the prefix once is enough.
    if click_prefix is None:
        click = url("/t/c/")
        click_prefix = (click, str(escape(click)))
    click, click_html = click_prefix
    pixel = url(f"/t/o/{codec.encode(delivery_id, Purpose.OPEN)}.gif")
    rendered = render(
        plan.compiled, context, [click + t for t in tokens], pixel, [click_html + t for t in tokens]
    )
    if subject_prefix:
        rendered.subject = subject_prefix + rendered.subject
    message_id = mime.new_message_id(plan.sender_domain)
    name = " ".join(filter(None, (first_name, last_name)))
    mailto = f"mailto:unsubscribe+{unsubscribe_token}@{plan.bounce_domain}?subject=unsubscribe"
    data = mime.build(
        sender=plan.sender,
        recipient=email,
        recipient_name=name,
        subject=rendered.subject,
        html=rendered.html_pieces,
        text=rendered.text_pieces,
        message_id=message_id,
        date=now,
        unsubscribe_url=unsubscribe,
        unsubscribe_mailto=mailto,
        reply_to=plan.reply_to,
        list_id=plan.list_id,
        feedback_id=plan.feedback_id,
    )
    try:
        mime.check_headers(data)
    except mime.UnsafeHeaders as exc:
        raise RenderError(str(exc)) from exc
    if plan.dkim:
        data = plan.dkim.sign(data, now)
    return data, message_id, rendered


def _reply(result: Result) -> str:
    """What a delivery keeps of the relay's answer (its code, if any, and text; bounded)."""
    return (f"{result.code} {result.message}" if result.code else result.message)[:2000]


def _failed(reason: str) -> Result:
    return Result(Outcome.FAILED, None, reason)


T = TypeVar("T")


try:  # the driver's own errors, from the statement `Ledger` runs on the driver's connection
    from asyncpg.exceptions import (
        CannotConnectNowError,
        OperatorInterventionError,
        PostgresConnectionError,
    )
    from asyncpg.exceptions import InterfaceError as _DriverInterfaceError

    _DRIVER_ERRORS: tuple[type[Exception], ...] = (
        PostgresConnectionError,
        CannotConnectNowError,
        OperatorInterventionError,
        _DriverInterfaceError,
    )
except ImportError:  # pragma: no cover - SQLite only
    _DRIVER_ERRORS = ()
_TRANSIENT: tuple[type[Exception], ...] = (DBAPIError, OSError, *_DRIVER_ERRORS)


def _transient(exc: Exception) -> bool:
    """The database could not be reached or was busy (restarting, refusing connections, a
    SQLite lock), not a statement it refused: worth another try."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
    return isinstance(exc, (OSError, *_DRIVER_ERRORS))


@dataclass
class _Outcome:
    delivery: repo.Claimed
    result: Result
    message_id: str | None
    marked: bool


class _Feed:
    """A batch's deliveries in chunks of `size`, each prepared (`Sender._prepare`: the rows still
    ours, with their contacts) while the chunk before it is sent."""

    def __init__(
        self,
        prepare: Callable[[list[repo.Claimed]], Coroutine[Any, Any, Prepared]],
        claimed: list[repo.Claimed],
        size: int,
    ) -> None:
        self._prepare = prepare
        self._chunks = deque(claimed[i : i + size] for i in range(0, len(claimed), size))
        self._ready: deque[tuple[repo.Claimed, repo.Recipient]] = deque()
        self._preparing: asyncio.Task[Prepared] | None = None
        self._prepare_next()

    def _prepare_next(self) -> None:
        self._preparing = (
            asyncio.create_task(self._prepare(self._chunks.popleft())) if self._chunks else None
        )

    async def take(self) -> tuple[repo.Claimed, repo.Recipient] | None:
        """The next delivery still ours to send; None when the batch has no more."""
        while not self._ready:
            preparing = self._preparing
            if preparing is None:
                return None
            prepared = await asyncio.shield(preparing)
            if self._preparing is preparing:  # the first sender to see it ready moves on
                self._ready.extend(prepared)
                self._prepare_next()
        return self._ready.popleft()

    async def close(self) -> None:
        """A chunk still being prepared when the batch ends early is given up."""
        if self._preparing is not None:
            self._preparing.cancel()
            await asyncio.gather(self._preparing, return_exceptions=True)


# The writer, when it starts idle, waits this long first, so that what the other relay
# connections ask for meanwhile joins its write: fewer, larger writes for the same messages.
GATHER_SECONDS = 0.002


class Ledger:
    """A batch's writes of `sending` marks and outcomes, grouped: what every relay connection
    asks for while one write runs goes in the next (a group commit). One write at a time, so a
    mark commits no earlier than every outcome recorded before it (in the same write or an
    earlier one): a connection's outcome is written no later than its next mark."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.complete = True  # every row asked for was marked or recorded (no write failed)
        self.refusing = False  # a write failed: nothing more goes out in this batch
        self._marks: dict[int, asyncio.Future[bool]] = {}
        self._outcomes: list[_Outcome] = []
        self._writer: asyncio.Task[None] | None = None  # None once it found nothing left
        # The store's fast path for outcomes that are all "sent" (None: every write is `_write`).
        self._fast = sender.store.sent_writer(sender._engine)

    def mark(self, delivery_id: int) -> asyncio.Future[bool]:
        """Resolves to True when the row is `sending` and ours to send now."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.refusing:
            future.set_result(False)
            return future
        self._marks[delivery_id] = future
        self._start()
        return future

    def record(
        self, delivery: repo.Claimed, result: Result, message_id: str | None, marked: bool
    ) -> None:
        """Written by the ledger's next write; `close` waits for it."""
        self._outcomes.append(_Outcome(delivery, result, message_id, marked))
        self._start()

    def _start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())

    async def _write_all(self) -> None:
        try:
            await self._write_while_asked()
        finally:
            # In the step that found nothing left: work asked for later starts a new writer.
            self._writer = None

    async def close(self) -> None:
        """The batch is done: every outcome recorded is written (or its write failed), then what
        the fast path holds goes back."""
        try:
            while self._writer is not None:
                await self._writer
        finally:
            if self._fast is not None:
                await self._fast.close()

    async def _write_while_asked(self) -> None:
        await asyncio.sleep(GATHER_SECONDS)
        while self._marks or self._outcomes:
            marks, outcomes = self._marks, self._outcomes
            self._marks, self._outcomes = {}, []
            try:
                if self._fast is not None and all(
                    o.marked and o.result.outcome is Outcome.SENT for o in outcomes
                ):
                    marked = await self.sender.retrying(
                        partial(self._write_sent, self._fast, outcomes, list(marks))
                    )
                else:
                    marked = await self.sender.write(
                        partial(self._write, outcomes=outcomes, marks=marks)
                    )
            except Exception as exc:
                # Marks not written are not sent (the rows stay due); outcomes not written leave
                # their rows `sending`, which the recovery sends again, flagged in doubt.
                log.error(
                    "could not write %d outcomes and %d marks: %s", len(outcomes), len(marks), exc
                )
                self.complete = False
                self.refusing = True
                marked = set()
            for delivery_id, future in marks.items():
                if not future.done():  # cancelled with its sender (a worker shutting down)
                    future.set_result(delivery_id in marked)

    async def _write_sent(
        self, fast: SentWriter, outcomes: list[_Outcome], marks: list[int]
    ) -> set[int]:
        sender = self.sender
        sent = []
        for o in outcomes:
            sent.append((o.delivery.id, _reply(o.result), o.message_id))
        return await fast.write(sender.worker_id, sent, marks, sender.clock(), sender.lease)

    async def _write(
        self, session: AsyncSession, outcomes: list[_Outcome], marks: dict[int, Any]
    ) -> set[int]:
        sender = self.sender
        now = sender.clock()
        if outcomes:
            # When each deferred row was queued: its retries end `retry_lifetime_hours` after it.
            queued_at = await repo.created_at(
                session,
                [
                    o.delivery.id
                    for o in outcomes
                    if o.result.outcome in (Outcome.DEFERRED, Outcome.UNKNOWN)
                ],
            )
            for marked in (True, False):
                rows = [
                    sender._outcome_row(
                        o.delivery,
                        o.result,
                        o.message_id,
                        now,
                        queued_at.get(o.delivery.id),
                        marked,
                    )
                    for o in outcomes
                    if o.marked is marked
                ]
                if rows:
                    await sender.store.record(session, sender.worker_id, rows, not marked)
            await repo.suppress_contacts(
                session,
                [
                    o.delivery.contact_id
                    for o in outcomes
                    if o.result.outcome is Outcome.BOUNCED and o.delivery.contact_id
                ],
                "bounce",
                now,
            )
        return await sender.store.mark_on_wire(
            session, sender.worker_id, list(marks), now, sender.lease
        )
