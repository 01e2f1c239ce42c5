"""MIME assembly (signing is in `dkim.py`). Every header value that came from content or subscriber
data goes through `header_safe`, so no value can add or change a header."""

from __future__ import annotations

import binascii
import re
import uuid
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, getaddresses, make_msgid

_PLAIN_NAME = re.compile(r"^[\w .'-]{0,100}$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")
SIGNED_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-id",
    b"feedback-id",
    b"mime-version",
    b"content-type",
]


ALLOWED_HEADERS = frozenset(
    {
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"reply-to",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"list-id",
        b"feedback-id",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
        b"dkim-signature",
    }
)


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
    end = data.find(b"\r\n\r\n")  # not split(): that would copy the whole body too
    head = data if end < 0 else data[:end]
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


_LIST_LABEL = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")


def list_id(name: str | None, label: str, domain: str) -> str:
    """An RFC 2919 List-Id value: the list's name as the phrase, `<label.domain>` as the id (the
    label made a dot-atom: anything but atext becomes "-")."""
    list_address = f"<{_LIST_LABEL.sub('-', label).strip('-') or 'list'}.{domain}>"
    name = header_safe(name or "")
    if not name:
        return list_address
    phrase = formataddr((name, "x@x"), charset="utf-8").removesuffix(
        " <x@x>"
    )  # quoted or encoded as needed
    return f"{phrase} {list_address}"


def _header(name: str, value: str) -> str:
    """One header line. ASCII values are written as they are (every value here is bounded well under
    RFC 5322's 998-character line limit, so no folding is needed, and the email package's refolding
    is the slowest part of building a message); other text becomes RFC 2047 encoded words."""
    if value.isascii():
        return f"{name}: {value}\r\n"
    return (
        f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=chr(13) + chr(10))}\r\n"
    )


def _address(address: Address) -> str:
    # Only the display name is ever encoded; the address itself stays as it is.
    return formataddr((address.display_name, address.addr_spec), charset="utf-8")


_SPACE_BEFORE_BREAK = re.compile(r"[ \t]\n")


def _qp(text: str) -> bytes:
    # binascii's C encoder. It writes its soft line breaks as CRLF only when the input's first line
    # ends in CRLF; text with no line break at all (HTML on one line) would get bare LFs.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.replace("\n", "\r\n").encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if b"\n" not in data:
        return _no_leading_dots(encoded.replace(b"\n", b"\r\n"), 76)
    if _SPACE_BEFORE_BREAK.search(text):
        # It also writes a 77-character line when a line of 74 ends in a space or tab (=20).
        encoded = b"\r\n".join(
            _wrap(line, 76) if len(line) > 76 else line for line in encoded.split(b"\r\n")
        )
    return _no_leading_dots(encoded, 76)


def _no_leading_dots(encoded: bytes, limit: int) -> bytes:
    """Quoted-printable lines none of which starts with "." (it is written "=2E", the same text to
    a decoder), each of at most `limit` characters. SMTP would have to double such a dot on the
    wire; a message built here has none, so the transport sends it as it is, without a pass
    over the whole body."""
    if encoded[:1] != b"." and b"\n." not in encoded:
        return encoded
    out: list[bytes] = []
    pending = encoded.split(b"\r\n")
    pending.reverse()
    while pending:
        line = pending.pop()
        if line[:1] == b".":
            line = b"=2E" + line[1:]
            if len(line) > limit:  # cut it again; a new line may start with "." in turn
                soft = (
                    line[-1:] == b"="
                )  # "=" ends a line only as a soft break ("=XX" ends in a hex digit)
                lines = _wrap(line[:-1] if soft else line, limit - 1).split(b"\r\n")
                if soft:
                    lines[-1] += b"="
                line = lines[0]
                pending.extend(reversed(lines[1:]))
        out.append(line)
    return b"\r\n".join(out)


def _wrap(line: bytes, limit: int) -> bytes:
    """An encoded line cut by soft line breaks (between encoded characters, never inside an =XX)
    into lines of at most `limit` characters."""
    out = []
    while len(line) > limit:
        i = cut = 0
        while i <= limit - 1:
            cut = i
            i += 3 if line[i] == 0x3D else 1
        out.append(line[:cut] + b"=")
        line = line[cut:]
    out.append(line)
    return b"\r\n".join(out)


class Recurring(str):
    """Text that recurs in many messages (a template's static text): `qp_pieces` remembers its
    encoding. Anything derived from it (a slice, a join) is a plain str again."""


_QP_CACHE: dict[str, bytes] = {}
_QP_CACHE_SIZE = 20_000


def qp_pieces(pieces: list[str], memo: dict[str, bytes] | None = None) -> bytes:
    """Quoted-printable of "".join(pieces), encoded piece by piece with a soft line break between
    pieces that do not end a line. A decoder joins them again, so the decoded text is the same;
    what is saved is encoding a template's static text again for every recipient: `Recurring`
    pieces are encoded once and remembered (only they: a recipient's values, links and bodies
    would fill the cache with text that never comes again). `memo` remembers the other pieces for
    one message: its merge values and links recur in it (in every paragraph, in both parts).
    What is remembered is what is written for the piece, soft break included, so the message is
    one list of remembered values joined (one comprehension, not a loop of ~500 steps)."""
    cached, recurring = _QP_CACHE.get, Recurring
    if memo is None:
        memo = {}
    known = memo.get
    out = [
        (cached(p) or _remember(p)) if type(p) is recurring else (known(p) or _memoize(memo, p))
        for p in pieces
        if p
    ]
    if not out:
        return b""
    if _SPLIT_CRLF in out:  # a CR LF might be split between two pieces
        return _qp("".join(pieces))
    if out[-1][-3:] == b"=\r\n":  # nothing follows the last piece
        out[-1] = out[-1][:-3]
    return b"".join(out)


# Written for a piece ending in CR (never an encoding: quoted-printable has no bare CR): the
# pieces are then encoded as one text.
_SPLIT_CRLF = b"\r"


def _written(piece: str) -> bytes:
    """A piece as `qp_pieces` writes it: encoded so that a soft line break may follow it (its last
    line at most 75 characters, so the "=" fits in 76), and the soft break unless it ends a line.
    One function, not three: it runs for every merge value and link of every message."""
    if piece[-1] == "\r":
        return _SPLIT_CRLF
    # What most merge values and links are: text quoted-printable leaves as it is (binascii
    # encodes "=", anything not printable ASCII, a space or tab ending the text; `_qp` a "."
    # starting a line), short enough for the soft break. A third of the cost of encoding it.
    if (
        len(piece) <= 75
        and piece.isascii()
        and piece.isprintable()
        and "=" not in piece
        and piece[-1] != " "
        and piece[0] != "."
    ):
        return piece.encode("ascii") + b"=\r\n"
    encoded = _qp(piece)
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start > 75:
        encoded = encoded[:start] + _no_leading_dots(_wrap(encoded[start:], 75), 75)
    return encoded if encoded[-1] == 10 else encoded + b"=\r\n"  # 10: b"\n"


def _memoize(memo: dict[str, bytes], piece: str) -> bytes:
    written = memo[piece] = _written(piece)
    return written


def _remember(piece: str) -> bytes:
    if len(_QP_CACHE) >= _QP_CACHE_SIZE:
        _QP_CACHE.clear()
    written = _QP_CACHE[piece] = _written(piece)
    return written


def builds_itself(recipient: str) -> bool:
    """Whether `build` writes this recipient's message itself: then its lines end in CRLF and none
    starts with "." (so the transport neither counts line endings nor doubles dots). Otherwise
    (an internationalised address) the email package writes it, and the transport checks."""
    return recipient.isascii()


_TEXT_PART = (
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_HTML_PART = (
    b'Content-Type: text/html; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)


def build(
    *,
    sender: Address,
    recipient: str,
    recipient_name: str,
    subject: str,
    html: str | list[str] | None,
    text: str | list[str],
    message_id: str,
    date: datetime,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    reply_to: str | None = None,
    list_id: str | None = None,
    feedback_id: str | None = None,
) -> bytes:
    """The message as it goes on the wire (CRLF, quoted-printable UTF-8 parts). A body may come as
    the pieces it was rendered from (see `qp_pieces`). `list_id` (RFC 2919, see `list_id()`) and
    `feedback_id` (Gmail's feedback loop) are built by the caller from our own ids."""
    if not builds_itself(
        recipient
    ):  # an internationalised address: the email package knows SMTPUTF8 best
        html = "".join(html) if isinstance(html, list) else html
        text = "".join(text) if isinstance(text, list) else text
        return _build_with_email_package(
            sender,
            recipient,
            recipient_name,
            subject,
            html,
            text,
            message_id,
            date,
            unsubscribe_url,
            unsubscribe_mailto,
            reply_to,
            list_id,
            feedback_id,
        )
    memo: dict[str, bytes] = {}  # both parts carry the same merge values and links
    html_qp = (
        None if html is None else qp_pieces(html, memo) if isinstance(html, list) else _qp(html)
    )
    text_qp = qp_pieces(text, memo) if isinstance(text, list) else _qp(text)
    # Subscriber names go into To only when they are plainly names: a display name full of
    # quotes, brackets and encoded words is where address parsers disagree.
    name = header_safe(recipient_name)
    to = (
        formataddr((name, recipient), charset="utf-8")
        if name and _PLAIN_NAME.match(name)
        else recipient
    )
    head = [
        _header("From", _address(sender)),
        _header("To", to),
        _header("Subject", header_safe(subject)[:900]),
        _header("Date", format_datetime(date)),
        _header("Message-ID", message_id),
    ]
    if reply_to:
        head.append(_header("Reply-To", _address(parse_from(reply_to))))
    # RFC 2369 + RFC 8058: the HTTPS one-click URL and a mailto, and the one-click marker.
    head.append(
        _header(
            "List-Unsubscribe",
            f"<{header_safe(unsubscribe_url)}>, <{header_safe(unsubscribe_mailto)}>",
        )
    )
    head.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    if list_id:
        head.append(_header("List-Id", list_id))
    if feedback_id:
        head.append(_header("Feedback-ID", header_safe(feedback_id)))
    head.append("MIME-Version: 1.0\r\n")
    if html_qp is None:
        return "".join(head).encode("ascii") + _TEXT_PART + text_qp
    # "=_" cannot occur in quoted-printable output, so the boundary never collides with a body.
    boundary = f"=_mc_{uuid.uuid4().hex}".encode()
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary.decode()}"\r\n')
    return b"".join(
        [
            "".join(head).encode("ascii"),
            b"\r\n",
            b"--",
            boundary,
            b"\r\n",
            _TEXT_PART,
            text_qp,
            b"\r\n",
            b"--",
            boundary,
            b"\r\n",
            _HTML_PART,
            html_qp,
            b"\r\n",
            b"--",
            boundary,
            b"--\r\n",
        ]
    )


def _build_with_email_package(
    sender: Address,
    recipient: str,
    recipient_name: str,
    subject: str,
    html: str | None,
    text: str,
    message_id: str,
    date: datetime,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    reply_to: str | None,
    list_id: str | None,
    feedback_id: str | None,
) -> bytes:
    msg = EmailMessage(policy=SMTP.clone(utf8=True))
    msg["From"] = sender
    local, _, domain = recipient.rpartition("@")
    name = header_safe(recipient_name)
    msg["To"] = Address(
        display_name=name if _PLAIN_NAME.match(name) else "", username=local, domain=domain
    )
    msg["Subject"] = header_safe(subject)[:900]
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if reply_to:
        msg["Reply-To"] = parse_from(reply_to)
    msg["List-Unsubscribe"] = (
        f"<{header_safe(unsubscribe_url)}>, <{header_safe(unsubscribe_mailto)}>"
    )
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if list_id:
        msg["List-Id"] = list_id
    if feedback_id:
        msg["Feedback-ID"] = header_safe(feedback_id)
    msg.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg.as_bytes()
