"""Our own replies on an aiosmtplib connection: a pipelined group (RFC 2920) and a message body.

aiosmtplib's protocol expects one reply per command it writes itself and drops what arrives
while a parsed reply waits to be taken, which is the normal case for a pipelined group. So the
transaction's replies are read here instead: `Replies` sits between the connection's transport
and aiosmtplib's protocol (asyncio's `transport.set_protocol`). While replies of ours are due,
what arrives is parsed here; otherwise it goes on to aiosmtplib's protocol unchanged, which
keeps the greeting, EHLO, STARTTLS, AUTH, RSET and QUIT. Only public surfaces are used:
`SMTP.protocol`, the protocol's `transport` and `write`, and the asyncio transport."""

from __future__ import annotations

import asyncio
from collections import deque

import aiosmtplib
from aiosmtplib import (
    SMTPReadTimeoutError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPStatus,
)
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

# RFC 5321 4.5.3.1.5 allows 512 octets a reply line; this bounds what a runaway server can make
# us hold, as aiosmtplib bounds it.
MAX_REPLY_BYTES = 32 * 1024
INVALID = SMTPStatus.invalid_response.value  # the code aiosmtplib gives a reply it cannot parse


class Replies(asyncio.Protocol):
    """The replies to what was written with `expect`, in order; everything else is passed on."""

    def __init__(self, inner: SMTPProtocol, transport: asyncio.BaseTransport) -> None:
        self.inner = inner
        self.transport = transport
        self.due = 0  # replies expected and not yet taken
        self._buffer = bytearray()
        self._parsed: deque[SMTPResponse] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None

    def expect(self, replies: int) -> None:
        """Announce `replies` replies to what is written next (before it is written)."""
        if self._error is not None:
            raise self._error
        self.due += replies

    async def reply(self, timeout: float) -> SMTPResponse:
        """The next expected reply."""
        while not self._parsed:
            if self._error is not None:
                error = self._error
                if not isinstance(error, SMTPServerDisconnected):
                    self._reset()  # a garbled reply: the connection's next exchange starts afresh
                raise error
            # The timer fails the waiter itself: one wake-up when the reply comes, where
            # `asyncio.wait_for` adds a callback's turn and a future of its own.
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        self.due -= 1
        return self._parsed.popleft()

    def _reset(self) -> None:
        self.due, self._error = 0, None
        self._buffer.clear()
        self._parsed.clear()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._error = error
        self._wake()

    def data_received(self, data: bytes) -> None:
        if not self.due:
            self.inner.data_received(data)
            return
        self._buffer.extend(data)
        try:
            while len(self._parsed) < self.due and (parsed := parse_reply(self._buffer)):
                self._parsed.append(parsed)
        except SMTPResponseException as exc:
            self._fail(exc)
        if len(self._buffer) > MAX_REPLY_BYTES:
            self._buffer.clear()
            self._fail(SMTPResponseException(INVALID, "Response too long"))
        if self._parsed:
            self._wake()

    def eof_received(self) -> bool | None:
        if self.due:
            self._fail(SMTPServerDisconnected("Unexpected EOF received"))
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        error = SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        self._fail(error)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(SMTPReadTimeoutError("Timed out waiting for server response"))


def parse_reply(buffer: bytearray) -> SMTPResponse | None:
    """The first complete reply in `buffer`, taken out of it; None while it is incomplete. A
    multiline reply's lines are joined with newlines, as aiosmtplib joins them."""
    offset = 0
    lines: list[bytes] = []
    while True:
        end = buffer.find(b"\n", offset)
        if end == -1:
            return None
        line = bytes(buffer[offset : end + 1])
        offset = end + 1
        try:
            code = int(line[:3])
        except ValueError:
            raise SMTPResponseException(
                INVALID, f"Malformed SMTP response line: {line.decode('utf-8', 'replace')}"
            ) from None
        lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            del buffer[:offset]
            return SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape"))


def replies_of(client: aiosmtplib.SMTP) -> Replies:
    """The connection's `Replies`, put in place on first use (and again after a reconnect or
    STARTTLS, which bring a new transport)."""
    protocol = client.protocol
    transport = protocol.transport if protocol is not None else None
    if protocol is None or transport is None or transport.is_closing():
        raise SMTPServerDisconnected("Connection lost")
    current = transport.get_protocol()
    if isinstance(current, Replies) and current.inner is protocol:
        return current
    replies = Replies(protocol, transport)
    transport.set_protocol(replies)
    return replies


def write_expecting(client: aiosmtplib.SMTP, data: bytes, replies: int) -> Replies:
    """Write `data`, whose `replies` replies are then taken with `Replies.reply`, in order."""
    reader = replies_of(client)
    reader.expect(replies)
    assert client.protocol is not None  # checked by replies_of
    client.protocol.write(data)
    return reader
