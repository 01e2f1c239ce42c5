"""Transports: where rendered messages go. SMTP relays (aiosmtplib, pooled, rate-limited, routed
by sender domain) or a file outbox when no relay is configured."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from aiosmtplib import (
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
)
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from mailcast.delivery.pipelining import write_expecting

log = logging.getLogger("mailcast.delivery")


class Outcome(StrEnum):
    SENT = "sent"  # the relay accepted it (2xx after the final dot)
    # 4xx, or the connection failed before the message was complete: retry later.
    DEFERRED = "deferred"
    BOUNCED = "bounced"  # 5xx: the relay rejected it
    # The message was complete but no reply came: it may have arrived (RFC 1047).
    UNKNOWN = "unknown"
    FAILED = "failed"  # never handed to a relay (it could not be rendered, or the contact left)
    SKIPPED = "skipped"  # `on_wire` said no: the row is no longer this sender's; nothing was sent
    PAUSED = "paused"  # the relay is unreachable (its circuit is open): not tried, due again later


@dataclass(frozen=True)
class Envelope:
    sender: str  # MAIL FROM (the VERP bounce address)
    recipient: str
    data: bytes
    sender_domain: str
    # What message.build writes for an ASCII recipient (`builds_itself`): line endings CRLF
    # throughout and no line starting with ".", so there is nothing to count or double.
    wire_ready: bool = False
    # Called with a connection in hand, just before the envelope is written: marks the message
    # in flight, and says whether it may go (False: it is no longer ours; nothing is sent).
    on_wire: Callable[[], Awaitable[bool]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    code: int | None
    message: str
    retry_after: float = 0.0  # PAUSED: seconds until the relay is tried again


@dataclass(frozen=True)
class RelayHealth:
    relay: str  # `relay_name` of its configuration
    down_since: datetime | None  # None: reachable
    error: str | None


NOT_OURS = Result(Outcome.SKIPPED, None, "no longer this sender's to send")


class Transport(Protocol):
    async def send(self, envelope: Envelope) -> Result: ...

    def capacity(self) -> int:
        """Messages it can have on their way at once (more only wait for one of those to end)."""
        ...

    def paused_for(self) -> float:
        """Seconds before any message can be tried (every relay's circuit is open); 0: now."""
        ...

    def health(self) -> list[RelayHealth]: ...

    async def close(self) -> None: ...


class FileOutbox:
    """One .eml per message; the embedded default. Nothing leaves the machine."""

    def __init__(self, directory: Path, writers: int = 8) -> None:
        self.directory = directory
        self.writers = writers
        directory.mkdir(parents=True, exist_ok=True)

    async def send(self, envelope: Envelope) -> Result:
        if envelope.on_wire is not None and not await envelope.on_wire():
            return NOT_OURS
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex}.eml"
        tmp = self.directory / f".{name}.tmp"
        header = (
            f"X-Envelope-From: <{envelope.sender}>\r\nX-Envelope-To: <{envelope.recipient}>\r\n"
        ).encode()
        await asyncio.to_thread(
            _write_atomically, tmp, self.directory / name, header + envelope.data
        )
        return Result(Outcome.SENT, 250, f"written to {name}")

    def capacity(self) -> int:
        return self.writers

    def paused_for(self) -> float:
        return 0.0

    def health(self) -> list[RelayHealth]:
        return []

    async def close(self) -> None:
        return None


def _write_atomically(tmp: Path, final: Path, data: bytes) -> None:
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)


@dataclass(frozen=True)
class RelayConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    use_tls: bool = False  # implicit TLS (smtps://)
    start_tls: bool | None = None  # None: whatever the server offers
    verify_tls: bool = True

    @property
    def name(self) -> str:
        return relay_name(self.host, self.port)

    @classmethod
    def from_url(cls, url: str) -> RelayConfig:
        """smtp://user:pass@host:587?starttls=true, smtps://host:465, ?verify=false for self-signed
        test relays."""
        parts = urlsplit(url)
        shown = _without_password(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                f"not an SMTP URL: {shown!r} (smtp://[user:pass@]host[:port] or smtps://...)"
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"not an SMTP URL: {shown!r} (the port is not a number)") from None
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        starttls = query.get("starttls")
        start_tls = None if starttls is None else starttls in ("1", "true", "yes")
        if parts.username and not implicit and start_tls is None:
            # Credentials never cross a connection without TLS (a relay whose STARTTLS was stripped
            # would get them in clear), unless the URL says starttls=false.
            start_tls = True
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit,
            start_tls=start_tls,
            verify_tls=query.get("verify", "true") not in ("0", "false", "no"),
        )


def relay_name(host: str, port: int) -> str:
    """How a relay is named where its health is shown (no credentials)."""
    return f"{host}:{port}"


def _without_password(url: str) -> str:
    """The URL as it may be shown: its password, if any, as ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


class RateLimiter:
    """At most `rate` acquisitions per second, evenly spaced (no bursts that a relay would
    throttle). Slots are handed out in order, so the long-run rate holds however many senders
    wait."""

    def __init__(
        self,
        rate: float | None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._monotonic = monotonic
        self._sleep = sleep

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = self._monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)


class Breaker:
    """A relay's circuit. `threshold` connection attempts failing in a row open it: no message is
    tried while it is open, and after each backoff (1 s, doubling up to `max_seconds`) one
    message is let through as a probe. A connection that succeeds closes it. Attempts in flight
    are bounded by the failures still needed to open it, so a relay that is down costs at most
    `threshold` connections however many messages reach it at once."""

    def __init__(
        self,
        threshold: int = 5,
        max_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.threshold = threshold
        self.max_seconds = max_seconds
        self._monotonic = monotonic
        self._wall = wall
        self._failures = 0
        self._backoff = 0.0
        self._retry_at = 0.0
        self._probing = False
        self._connecting = 0  # connection attempts in flight
        self._settled: list[asyncio.Future[None]] = []  # waiting for an attempt in flight to end
        self.down_since: datetime | None = None
        self.error: str | None = None

    @property
    def open(self) -> bool:
        return self._failures >= self.threshold

    def paused_for(self) -> float:
        if not self.open:
            return 0.0
        return max(0.0, self._retry_at - self._monotonic()) or (1.0 if self._probing else 0.0)

    def admit(self) -> bool | None:
        """Whether a message may be tried now: None, not now; True, as the open circuit's probe."""
        if not self.open:
            return False
        if self._probing or self._monotonic() < self._retry_at:
            return None
        self._probing = True
        return True

    async def connecting(self, probe: bool) -> bool:
        """Waits until a connection attempt may start and counts it in flight (end it with
        `attempt_ended`); False: the circuit opened meanwhile, no attempt."""
        if probe:
            self._connecting += 1
            return True
        while not self.open:
            if self._failures + self._connecting < self.threshold:
                self._connecting += 1
                return True
            settled = asyncio.get_running_loop().create_future()
            self._settled.append(settled)
            await settled
        return False

    def attempt_ended(self) -> None:
        self._connecting -= 1
        settled, self._settled = self._settled, []
        for future in settled:
            if not future.done():
                future.set_result(None)

    def failed(self, error: str) -> None:
        self._probing = False
        self._failures += 1
        self.error = error
        if self.open:
            if self.down_since is None:
                self.down_since = self._wall()
                log.warning(
                    "relay unreachable after %d failed connections: %s", self._failures, error
                )
            self._backoff = min(self.max_seconds, self._backoff * 2 if self._backoff else 1.0)
            self._retry_at = self._monotonic() + self._backoff

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.warning("relay reachable again (unreachable since %s)", self.down_since.isoformat())
        self._failures = 0
        self._backoff = 0.0
        self._probing = False
        self.down_since = None
        self.error = None

    def probe_ended(self) -> None:
        """The probe's message is done, whether or not it needed a connection of its own."""
        self._probing = False


class _NotOurs(Exception):
    """`on_wire` said no after the envelope was accepted: the body must not follow."""


class _Phase(StrEnum):
    SESSION = "session"  # connect, TLS, AUTH, MAIL FROM: nothing here is about the recipient
    RECIPIENT = "recipient"  # RCPT TO and the DATA command
    BODY = "body"  # the message and the final dot have been written


class SmtpRelay:
    """A pool of reused SMTP connections to one relay."""

    def __init__(
        self,
        config: RelayConfig,
        pool_size: int = 4,
        rate_per_second: float | None = None,
        timeout: float = 60.0,
        local_hostname: str | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.breaker = breaker or Breaker()
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        self.pool_size = pool_size
        self._slots = asyncio.Semaphore(pool_size)
        self._limiter = RateLimiter(rate_per_second)
        self._all: set[aiosmtplib.SMTP] = set()

    async def _connect(self) -> aiosmtplib.SMTP:
        tls_context = None
        if not self.config.verify_tls:
            tls_context = ssl.create_default_context()
            tls_context.check_hostname = False
            tls_context.verify_mode = ssl.CERT_NONE
        client = aiosmtplib.SMTP(
            hostname=self.config.host,
            port=self.config.port,
            use_tls=self.config.use_tls,
            start_tls=self.config.start_tls,
            validate_certs=self.config.verify_tls,
            tls_context=tls_context,
            username=self.config.username,
            password=self.config.password,
            timeout=self.timeout,
            local_hostname=self.local_hostname,
        )
        await client.connect()
        self._all.add(client)
        return client

    def capacity(self) -> int:
        return self.pool_size

    def paused_for(self) -> float:
        return self.breaker.paused_for()

    def health(self) -> list[RelayHealth]:
        return [RelayHealth(self.config.name, self.breaker.down_since, self.breaker.error)]

    async def send(self, envelope: Envelope) -> Result:
        probe = self.breaker.admit()
        if probe is None:
            return self._paused()
        try:
            result = await self._send(envelope, probe)
        finally:
            if probe:
                self.breaker.probe_ended()
        if probe and result.outcome in (Outcome.SENT, Outcome.BOUNCED):
            self.breaker.succeeded()  # the relay answered (on a connection it already had, say)
        return result

    def _paused(self) -> Result:
        since = self.breaker.down_since
        return Result(
            Outcome.PAUSED,
            None,
            f"relay {self.config.name} unreachable since {since.isoformat() if since else '?'}: "
            f"{self.breaker.error}",
            retry_after=max(self.breaker.paused_for(), 1.0),
        )

    async def _send(self, envelope: Envelope, probe: bool) -> Result:
        await self._limiter.acquire()
        async with self._slots:
            client = None
            while not self._idle.empty():
                candidate = self._idle.get_nowait()
                if candidate.is_connected:
                    client = candidate
                    break
                self._all.discard(candidate)
            phase = [_Phase.SESSION]
            marking: asyncio.Future[bool] | None = None
            try:
                if client is None:
                    if not await self.breaker.connecting(probe):
                        return self._paused()  # it opened while this message waited
                    try:
                        client = await self._connect()
                    except (TimeoutError, SMTPException, OSError) as exc:
                        self.breaker.failed(f"{exc.__class__.__name__}: {exc}")
                        raise
                    finally:
                        self.breaker.attempt_ended()
                    self.breaker.succeeded()
                if envelope.on_wire is not None:
                    # Marked while the envelope's round trip runs; the body waits for the mark.
                    marking = asyncio.ensure_future(envelope.on_wire())
                result = await self._transaction(client, envelope, phase, marking)
            except _NotOurs:
                # Between DATA's 354 and the body: dropping the connection ends the transaction
                # without a message (RFC 5321 4.1.1.4: no final dot, nothing is delivered).
                self._discard(client)
                return NOT_OURS
            except SMTPRecipientsRefused as exc:
                refused = next(iter(exc.recipients))
                result = _classify(refused.code, refused.message)
            except SMTPResponseException as exc:
                if phase[-1] is _Phase.SESSION:
                    # The relay refused us (login, TLS, our sender), not this recipient: a bounce
                    # here would suppress every contact of the campaign. Retry later instead.
                    self._discard(client)
                    client = None
                    result = Result(
                        Outcome.DEFERRED, exc.code, f"relay refused the session: {exc.message}"
                    )
                else:
                    result = _classify(exc.code, exc.message)
            except (TimeoutError, SMTPException, OSError) as exc:
                self._discard(client)
                client = None
                if phase[-1] is _Phase.BODY:
                    # The whole message was written; whether the relay took it we cannot know.
                    result = Result(
                        Outcome.UNKNOWN, None, f"connection lost after the message was sent: {exc}"
                    )
                else:
                    result = Result(
                        Outcome.DEFERRED,
                        None,
                        f"connection failed before the message was complete: {exc}",
                    )
            if marking is not None and not await marking:
                # Refused or failed before the body: the row was not ours to answer for.
                result = NOT_OURS
            if client is not None:
                if result.outcome is not Outcome.SENT and client.is_connected:
                    try:
                        await client.rset()
                    except (TimeoutError, SMTPException, OSError):
                        self._discard(client)
                        client = None
                if client is not None and client.is_connected:
                    self._idle.put_nowait(client)
            return result

    async def _transaction(
        self,
        client: aiosmtplib.SMTP,
        envelope: Envelope,
        phase: list[_Phase],
        marking: asyncio.Future[bool] | None = None,
    ) -> Result:
        if client.is_ehlo_or_helo_needed:  # what aiosmtplib's mail() does first
            try:
                await client.ehlo()
            except SMTPHeloError:
                await client.helo()
        if _SIMPLE_ADDRESS.match(envelope.sender) and _SIMPLE_ADDRESS.match(envelope.recipient):
            # Plain ASCII addresses (every VERP sender, nearly every recipient) are written as they
            # are, without aiosmtplib's parse of each address by the email package; the rest
            # (SMTPUTF8) goes through its mail()/rcpt().
            mail = b"MAIL FROM:<" + envelope.sender.encode() + b">"
            rcpt = b"RCPT TO:<" + envelope.recipient.encode() + b">"
            if client.supports_extension("pipelining"):
                start = await self._pipelined(client, mail, rcpt, phase)
            else:
                await _command(client, mail, (250,))
                phase.append(_Phase.RECIPIENT)
                await _command(client, rcpt, RECIPIENT_TAKEN)
                start = await client.execute_command(b"DATA")
        else:
            utf8 = not (envelope.sender.isascii() and envelope.recipient.isascii())
            if utf8 and not client.supports_extension("smtputf8"):
                return Result(
                    Outcome.FAILED,
                    None,
                    "the relay does not accept internationalised addresses (SMTPUTF8)",
                )
            encoding = "utf-8" if utf8 else "ascii"
            await client.mail(
                envelope.sender, options=["SMTPUTF8"] if utf8 else None, encoding=encoding
            )
            phase.append(_Phase.RECIPIENT)
            try:
                await client.rcpt(envelope.recipient, encoding=encoding)
            except SMTPRecipientRefused as exc:  # aiosmtplib takes 250 and 251 only
                if exc.code not in RECIPIENT_TAKEN:
                    raise
            start = await client.execute_command(b"DATA")
        if start.code != 354:
            return _classify(start.code, start.message)
        if marking is not None and not await marking:
            raise _NotOurs
        phase.append(_Phase.BODY)
        response = await _send_body(client, envelope.data, self.timeout, envelope.wire_ready)
        return _classify(response.code, response.message)

    async def _pipelined(
        self, client: aiosmtplib.SMTP, mail: bytes, rcpt: bytes, phase: list[_Phase]
    ) -> SMTPResponse:
        """RFC 2920 (PIPELINING, which nearly every relay offers): MAIL, RCPT and DATA in one
        write and their three replies read in order, two round trips a message instead of four.
        Every reply is read before anything
        is decided, so the connection is never left with one unread. Returns the reply that
        decides whether the body follows, as DATA's does one command at a time: DATA's, or the
        recipient's refusal; the sender refused is the relay refusing us (raised, in the
        session's phase: see `send`). A relay that answers DATA with 354 after refusing the
        sender or the recipient gets the final dot at once (an empty message for nobody)."""
        replies = write_expecting(client, b"%s\r\n%s\r\nDATA\r\n" % (mail, rcpt), 3)
        to_mail = await replies.reply(self.timeout)
        to_rcpt = await replies.reply(self.timeout)
        to_data = await replies.reply(self.timeout)
        refused = to_mail.code != 250 or to_rcpt.code not in RECIPIENT_TAKEN
        if refused and to_data.code == 354:
            await write_expecting(client, b".\r\n", 1).reply(self.timeout)
        if to_mail.code != 250:
            raise SMTPResponseException(to_mail.code, to_mail.message)
        phase.append(_Phase.RECIPIENT)
        return to_rcpt if refused else to_data

    def _discard(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None:
            self._all.discard(client)
            client.close()

    async def close(self) -> None:
        for client in list(self._all):
            try:
                if client.is_connected:
                    await client.quit()
            except (TimeoutError, SMTPException, OSError):
                client.close()
        self._all.clear()


# A dot-atom local part (RFC 5322 atext) at a plain domain name.
_SIMPLE_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+$", re.ASCII)


# Replies to RCPT that take the recipient: 250, 251 (will forward) and 252 (cannot verify the
# user, will take the message and try). Anything else is that recipient's outcome, and no body
# follows; a 252 taken for an outcome was once counted as sent with no message written.
RECIPIENT_TAKEN = (250, 251, 252)


async def _command(
    client: aiosmtplib.SMTP, command: bytes, accept: tuple[int, ...]
) -> SMTPResponse:
    response = await client.execute_command(command)
    if response.code not in accept:
        raise SMTPResponseException(response.code, response.message)
    return response


def wire_body(data: bytes, wire_ready: bool = False) -> bytes:
    """The message as DATA sends it: CRLF line endings, leading dots doubled, the final dot.
    The messages built here are CRLF with no leading dot already (`wire_ready`: known to be, so
    neither counted nor searched); counting is much cheaper than aiosmtplib's regex
    normalisation, which is kept for anything else."""
    if wire_ready and data.endswith(b"\r\n"):
        return data + b".\r\n"
    pairs = data.count(b"\r\n")
    if data.count(b"\n") != pairs or data.count(b"\r") != pairs or not data.endswith(b"\r\n"):
        data = normalize_message_line_endings(data)
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"


async def _send_body(
    client: aiosmtplib.SMTP, data: bytes, timeout: float, wire_ready: bool = False
) -> SMTPResponse:
    """The message and the final dot after a 354. Split from DATA so a lost connection here is
    told apart from one before the relay agreed to take a message."""
    return await write_expecting(client, wire_body(data, wire_ready), 1).reply(timeout)


def _classify(code: int, message: str) -> Result:
    if 200 <= code < 300:
        return Result(Outcome.SENT, code, message)
    if 400 <= code < 500:
        return Result(Outcome.DEFERRED, code, message)
    return Result(Outcome.BOUNCED, code, message)


class Router:
    """Chooses the relay by the sender's domain; everything else goes to the default."""

    def __init__(self, default: Transport, routes: dict[str, Transport] | None = None) -> None:
        self.default = default
        self.routes = {domain.lower(): transport for domain, transport in (routes or {}).items()}

    async def send(self, envelope: Envelope) -> Result:
        return await self.routes.get(envelope.sender_domain.lower(), self.default).send(envelope)

    def _all(self) -> list[Transport]:
        return list({id(t): t for t in [self.default, *self.routes.values()]}.values())

    def capacity(self) -> int:
        return sum(t.capacity() for t in self._all())

    def paused_for(self) -> float:
        return min(t.paused_for() for t in self._all())

    def health(self) -> list[RelayHealth]:
        return [h for t in self._all() for h in t.health()]

    async def close(self) -> None:
        for transport in self._all():
            await transport.close()
