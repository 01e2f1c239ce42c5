"""The bounce and feedback listener over real SMTP, and how reports are classified."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP as SMTPServer

from mailcast.delivery.tokens import TokenCodec
from mailcast.tracking.bounces import BounceHandler, classify


def _dsn(rcpt: str, action: str, status: str) -> bytes:
    return (
        f"From: MAILER-DAEMON@relay.example\r\nTo: {rcpt}\r\nSubject: Undelivered "
        "Mail\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; t0@example.org\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status[0]}50 mailbox unavailable\r\n\r\n--B--\r\n"
    ).encode()


def _arf(rcpt: str) -> bytes:
    return (
        f"From: fbl@isp.example\r\nTo: {rcpt}\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: "
        "fbl/1\r\n"
        "Version: 1\r\n\r\n--F--\r\n"
    ).encode()


async def test_bounce_listener_over_smtp(tenant, sent, sessions, settings, clock):
    campaign, links = sent
    handler = BounceHandler(sessions, TokenCodec(settings.secret()), clock)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTPServer(handler), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:

        async def deliver(rcpt: str, raw: bytes) -> None:
            await aiosmtplib.send(
                raw,
                sender="mailer-daemon@relay.example",
                recipients=[rcpt],
                hostname="127.0.0.1",
                port=port,
            )

        await deliver(
            links["t0@example.org"]["bounce_to"],
            _dsn(links["t0@example.org"]["bounce_to"], "failed", "5.1.1"),
        )
        await deliver(
            links["t1@example.org"]["bounce_to"],
            _dsn(links["t1@example.org"]["bounce_to"], "delayed", "4.4.1"),
        )
        await deliver(
            links["t1@example.org"]["bounce_to"], _arf(links["t1@example.org"]["bounce_to"])
        )
        await deliver(links["t2@example.org"]["mailto"], b"Subject: unsubscribe\r\n\r\nplease\r\n")
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await deliver("bounces+forged@news.example.com", _dsn("x", "failed", "5.1.1"))
    finally:
        server.close()
        await server.wait_closed()

    stats = (await tenant.get(f"/v1/campaigns/{campaign['id']}/stats")).json()
    assert (
        stats["sent"],
        stats["bounced"],
        stats["delivered"],
        stats["complained"],
        stats["unsubscribed"],
    ) == (3, 1, 2, 1, 1)
    contacts = {c["email"]: c for c in (await tenant.get("/v1/contacts")).json()["data"]}
    assert (
        contacts["t0@example.org"]["suppressed"] and not contacts["t0@example.org"]["unsubscribed"]
    )
    assert contacts["t1@example.org"]["suppressed"]  # the complaint, not the delay
    assert (
        contacts["t2@example.org"]["unsubscribed"] and not contacts["t2@example.org"]["suppressed"]
    )


def test_classify_reports():
    assert classify(_dsn("a", "failed", "5.1.1")).kind == "bounce"
    assert classify(_dsn("a", "delayed", "4.4.1")).kind == "delay"
    assert classify(_arf("a")).kind == "complaint"
    plain = EmailMessage()
    plain.set_content("out of office")
    assert classify(plain.as_bytes()).kind == "other"
