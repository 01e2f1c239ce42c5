"""MIME assembly and DKIM signing. Every header value that came from content or subscriber data
goes through `header_safe`, so no value can add or change a header."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses, make_msgid
from datetime import datetime

import dkim

_PLAIN_NAME = re.compile(r"^[\w .'-]{0,100}$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-unsubscribe",
                  b"list-unsubscribe-post", b"mime-version", b"content-type"]


ALLOWED_HEADERS = frozenset({b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-unsubscribe",
                             b"list-unsubscribe-post", b"mime-version", b"content-type", b"content-transfer-encoding",
                             b"dkim-signature"})


class UnsafeHeaders(ValueError):
    pass


def header_safe(value: str) -> str:
    """One line: CR, LF and other control characters (also as rendered merge values) become spaces,
    and an RFC 2047 encoded word in content ("=?utf-8?b?...?=") is broken up: the email package of
    some Python versions decodes such words while refolding a header, which would let a value
    that decodes to CRLF write a header of its own."""
    return _UNSAFE.sub(" ", value).replace("=?", "= ?").strip()


def check_headers(data: bytes) -> None:
    """The last word before a message leaves: its header block holds only the headers we write,
    each once."""
    head = data.split(b"\r\n\r\n", 1)[0]
    seen: set[bytes] = set()
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        name = line.split(b":", 1)[0].strip().lower()
        if name not in ALLOWED_HEADERS or name in seen or b"\n" in line or b"\r" in line:
            raise UnsafeHeaders(f"refusing a message with header {name!r}")
        seen.add(name)


def parse_from(value: str) -> Address:
    name, address = getaddresses([header_safe(value)])[0]
    local, _, domain = address.rpartition("@")
    return Address(display_name=header_safe(name), username=local, domain=domain)


def new_message_id(domain: str) -> str:
    return make_msgid(domain=domain)


def build(*, sender: Address, recipient: str, recipient_name: str, subject: str, html: str | None, text: str,
          message_id: str, date: datetime, unsubscribe_url: str, unsubscribe_mailto: str,
          reply_to: str | None = None) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    local, _, domain = recipient.rpartition("@")
    # Subscriber names go into To only when they are plainly names: a display name full of
    # quotes, brackets and encoded words is where address parsers disagree.
    name = header_safe(recipient_name)
    msg["To"] = Address(display_name=name if _PLAIN_NAME.match(name) else "", username=local, domain=domain)
    msg["Subject"] = header_safe(subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if reply_to:
        msg["Reply-To"] = parse_from(reply_to)
    # RFC 2369 + RFC 8058: the HTTPS one-click URL and a mailto, and the one-click marker.
    msg["List-Unsubscribe"] = f"<{header_safe(unsubscribe_url)}>, <{header_safe(unsubscribe_mailto)}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


def sign(data: bytes, domain: str, selector: str, private_key_pem: str) -> bytes:
    """Prepend a DKIM-Signature (relaxed/relaxed, rsa-sha256) covering both List-Unsubscribe headers."""
    signature = dkim.sign(data, selector.encode(), domain.encode(), private_key_pem.encode(),
                          canonicalize=(b"relaxed", b"relaxed"), include_headers=SIGNED_HEADERS)
    return signature + data
