"""The SMTP transport against real aiosmtpd relays on loopback: TLS, AUTH, connection reuse,
routing, and what each kind of failure means for the recipient."""

from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcast.delivery.transport import (
    Envelope,
    FileOutbox,
    Outcome,
    RateLimiter,
    RelayConfig,
    Router,
    SmtpRelay,
)
from tests.smtpserver import RecordingHandler, self_signed_context

MESSAGE = (
    b"From: a@news.example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n.leading dot\r\n"
)


def envelope(rcpt: str = "b@example.org", domain: str = "news.example.com") -> Envelope:
    return Envelope(
        sender=f"bounces+x@{domain}", recipient=rcpt, data=MESSAGE, sender_domain=domain
    )


async def _serve(handler, **server_kwargs) -> tuple[asyncio.AbstractServer, int, list]:
    sessions = []
    ssl_context = server_kwargs.pop("ssl", None)

    def factory():
        server = SMTPServer(handler, hostname="relay.test", **server_kwargs)
        sessions.append(server)
        return server

    server = await asyncio.get_running_loop().create_server(
        factory, "127.0.0.1", 0, ssl=ssl_context
    )
    return server, server.sockets[0].getsockname()[1], sessions


def _auth(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"mailer",
        b"s3cret",
    )
    return AuthResult(success=ok, handled=False)


async def test_starttls_and_auth():
    handler = RecordingHandler()
    server, port, _ = await _serve(
        handler,
        tls_context=self_signed_context(),
        require_starttls=True,
        authenticator=_auth,
        auth_require_tls=True,
    )
    try:
        good = SmtpRelay(
            RelayConfig.from_url(
                f"smtp://mailer:s3cret@127.0.0.1:{port}?starttls=true&verify=false"
            )
        )
        assert (await good.send(envelope())).outcome is Outcome.SENT
        await good.close()
        assert handler.messages[0].data.endswith(
            b".leading dot\r\n"
        )  # dot-stuffing undone by the server
        bad = SmtpRelay(
            RelayConfig.from_url(
                f"smtp://mailer:wrong@127.0.0.1:{port}?starttls=true&verify=false"
            ),
            timeout=10,
        )
        result = await bad.send(envelope())
        await bad.close()
        # A refused login is the relay refusing us, not the recipient: retry, never bounce.
        assert result.outcome is Outcome.DEFERRED and result.code == 535
    finally:
        server.close()


async def test_implicit_tls():
    handler = RecordingHandler()
    server, port, _ = await _serve(handler, ssl=self_signed_context())
    try:
        relay = SmtpRelay(RelayConfig.from_url(f"smtps://127.0.0.1:{port}?verify=false"))
        assert (await relay.send(envelope())).outcome is Outcome.SENT
        await relay.close()
    finally:
        server.close()
    assert len(handler.messages) == 1


class Misbehaving(RecordingHandler):
    def __init__(self, mode: str, pipelining: bool = True) -> None:
        super().__init__(pipelining=pipelining)
        self.mode = mode

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mode == "refuse-sender":
            return "550 5.7.1 sender not allowed"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "drop-at-rcpt":
            server.transport.close()
            return "250 OK"
        if self.mode == "cannot-verify":
            envelope.rcpt_tos.append(address)
            return "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        if self.mode == "drop-after-dot":
            await super().handle_DATA(server, session, envelope)
            server.transport.close()  # the message arrived; the reply never does
            return "250 OK"
        if self.mode == "reject-body":
            return "554 5.7.1 content rejected"
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize(
    "mode,outcome",
    [
        ("drop-at-rcpt", Outcome.DEFERRED),  # before the message was complete: safe to retry
        ("drop-after-dot", Outcome.UNKNOWN),  # after: it may have been taken (sent again, in doubt)
        ("refuse-sender", Outcome.DEFERRED),  # our sender refused: not the recipient's fault
        ("reject-body", Outcome.BOUNCED),
    ],
)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-command-at-a-time"])
async def test_failures_by_phase(mode, outcome, pipelining):
    handler = Misbehaving(mode, pipelining)
    server, port, _ = await _serve(handler)
    try:
        relay = SmtpRelay(RelayConfig.from_url(f"smtp://127.0.0.1:{port}"), timeout=5)
        result = await relay.send(envelope())
        after = await relay.send(envelope("after@example.org"))  # the next message, same relay
        await relay.close()
    finally:
        server.close()
    assert result.outcome is outcome, result
    # The next message meets the same answer: no reply of the first was left unread to be taken
    # for one of the second's.
    assert after.outcome is outcome, after
    assert handler.messages == [] if mode != "drop-after-dot" else len(handler.messages) == 2


@pytest.mark.parametrize(
    "rcpt", ["plain@example.org", "jörg@example.org"], ids=["ascii", "smtputf8"]
)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-command-at-a-time"])
async def test_a_recipient_the_relay_cannot_verify_gets_the_message(rcpt, pipelining):
    """252 to RCPT takes the recipient: the message is written and sent, not called sent
    unwritten."""
    handler = Misbehaving("cannot-verify", pipelining)
    server, port, _ = await _serve(handler, enable_SMTPUTF8=True)
    try:
        relay = SmtpRelay(RelayConfig.from_url(f"smtp://127.0.0.1:{port}"), timeout=5)
        results = [await relay.send(envelope(rcpt)), await relay.send(envelope(rcpt))]
        await relay.close()
    finally:
        server.close()
    assert [r.outcome for r in results] == [Outcome.SENT] * 2 and results[0].code == 250, results
    assert [m.rcpt_to for m in handler.messages] == [rcpt] * 2
    assert handler.messages[0].data.endswith(b"\r\n.leading dot\r\n")


async def _read_body(reader: asyncio.StreamReader) -> bytes:
    """A message after 354, up to and with its final dot (or what came before the connection
    ended)."""
    lines = [await reader.readline()]
    while lines[-1] not in (b".\r\n", b""):
        lines.append(await reader.readline())
    return b"".join(lines)


class ScriptedRelay:
    """A relay on loopback that answers a pipelined group the way a given real server might:
    all its replies in one write, or each in a write of its own some time after the last. It
    refuses to answer anything before it has the whole group (MAIL, RCPT and DATA), so a client
    that waits for each reply before the next command would hang."""

    def __init__(self, replies: tuple[bytes, bytes, bytes], split: float | None) -> None:
        self.replies, self.split = replies, split
        self.bodies: list[bytes] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        while True:
            first = await reader.readline()
            if not first or first.startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                break
            group = [first, await reader.readline(), await reader.readline()]
            assert [line.split(b":")[0] for line in group] == [
                b"MAIL FROM",
                b"RCPT TO",
                b"DATA\r\n",
            ], group
            if self.split is None:
                writer.write(b"".join(self.replies))
            else:
                for reply in self.replies:
                    writer.write(reply)
                    await writer.drain()
                    await asyncio.sleep(self.split)
            if self.replies[2].startswith(b"354"):
                body = await _read_body(reader)
                if self.replies[1].startswith(b"250"):
                    self.bodies.append(body)
                writer.write(
                    b"250 2.0.0 queued\r\n"
                    if self.replies[1].startswith(b"250")
                    else b"554 no recipients\r\n"
                )
            rset = await reader.readline() if not self.replies[1].startswith(b"250") else None
            if rset is not None:
                assert rset == b"RSET\r\n", rset
                writer.write(b"250 reset\r\n")
            await writer.drain()
        writer.close()


@pytest.mark.parametrize("split", [None, 0, 0.001], ids=["one-write", "back-to-back", "apart"])
@pytest.mark.parametrize(
    "replies,outcome",
    [
        ((b"250 ok\r\n", b"250 ok\r\n", b"354 go on\r\n"), Outcome.SENT),
        (
            (
                b"250 ok\r\n",
                b"550-5.1.1 no such\r\n550 5.1.1 user\r\n",
                b"554 no valid recipients\r\n",
            ),
            Outcome.BOUNCED,
        ),
        ((b"250 ok\r\n", b"451 4.7.1 later\r\n", b"554 no valid recipients\r\n"), Outcome.DEFERRED),
        # a relay that takes DATA although it refused the recipient: ended empty, reported as
        # refused
        ((b"250 ok\r\n", b"550 5.1.1 unknown\r\n", b"354 go on\r\n"), Outcome.BOUNCED),
    ],
    ids=["sent", "refused", "deferred", "data-despite-refusal"],
)
async def test_pipelined_replies_are_read_in_order_however_they_arrive(replies, outcome, split):
    scripted = ScriptedRelay(replies, split)
    port = await scripted.start()
    try:
        relay = SmtpRelay(RelayConfig.from_url(f"smtp://127.0.0.1:{port}"), pool_size=1, timeout=5)
        results = [
            await relay.send(envelope(f"r{i}@example.org")) for i in range(20)
        ]  # one connection
        await relay.close()
    finally:
        scripted.server.close()
    assert [r.outcome for r in results] == [outcome] * 20, results[0]
    assert len(scripted.bodies) == (20 if outcome is Outcome.SENT else 0)
    if outcome is Outcome.SENT:
        assert all(
            body.endswith(b".leading dot\r\n.\r\n") for body in scripted.bodies
        )  # dot-stuffed


class SilentRelay:
    """A pipelining relay whose first connection stops answering at one point (`after`:
    "group", once it has MAIL, RCPT and DATA; "body", once it has the final dot) and whose later
    connections answer everything."""

    def __init__(self, after: str) -> None:
        self.after = after
        self.connections = 0
        self.bodies: list[bytes] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        silent = self.connections == 1
        writer.write(b"220 silent ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-silent\r\n250 PIPELINING\r\n")
        while (first := await reader.readline()) and not first.startswith(b"QUIT"):
            await reader.readline()  # RCPT
            await reader.readline()  # DATA
            if silent and self.after == "group":
                await reader.read()  # the client's timeout ends the connection
                return
            writer.write(b"250 ok\r\n250 ok\r\n354 go on\r\n")
            self.bodies.append(await _read_body(reader))
            if silent:
                await reader.read()
                return
            writer.write(b"250 2.0.0 queued\r\n")
        writer.write(b"221 bye\r\n")
        writer.close()


@pytest.mark.parametrize("after,outcome", [("group", Outcome.DEFERRED), ("body", Outcome.UNKNOWN)])
async def test_a_relay_that_stops_answering_times_out_and_the_next_message_goes_on_a_new_connection(
    after, outcome
):
    silent = SilentRelay(after)
    port = await silent.start()
    try:
        relay = SmtpRelay(
            RelayConfig.from_url(f"smtp://127.0.0.1:{port}"), pool_size=1, timeout=0.3
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        first = await asyncio.wait_for(relay.send(envelope("r1@example.org")), 10)
        waited = loop.time() - began
        second = await relay.send(envelope("r2@example.org"))
        await relay.close()
    finally:
        silent.server.close()
    # Silence before the body: nothing was delivered, tried again later. Silence after the final
    # dot: the relay may have it (RFC 1047).
    assert first.outcome is outcome, first
    assert 0.3 <= waited < 5
    assert second.outcome is Outcome.SENT and silent.connections == 2
    assert len(silent.bodies) == (2 if after == "body" else 1)


async def test_connections_are_pooled_and_reused():
    handler = RecordingHandler()
    handler.reject = {"r3@example.org"}
    server, port, sessions = await _serve(handler)
    try:
        relay = SmtpRelay(RelayConfig.from_url(f"smtp://127.0.0.1:{port}"), pool_size=2)
        results = await asyncio.gather(
            *(relay.send(envelope(f"r{i}@example.org")) for i in range(60))
        )
        await relay.close()
    finally:
        server.close()
    assert [r.outcome for r in results].count(Outcome.BOUNCED) == 1
    assert len(handler.messages) == 59
    assert len(sessions) <= 2  # two connections carried all sixty (a refusal does not cost one)


async def test_router_picks_the_relay_by_sender_domain(tmp_path):
    a, b = RecordingHandler(), RecordingHandler()
    server_a, port_a, _ = await _serve(a)
    server_b, port_b, _ = await _serve(b)
    try:
        router = Router(
            SmtpRelay(RelayConfig.from_url(f"smtp://127.0.0.1:{port_a}")),
            {"Brand.example": SmtpRelay(RelayConfig.from_url(f"smtp://127.0.0.1:{port_b}"))},
        )
        await router.send(envelope(domain="news.example.com"))
        await router.send(envelope(domain="brand.example"))
        await router.close()
    finally:
        server_a.close()
        server_b.close()
    assert len(a.messages) == 1 and len(b.messages) == 1
    assert b.messages[0].mail_from == "bounces+x@brand.example"


async def test_rate_limit_holds_over_a_minute():
    virtual = [0.0]

    async def sleep(seconds: float) -> None:
        virtual[0] += seconds

    limiter = RateLimiter(50, monotonic=lambda: virtual[0], sleep=sleep)
    for _ in range(3000):  # one minute's worth at 50/s
        await limiter.acquire()
    assert 59.0 <= virtual[0] <= 60.0
    # Waiting senders do not get a burst afterwards: the next slot is one interval later.
    before = virtual[0]
    await limiter.acquire()
    assert virtual[0] - before == pytest.approx(0.02)


class _Loopback(asyncio.Transport):
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class _Inner(asyncio.Protocol):
    """Stands for aiosmtplib's protocol: what it would be handed."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.received.append(data)


async def test_a_reply_that_arrives_before_the_one_ahead_of_it_was_taken_is_not_lost():
    # The second reply of a pipelined group arrives (the loop's next read) before the sender has
    # taken the first: made to happen here. The worker's loop (uvloop) meets it all the time with
    # a relay that writes each reply apart (aiosmtpd does). aiosmtplib's protocol alone drops
    # such a reply (one reply per command is all it expects), and the sender would wait for one
    # that never comes.
    from mailcast.delivery.pipelining import Replies

    inner = _Inner()
    replies = Replies(inner, _Loopback())
    replies.expect(3)  # as before the group's write

    async def three() -> list:
        return [await replies.reply(1) for _ in range(3)]

    reader = asyncio.create_task(three())
    await asyncio.sleep(0)
    replies.data_received(b"250 2.1.0 sender ok\r\n")
    replies.data_received(b"250 2.1.5 recipient ok\r\n")  # before the reader took the first
    await asyncio.sleep(0)
    replies.data_received(b"354 go on\r\n")
    assert [(r.code, r.message) for r in await reader] == [
        (250, "2.1.0 sender ok"),
        (250, "2.1.5 recipient ok"),
        (354, "go on"),
    ]
    # The group taken, what arrives is the library's again (a reply to its RSET, say).
    replies.data_received(b"250 2.0.0 reset\r\n")
    assert inner.received == [b"250 2.0.0 reset\r\n"]


async def test_a_garbled_reply_fails_the_exchange_and_hands_the_connection_back():
    from aiosmtplib import SMTPResponseException

    from mailcast.delivery.pipelining import Replies

    inner = _Inner()
    replies = Replies(inner, _Loopback())
    replies.expect(1)
    replies.data_received(b"what is this\r\n")
    with pytest.raises(SMTPResponseException) as raised:
        await replies.reply(1)
    assert raised.value.code == -1  # what aiosmtplib gives a reply it cannot parse
    replies.data_received(b"250 ok\r\n")
    assert inner.received == [b"250 ok\r\n"]


@pytest.mark.parametrize(
    "chunks,expected",
    [
        ([b"250 ok\r\n"], [(250, "ok")]),
        ([b"250-first\r\n250-second\r\n250 last\r\n"], [(250, "first\nsecond\nlast")]),
        ([b"25", b"0 o", b"k\r\n354 go\r", b"\n"], [(250, "ok"), (354, "go")]),
        ([b"550-5.1.1 no\r\n", b"550 5.1.1 such user\r\n"], [(550, "5.1.1 no\n5.1.1 such user")]),
    ],
    ids=["one-line", "multiline", "split-anywhere", "multiline-apart"],
)
async def test_replies_are_parsed_however_the_bytes_arrive(chunks, expected):
    from mailcast.delivery.pipelining import Replies

    replies = Replies(_Inner(), _Loopback())
    replies.expect(len(expected))
    for chunk in chunks:
        replies.data_received(chunk)
    assert [tuple(await replies.reply(1)) for _ in expected] == expected


def test_pipelining_works_on_uvloop_too():
    # The worker's event loop: its transports take the protocol swap (`set_protocol`) as well.
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[list[Outcome], int]:
        handler = RecordingHandler()
        server, port, _ = await _serve(handler)
        try:
            relay = SmtpRelay(RelayConfig.from_url(f"smtp://127.0.0.1:{port}"), pool_size=1)
            results = [await relay.send(envelope(f"u{i}@example.org")) for i in range(10)]
            await relay.close()
        finally:
            server.close()
        return [r.outcome for r in results], len(handler.messages)

    outcomes, received = uvloop.run(main())
    assert outcomes == [Outcome.SENT] * 10
    assert received == 10


def test_relay_urls():
    c = RelayConfig.from_url("smtp://us%40er:p%3Ass@mail.example.com:587?starttls=true")
    assert (c.host, c.port, c.username, c.password, c.start_tls, c.use_tls) == (
        "mail.example.com",
        587,
        "us@er",
        "p:ss",
        True,
        False,
    )
    assert RelayConfig.from_url("smtps://relay.example").port == 465
    with pytest.raises(ValueError):
        RelayConfig.from_url("http://relay.example")


async def test_file_outbox_writes_complete_files(tmp_path):
    outbox = FileOutbox(tmp_path / "out")
    assert (await outbox.send(envelope())).outcome is Outcome.SENT
    files = list((tmp_path / "out").iterdir())
    assert len(files) == 1 and files[0].suffix == ".eml" and files[0].read_bytes().endswith(MESSAGE)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=64)
    | st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b".."]), max_size=20).map(
        b"".join
    )
)
def test_wire_body_is_what_aiosmtplib_would_send(data):
    # The fast path must send exactly what the library's own DATA writes.
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    from mailcast.delivery.transport import wire_body

    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    assert wire_body(data) == expected
    if (
        data.count(b"\r\n") == data.count(b"\n") == data.count(b"\r")
        and not data.startswith(b".")
        and b"\n." not in data
    ):  # what the sender marks as ready for the wire
        assert wire_body(data, wire_ready=True) == expected


async def test_non_ascii_recipients_still_go_through_the_library():
    # SMTPUTF8 addresses take aiosmtplib's own mail()/rcpt(); plain ones the direct commands.
    handler = RecordingHandler()
    server, port, _ = await _serve(handler, enable_SMTPUTF8=True)
    transport = SmtpRelay(RelayConfig("127.0.0.1", port), pool_size=1)
    try:
        for rcpt in ("plain.name+tag@example.org", "jörg@example.org"):
            result = await transport.send(envelope(rcpt))
            assert result.outcome is Outcome.SENT, result
    finally:
        await transport.close()
        server.close()
    assert [m.rcpt_to for m in handler.messages] == [
        "plain.name+tag@example.org",
        "jörg@example.org",
    ]
    assert [m.mail_from for m in handler.messages] == ["bounces+x@news.example.com"] * 2
    assert handler.messages[-1].data.endswith(b"\r\n.leading dot\r\n")


async def test_internationalised_address_without_smtputf8_fails_that_recipient_only(relay):
    transport = SmtpRelay(RelayConfig("127.0.0.1", relay.port), pool_size=1)
    try:
        refused = await transport.send(envelope("jörg@example.org"))
        sent = await transport.send(envelope("plain@example.org"))  # the connection is still good
    finally:
        await transport.close()
    assert refused.outcome is Outcome.FAILED and "SMTPUTF8" in refused.message
    assert sent.outcome is Outcome.SENT
    assert [m.rcpt_to for m in relay.handler.messages] == ["plain@example.org"]


def test_a_relay_url_never_shows_its_password():
    for url in (
        "smtp://mailer:s3cret@relay.example:notaport",
        "http://mailer:s3cret@relay.example",
    ):
        with pytest.raises(ValueError) as refused:
            RelayConfig.from_url(url)
        assert "s3cret" not in str(refused.value) and "mailer:***@" in str(refused.value)
    assert "s3cret" not in repr(RelayConfig.from_url("smtp://mailer:s3cret@relay.example:587"))


async def test_credentials_never_cross_a_connection_without_tls():
    """A relay that does not offer STARTTLS (or one whose offer was stripped on the way) never
    gets the password: with credentials STARTTLS is required unless the URL says starttls=false."""
    handler = RecordingHandler()
    logins = []

    def record(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data)
        return AuthResult(success=True, handled=False)

    server, port, _ = await _serve(handler, authenticator=record, auth_require_tls=False)
    try:
        relay = SmtpRelay(
            RelayConfig.from_url(f"smtp://mailer:s3cret@127.0.0.1:{port}"), timeout=10
        )
        result = await relay.send(envelope())
        await relay.close()
        assert result.outcome is Outcome.DEFERRED and "STARTTLS" in result.message.upper()
        assert logins == [] and handler.messages == []
        knowingly = SmtpRelay(
            RelayConfig.from_url(f"smtp://mailer:s3cret@127.0.0.1:{port}?starttls=false")
        )
        assert (await knowingly.send(envelope())).outcome is Outcome.SENT
        await knowingly.close()
        assert len(logins) == 1
    finally:
        server.close()


class Ticking:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_relay_that_is_down_is_paused_and_probed_until_it_answers():
    from mailcast.delivery.transport import Breaker
    from tests.smtpserver import LoopbackRelay

    server = await LoopbackRelay().start()
    await server.kill()  # the port is known and nothing listens on it
    ticks = Ticking()
    relay = SmtpRelay(
        RelayConfig.from_url(server.url), pool_size=2, breaker=Breaker(3, 8.0, monotonic=ticks)
    )
    assert relay.health()[0].down_since is None and relay.paused_for() == 0
    tried = [await relay.send(envelope(f"r{i}@example.org")) for i in range(3)]
    assert [r.outcome for r in tried] == [Outcome.DEFERRED] * 3  # each one a failed connection
    health = relay.health()[0]
    assert health.relay == f"127.0.0.1:{server.port}" and health.down_since is not None
    assert "Connect" in health.error or "refused" in health.error.lower()
    # Open: nothing is tried, however many wait; each is told when the relay is tried again.
    paused = await asyncio.gather(*(relay.send(envelope(f"w{i}@example.org")) for i in range(20)))
    assert {r.outcome for r in paused} == {Outcome.PAUSED} and paused[0].retry_after == 1.0
    assert "unreachable since" in paused[0].message and relay.paused_for() == 1.0
    # The probe after 1 s fails: the wait doubles, up to the maximum.
    ticks.now += 1
    assert (await relay.send(envelope("probe1@example.org"))).outcome is Outcome.DEFERRED
    assert relay.paused_for() == 2.0
    for wait in (2, 4, 8):
        ticks.now += wait
        await relay.send(envelope("probe@example.org"))
    assert relay.paused_for() == 8.0  # the maximum
    # The relay is back: the next probe goes through and closes the circuit.
    await server.start()
    try:
        assert (await relay.send(envelope("early@example.org"))).outcome is Outcome.PAUSED
        ticks.now += 8
        assert (await relay.send(envelope("probe2@example.org"))).outcome is Outcome.SENT
        assert relay.health()[0].down_since is None and relay.paused_for() == 0
        after = await asyncio.gather(
            *(relay.send(envelope(f"a{i}@example.org")) for i in range(10))
        )
        assert {r.outcome for r in after} == {Outcome.SENT}
        assert server.handler.messages[0].rcpt_to == "probe2@example.org"
        assert sorted(m.rcpt_to for m in server.handler.messages[1:]) == sorted(
            f"a{i}@example.org" for i in range(10)
        )
    finally:
        await relay.close()
        await server.stop()


async def test_a_failing_relay_costs_no_more_connections_than_open_its_circuit():
    """Messages that reach a failing relay do not each start a connection while earlier ones
    are failing: only as many attempts are in flight as the circuit still needs to open, however
    the messages arrive (all at once, or one after another as a sender renders them)."""
    from mailcast.delivery.transport import Breaker

    accepted = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()  # no greeting: the SMTP session fails

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relays = [
        SmtpRelay(
            RelayConfig.from_url(f"smtp://127.0.0.1:{port}"),
            pool_size=8,
            breaker=Breaker(3, 8.0, monotonic=Ticking()),
        )
        for _ in range(2)
    ]
    try:
        sends = []
        for i in range(40):
            sends.append(asyncio.create_task(relays[0].send(envelope(f"r{i}@example.org"))))
            await asyncio.sleep(0)  # one message at a time, as a sender hands them over
        outcomes = [r.outcome for r in await asyncio.gather(*sends)]
        assert outcomes.count(Outcome.DEFERRED) == accepted == 3
        assert outcomes.count(Outcome.PAUSED) == 37

        accepted = 0
        at_once = [relays[1].send(envelope(f"w{i}@example.org")) for i in range(40)]
        outcomes = [r.outcome for r in await asyncio.gather(*at_once)]
        assert outcomes.count(Outcome.DEFERRED) == accepted == 3
    finally:
        for relay in relays:
            await relay.close()
        server.close()
        await server.wait_closed()
