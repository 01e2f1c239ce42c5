"""A real SMTP relay on loopback (aiosmtpd) that records what it receives and can refuse,
defer or drop on cue. It offers PIPELINING unless told not to (aiosmtpd reads commands one
line at a time, so commands written together are simply answered in order)."""

from __future__ import annotations

import asyncio
import email
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from email.policy import default

from aiosmtpd.smtp import SMTP as SMTPServer


@dataclass
class Received:
    mail_from: str
    rcpt_to: str
    data: bytes

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.data, policy=default)


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    pipelining: bool = True  # offer PIPELINING (RFC 2920) as nearly every relay does
    reject: set[str] = field(default_factory=set)  # 550 at RCPT
    defer_once: set[str] = field(default_factory=set)  # 451 at RCPT the first time
    _deferred: set[str] = field(default_factory=set)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return f"550 5.1.1 <{address}>: user unknown"
        if address in self.defer_once and address not in self._deferred:
            self._deferred.add(address)
            return "451 4.7.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            self.messages.append(
                Received(envelope.mail_from, rcpt, envelope.original_content or envelope.content)
            )
        return "250 2.0.0 queued"

    def counts(self) -> Counter:
        return Counter(m.rcpt_to for m in self.messages)


class LoopbackRelay:
    def __init__(self, handler: RecordingHandler | None = None) -> None:
        self.handler = handler or RecordingHandler()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> LoopbackRelay:
        """Listens on a new port, or on the one it had (a restart after `kill`)."""
        self._sessions: set[SMTPServer] = set()

        def session() -> SMTPServer:
            protocol = SMTPServer(self.handler, hostname="relay.test", data_size_limit=None)
            self._sessions.add(protocol)
            return protocol

        self.server = await asyncio.get_running_loop().create_server(
            session, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def kill(self) -> None:
        """As if the relay's process died: the port closed, every connection reset at once."""
        self.server.close()
        for protocol in self._sessions:
            if protocol.transport is not None:
                protocol.transport.abort()
        self._sessions.clear()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def self_signed_context():
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    import datetime
    import ipaddress
    import ssl
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    with (
        tempfile.NamedTemporaryFile(suffix=".pem", delete=False) as cert_file,
        tempfile.NamedTemporaryFile(suffix=".key", delete=False) as key_file,
    ):
        cert_file.write(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file.name, key_file.name)
    return context
