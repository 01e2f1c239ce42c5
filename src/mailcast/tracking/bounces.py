"""The bounce and feedback-loop listener (`mailcast bounces`): an SMTP server for the VERP
addresses mailcast sends from. Delivery status notifications (RFC 3464) and abuse reports
(RFC 5965, ARF) are recorded against the delivery named by the address's token; a mail to the
List-Unsubscribe mailto address unsubscribes."""

from __future__ import annotations

import email
import logging
from dataclasses import dataclass
from email.message import Message
from email.policy import compat32

from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailcast.clock import Clock
from mailcast.delivery.tokens import Claim, InvalidToken, Purpose, TokenCodec
from mailcast.tracking import service

log = logging.getLogger("mailcast.bounces")


@dataclass
class Report:
    kind: str  # "bounce", "delay", "complaint" or "other"
    diagnostic: str = ""


def _fields(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    # Some writers put the DSN fields in as text; parse the blocks ourselves.
    text = payload if isinstance(payload, str) else ""
    return [
        email.message_from_string(block + "\n", policy=compat32)
        for block in text.replace("\r\n", "\n").split("\n\n")
        if block.strip()
    ]


def classify(raw: bytes) -> Report:
    msg = email.message_from_bytes(raw, policy=compat32)
    if msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").lower()
        for part in msg.walk():
            ctype = part.get_content_type()
            if report_type == "delivery-status" and ctype == "message/delivery-status":
                for block in _fields(part):
                    action = (block.get("Action") or "").strip().lower()
                    status = (block.get("Status") or "").strip()
                    diagnostic = (block.get("Diagnostic-Code") or status).strip()
                    if action == "failed" and status.startswith("5"):
                        return Report("bounce", f"{status} {diagnostic}".strip())
                    if action in ("delayed", "failed"):
                        return Report("delay", f"{status} {diagnostic}".strip())
            if report_type == "feedback-report" and ctype == "message/feedback-report":
                return Report("complaint")
    return Report("other")


def recipient_claim(codec: TokenCodec, address: str) -> Claim | None:
    local = address.rpartition("@")[0].lower()
    prefix, sep, token = local.partition("+")
    purposes = {"bounces": Purpose.BOUNCE, "unsubscribe": Purpose.UNSUBSCRIBE}
    if not sep or prefix not in purposes:
        return None
    try:
        # Local parts are case-insensitive on the way back; tokens are not: try the original case
        # first.
        original = address.rpartition("@")[0].partition("+")[2]
        return codec.decode(original, purposes[prefix])
    except InvalidToken:
        try:
            return codec.decode(token, purposes[prefix])
        except InvalidToken:
            return None


class BounceHandler:
    """aiosmtpd handler."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], codec: TokenCodec, clock: Clock
    ) -> None:
        self.sessions = sessions
        self.codec = codec
        self.clock = clock

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if recipient_claim(self.codec, address) is None:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTPServer, session: SMTPSession, envelope: SMTPEnvelope
    ) -> str:
        try:
            content = envelope.original_content or envelope.content or b""
            if isinstance(content, str):
                content = content.encode("utf-8", "surrogateescape")
            await self.process(envelope.rcpt_tos, content)
        except Exception:
            log.exception("could not record a report")
            return "451 4.3.0 Try again later"
        return "250 OK"

    async def process(self, recipients: list[str], raw: bytes) -> list[str]:
        """What happened, per recipient (for logs and tests)."""
        outcomes = []
        report = classify(raw)
        now = self.clock()
        async with self.sessions() as session:
            for address in recipients:
                claim = recipient_claim(self.codec, address)
                if claim is None:
                    continue
                if claim.purpose is Purpose.UNSUBSCRIBE:
                    await service.unsubscribe_delivery(session, claim.delivery_id, now)
                    outcomes.append("unsubscribe")
                elif report.kind == "bounce":
                    await service.record_bounce(
                        session, claim.delivery_id, True, report.diagnostic, now
                    )
                    outcomes.append("bounce")
                elif report.kind == "complaint":
                    await service.record_complaint(session, claim.delivery_id, now)
                    outcomes.append("complaint")
                else:
                    outcomes.append(report.kind)
            await session.commit()
        return outcomes
