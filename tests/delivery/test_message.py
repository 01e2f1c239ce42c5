"""Message construction: header safety (Hypothesis), DKIM signatures that verify, plain text
derived from HTML, and tokens that cannot be forged."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.policy import default

import dkim
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailcast.delivery import message as mime
from mailcast.delivery.dkim import Signer
from mailcast.delivery.render import compile_variant, html_to_text, recipient_context, render
from mailcast.delivery.tokens import InvalidToken, Purpose, TokenCodec
from mailcast.domains.keys import generate_keypair

EXPECTED_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
}

_pieces = st.sampled_from(
    list('ab cXé:\r\n\t\x0b\x0c\x85\u2028\u2029=?<>@"\\,;')
) | st.sampled_from(
    [
        "=?utf-8?q?X-Evil:_1?=",
        "\r\nBcc: victim@example.org",
        "%0d%0aBcc: x@y.z",
        "\nSubject: replaced",
        "=0D=0ABcc: a@b.c",
        "=?utf-8?b?DQpCY2M6IGFAYi5j?=",
    ]
)
nasty_text = st.lists(_pieces, max_size=12).map("".join) | st.text(max_size=30)


def _build(subject_template: str, first_name: str, last_name: str, city: str) -> bytes:
    compiled = compile_variant(subject_template, "<p>{{ first_name }}</p>", None, None)
    context = recipient_context(
        "reader@example.org", first_name, last_name, {"city": city}, "https://u.example/x"
    )
    rendered = render(compiled, context, [], None)
    sender = mime.parse_from("Newsletter <news@news.example.com>")
    data = mime.build(
        sender=sender,
        recipient="reader@example.org",
        recipient_name=f"{first_name} {last_name}",
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        message_id="<id@news.example.com>",
        date=datetime(2026, 3, 2, tzinfo=UTC),
        unsubscribe_url="https://mail.example/u/token",
        unsubscribe_mailto="mailto:u@example.com",
        reply_to=None,
        list_id=mime.list_id(city, "aud_01abc", "news.example.com"),
        feedback_id="camp_01abc:acct_01abc:mailcast",
    )
    mime.check_headers(data)  # what the sender runs before every message leaves
    return data


@settings(max_examples=300, deadline=None)
@given(
    first=nasty_text,
    last=nasty_text,
    city=nasty_text,
    subject=st.sampled_from(
        ["Hi {{ first_name }}", "{{ metadata.city }} news", "Plain", "{{ last_name }}!"]
    ),
)
def test_no_value_adds_or_changes_a_header(first, last, city, subject):
    data = _build(subject, first, last, city)
    parsed = email.message_from_bytes(data, policy=default)
    assert set(parsed.keys()) == EXPECTED_HEADERS
    assert all(len(parsed.get_all(name)) == 1 for name in EXPECTED_HEADERS)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Unsubscribe"] == "<https://mail.example/u/token>, <mailto:u@example.com>"
    assert parsed["To"].addresses[0].addr_spec == "reader@example.org"
    assert len(parsed["To"].addresses) == 1
    assert parsed["From"].addresses[0].addr_spec == "news@news.example.com"
    assert parsed["List-Id"].endswith(
        "<aud_01abc.news.example.com>"
    )  # the audience's name is the phrase
    assert parsed["Feedback-ID"] == "camp_01abc:acct_01abc:mailcast"
    for value in parsed.values():
        assert "\r" not in str(value) and "\n" not in str(value)
    # The header block ends at the first blank line and nothing in it came from the body.
    head = data.split(b"\r\n\r\n", 1)[0]
    assert all(line[:1] in (b" ", b"\t") or b":" in line for line in head.split(b"\r\n"))


def _dns(record: bytes):
    return lambda name, timeout=5: (
        record if name == b"mailcast._domainkey.news.example.com." else None
    )


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkim_signature_verifies_and_covers_list_unsubscribe(algorithm):
    private_pem, public_b64 = generate_keypair(algorithm)
    signer = Signer("news.example.com", "mailcast", algorithm, private_pem, mime.SIGNED_HEADERS)
    # A non-ASCII subject is written as folded encoded words: relaxed canonicalisation unfolds it.
    data = _build(
        "Grüße aus {{ metadata.city }}, " * 4 + "{{ first_name }}", "Ada", "Lovelace", "Zürich"
    )
    assert b"\r\n " in data.split(b"\r\n\r\n")[0]
    signed = signer.sign(data, datetime(2026, 3, 2, tzinfo=UTC))
    record = f"v=DKIM1; k={algorithm}; p={public_b64}".encode()
    assert dkim.verify(signed, dnsfunc=_dns(record))
    header = email.message_from_bytes(signed)["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
    tags = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    assert tags["a"] == f"{algorithm}-sha256"
    signed_headers = tags["h"].lower().split(":")
    assert {
        "from",
        "to",
        "subject",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-id",
        "feedback-id",
    } <= set(signed_headers)
    tampered = signed.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        b"List-Unsubscribe-Post: List-Unsubscribe=Nope",
    )
    assert not dkim.verify(tampered, dnsfunc=_dns(record))
    assert not dkim.verify(signed.replace(b"Ada", b"Eve"), dnsfunc=_dns(record))  # the body too
    other, _ = generate_keypair(algorithm)
    assert not dkim.verify(
        Signer("news.example.com", "mailcast", algorithm, other, mime.SIGNED_HEADERS).sign(
            data, datetime(2026, 3, 2, tzinfo=UTC)
        ),
        dnsfunc=_dns(record),
    )


def test_dkim_signer_refuses_a_key_of_the_other_kind():
    rsa_pem, _ = generate_keypair("rsa")
    with pytest.raises(ValueError):
        Signer("news.example.com", "mailcast", "ed25519", rsa_pem, mime.SIGNED_HEADERS)


def test_text_part_from_html():
    text = html_to_text(
        "<html><head><style>p{color:red}</style></head><body><h1>Title</h1><p>One &amp; two</p>"
        "<ul><li>a</li><li>b</li></ul><a href='https://x.example/1'>Go</a></body></html>"
    )
    assert text == "Title\n\nOne & two\n\n- a\n- b\n\nGo (https://x.example/1)\n"


# Made by the first token version (HMAC tags) with the secret b"k" * 32: links in mail that was
# sent before the tags changed must keep working.
FIRST_VERSION_CLICK_42_3 = "uy7OJZ5X00mvI36ft3zFIgg9-YYXnUYD4GYk9lMB5-I"


@pytest.mark.parametrize("made_by", ["this version", "the first version"])
def test_tokens_round_trip_and_refuse_forgery(made_by):
    codec = TokenCodec(b"k" * 32)
    token = (
        codec.encode(42, Purpose.CLICK, 3)
        if made_by == "this version"
        else FIRST_VERSION_CLICK_42_3
    )
    claim = codec.decode(token, Purpose.CLICK)
    assert (claim.delivery_id, claim.link) == (42, 3)
    assert "42" not in token
    with pytest.raises(InvalidToken):
        codec.decode(token, Purpose.OPEN)  # a click token is not an open token
    with pytest.raises(InvalidToken):
        TokenCodec(b"j" * 32).decode(token)  # another secret
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(token)):
        for (
            replacement
        ) in alphabet:  # every other character at every position, the last one included
            if replacement != token[i]:
                with pytest.raises(InvalidToken):
                    codec.decode(token[:i] + replacement + token[i + 1 :])
    assert codec.encode(43, Purpose.CLICK, 3) != token
    with pytest.raises(ValueError):
        TokenCodec(b"short")


@pytest.mark.parametrize("links", [0, 1, 2, 3, 41])
def test_a_messages_tokens_made_at_once_each_decode_to_their_own_link(links):
    codec = TokenCodec(b"k" * 32)
    for delivery_id in (1, 42, 2**63 - 1):
        tokens = codec.encode_many(delivery_id, Purpose.CLICK, range(links))
        assert len(tokens) == links and len(set(tokens)) == links
        assert [codec.decode(token, Purpose.CLICK) for token in tokens] == [
            (delivery_id, Purpose.CLICK, link) for link in range(links)
        ]
        assert all(
            len(token) == 43 and token[-1] in "AEIMQUYcgkosw048" for token in tokens
        )  # canonical
        assert tokens == [
            codec.encode(delivery_id, Purpose.CLICK, link) for link in range(links)
        ]  # as made alone


_static = st.text(alphabet=st.sampled_from(list("ab <>&\"'\n=?é")), max_size=8)
_outputs = st.sampled_from(
    [
        "{{ first_name }}",
        "{{ first_name | default: 'there' }}",
        "{{ metadata.city }}",
        "{{ email | upcase }}",
        "{{ __link_0 }}",
        "{{ __link_1 }}",
        "{{ last_name | append: '!' }}",
        "{{ metadata.missing | default: '<none>' }}",
        "{{ unsubscribe_url }}",
    ]
)


_values = st.text(alphabet=st.sampled_from(list("ab <>&\"'é")), max_size=6) | st.text(max_size=6)


@settings(max_examples=300, deadline=None)
@example(parts=["{{ metadata.city }}", "a\r\nb"], first="", city="\r")  # no newline translation
@given(
    parts=st.lists(_static | _outputs, max_size=16),
    first=_values,
    city=_values
    | st.integers()
    | st.none()
    | st.booleans()
    | st.lists(st.text(max_size=3), max_size=2),
)
def test_slot_templates_render_exactly_like_liquid(parts, first, city):
    from markupsafe import escape

    from mailcast.delivery.render import HTML_ENV, TEXT_ENV, SlotTemplate, _template

    source = "".join(parts)
    values = {
        "email": "a@example.org",
        "first_name": first,
        "last_name": "",
        "metadata": {"city": city},
        "unsubscribe_url": "https://u.example/x?a=1&b=2",
        "__link_0": "https://t.example/c/0?q=<&>",
        "__link_1": "https://t.example/c/1",
    }
    for env in (HTML_ENV, TEXT_ENV):
        chosen = _template(env, source)
        assert isinstance(chosen, SlotTemplate)  # output-only templates take the fast path
        expected = env.from_string(source).render(**values)
        assert chosen.render(**values) == expected
        # and with the links given as lists, as the sender does (escaped already for HTML)
        links = [values["__link_0"], values["__link_1"]]
        if env.autoescape:
            links = [str(escape(link)) for link in links]
        assert chosen.render(links, **values) == expected


def test_templates_with_tags_use_liquid():
    from mailcast.delivery.render import HTML_ENV, SlotTemplate, _template

    assert not isinstance(
        _template(HTML_ENV, "{% if first_name %}Hi {{ first_name }}{% endif %}"), SlotTemplate
    )
    assert not isinstance(_template(HTML_ENV, "{{- first_name -}}"), SlotTemplate)


@settings(max_examples=200, deadline=None)
@given(
    html=st.text(alphabet=st.sampled_from(list("ab <>=.é\t")), max_size=400)
    | st.text(alphabet=st.sampled_from(list("ab <>=.é\r\n\t")), max_size=400),
    text=st.text(alphabet=st.sampled_from(list("ab =.\r\n")), max_size=300),
)
@example(html="<p>" + "x" * 200 + "</p>", text="")
@example(html="a" * 74 + " \nb", text="")
@example(html=".a\n.\n" + "b" * 75 + ".." + "c" * 80, text=".\n..x")
def test_messages_use_crlf_only_and_decode_to_their_content(html, text):
    # A one-line HTML body made quoted-printable's soft breaks bare LFs (a relay may refuse them,
    # and a DKIM body hash is over CRLF lines).
    data = mime.build(
        sender=mime.parse_from("N <news@news.example.com>"),
        recipient="r@example.org",
        recipient_name="",
        subject="s",
        html=html,
        text=text + "\n",
        message_id="<i@x>",
        date=datetime(2026, 3, 2, tzinfo=UTC),
        unsubscribe_url="https://u.example/u",
        unsubscribe_mailto="mailto:u@example.com",
    )
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    assert b"\n." not in data  # no dot for SMTP to double: the transport sends it as it is
    # RFC 2045's 76 characters (binascii alone wrote 77 when a line of 74 ended in a space)
    assert max(len(line) for line in data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")) <= 76
    parsed = email.message_from_bytes(data, policy=default)
    plain, rich = [part.get_content() for part in parsed.iter_parts()]
    normal = lambda s: s.replace("\r\n", "\n").replace("\r", "\n")  # noqa: E731
    assert normal(rich) == normal(html)
    assert normal(plain) == normal(text + "\n")


_qp_alphabet = st.sampled_from(list("ab .=é\t\r\n") + ["x" * 70, "=" * 30, " " * 40, "é" * 30])
_qp_piece = st.lists(_qp_alphabet, max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_qp_piece | _qp_piece.map(mime.Recurring), max_size=10))
@example(pieces=["x" * 76, "y"])
@example(pieces=["a" * 73 + "=" * 3, "b", "c\r", "\nd"])
@example(pieces=["x" * 70, ". y", "\n.", mime.Recurring("." * 160), "é" * 30 + "." * 5])
def test_bodies_encoded_piece_by_piece_decode_to_the_whole(pieces):
    # Static template text is encoded once and slot values per recipient, joined by soft line
    # breaks: the part must decode to exactly the joined text, with lines of at most 76 characters.
    # (Both parts get the same pieces: the second encodes the Recurring ones from the cache.)
    data = mime.build(
        sender=mime.parse_from("N <news@news.example.com>"),
        recipient="r@example.org",
        recipient_name="",
        subject="s",
        html=pieces,
        text=pieces,
        message_id="<i@x>",
        date=datetime(2026, 3, 2, tzinfo=UTC),
        unsubscribe_url="https://u.example/u",
        unsubscribe_mailto="mailto:u@example.com",
    )
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76
    assert not any(line.endswith((b" ", b"\t")) for line in body_lines)
    assert not any(line.startswith(b".") for line in body_lines)  # the transport doubles no dot
    parsed = email.message_from_bytes(data, policy=default)
    normal = lambda s: s.replace("\r\n", "\n").replace("\r", "\n")  # noqa: E731
    for part in parsed.iter_parts():
        assert normal(part.get_content()) == normal("".join(pieces))


@settings(max_examples=500, deadline=None)
@given(
    piece=st.text(
        st.characters(max_codepoint=0x7F) | st.sampled_from(["é", ".", " ", "=", "\t"]),
        min_size=1,
        max_size=80,
    )
)
@example(piece=".")
@example(piece="a ")
@example(piece="x" * 76)
def test_a_piece_taken_as_it_is_is_what_the_encoder_would_write(piece):
    # The shortcut for merge values and links (written as they are) must agree with binascii
    # wherever it is taken: a piece is written as the encoder writes it, then a soft line break.
    encoded = mime._qp(piece)
    if piece[-1] != "\r" and len(encoded) - (encoded.rfind(b"\n") + 1) <= 75:  # no re-wrapping
        written = mime._written(piece)
        assert written == encoded + (b"" if encoded.endswith(b"\n") else b"=\r\n")


def test_only_recurring_text_is_remembered():
    # A recipient's own text (a body rendered by Liquid, a link with its token) never comes again:
    # remembering it would grow the worker by a message's size per recipient.
    mime._QP_CACHE.clear()
    footer = mime.Recurring("<p>" + "static footer " * 100 + "</p>")
    for n in range(50):
        mime.qp_pieces(
            [f"<p>Hello reader {n}</p>" * 100, footer, f"https://t.example/t/c/{n:040d}"]
        )
    assert list(mime._QP_CACHE) == [footer]


_html_bits = st.sampled_from(
    [
        "<body>",
        "<BODY class='x'>",
        "</body>",
        "</body >",
        "</BODY>",
        "</Body>",
        "<p>",
        "x",
        "é",
        "<bo",
        "dy>",
        "</bo",
        "dy>",
        "",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.lists(_html_bits, max_size=6).map("".join), min_size=1, max_size=8),
    preview=st.sampled_from([None, "", "Soon <b>"]),
    pixel=st.sampled_from([None, "https://t.example/o.gif?a&b"]),
)
def test_the_preheader_and_pixel_go_where_they_went_in_the_whole_text(pieces, preview, pixel):
    # The HTML is decorated as pieces (so its static text stays encoded once); the result must be
    # the whole text decorated: preheader after the first <body>, pixel before the last </body>.
    import html as htmllib
    import re

    from mailcast.delivery.render import _decorate_html

    whole = "".join(pieces)
    if preview:
        hidden = (
            '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" '
            'aria-hidden="true">'
            f"{htmllib.escape(preview)}</div>"
        )
        m = re.search(r"<body\b[^>]*>", whole, re.IGNORECASE)
        whole = whole[: m.end()] + hidden + whole[m.end() :] if m else hidden + whole
    if pixel:
        img = (
            f'<img src="{htmllib.escape(pixel)}" width="1" height="1" alt="" '
            'style="display:block;border:0">'
        )
        ends = list(re.finditer(r"</body\s*>", whole, re.IGNORECASE))
        whole = whole[: ends[-1].start()] + img + whole[ends[-1].start() :] if ends else whole + img
    assert "".join(_decorate_html(pieces, preview, pixel)) == whole
