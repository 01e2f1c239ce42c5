"""Per-recipient rendering. A campaign variant is compiled once (Liquid parse, link discovery);
each recipient costs one render of the parsed templates."""

from __future__ import annotations

import html as htmllib
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from html.parser import HTMLParser
from itertools import accumulate
from typing import Any, cast

from liquid import BoundTemplate, Environment
from liquid.exceptions import LiquidError, ResourceLimitError
from markupsafe import escape

from mailcast.delivery.message import Recurring
from mailcast.templates.bounded import BoundedEnvironment, limit_name
from mailcast.templates.links import HREF, TEXT_URL, rewrite_links

# HTML output escapes merge values (a subscriber named "<script>" stays text); subject and text do
# not.
HTML_ENV = BoundedEnvironment(autoescape=True)
TEXT_ENV = BoundedEnvironment(autoescape=False)

_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)


_OUTPUT_TAG = re.compile(r"{{(.*?)}}", re.DOTALL)
_LINK_SLOT = re.compile(r"^__link_(\d+)$")


_PATH = r"[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*"
_PLAIN = re.compile(rf"^({_PATH})$")
_WITH_DEFAULT = re.compile(rf"""^({_PATH})\s*\|\s*default:\s*(?:'[^']*'|"[^"]*")$""")
_MISSING = object()


def _lookup(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = values
    for key in path:
        if type(value) is not dict or key not in value:
            return _MISSING
        value = value[key]
    return value


def _nested(path: tuple[str, ...], leaf: Any) -> dict[str, Any]:
    value: Any = leaf
    for key in reversed(path):
        value = {key: value}
    return cast(dict[str, Any], value)


class SlotTemplate:
    """An output-only template ({{ ... }} and text, no {% %} tags) split once into static text and
    slots. Per recipient each distinct expression is evaluated once (a newsletter repeats
    `{{ first_name }}` and has dozens of link slots), links are filled without Liquid at all, and
    the commonest expressions (`{{ a.b }}`, `{{ a | default: 'x' }}`) are looked up directly when
    their value is a string; anything else goes to Liquid. Used only when it renders exactly what
    Liquid renders (checked when compiled, and by a property test)."""

    def __init__(self, env: Environment, source: str) -> None:
        pieces = _OUTPUT_TAG.split(source)
        self.static: list[str] = [Recurring(piece) for piece in pieces[0::2]]
        slots = [p.strip() for p in pieces[1::2]]
        self.escape = env.autoescape
        self.expressions = {
            e: env.from_string("{{ " + e + " }}") for e in set(slots) if not _LINK_SLOT.match(e)
        }
        # Each slot: ("link", n) or ("expr", expression).
        self.slots: list[tuple[str, Any]] = [
            ("link", int(m.group(1))) if (m := _LINK_SLOT.match(e)) else ("expr", e) for e in slots
        ]
        # expression -> (path, what Liquid writes when the value is empty, or None for no default)
        self.direct: dict[str, tuple[tuple[str, ...], str | None]] = {}
        for expression, template in self.expressions.items():
            if match := _PLAIN.match(expression):
                self.direct[expression] = (tuple(match.group(1).split(".")), None)
            elif match := _WITH_DEFAULT.match(expression):
                path = tuple(match.group(1).split("."))
                self.direct[expression] = (path, template.render(**_nested(path, "")))

    def _evaluate(self, expression: str, values: dict[str, Any]) -> str:
        shortcut = self.direct.get(expression)
        if shortcut is not None:
            path, empty = shortcut
            value = _lookup(values, path)
            if type(value) is str:
                if not value and empty is not None:
                    return empty
                return str(escape(value)) if self.escape else value
        return self.expressions[expression].render(**values)

    def render(self, links: list[str] | None = None, **values: Any) -> str:
        """`links`: the click URLs as they go into this template (escaped already for HTML); without
        them the `__link_N` values are taken from `values`."""
        return "".join(self.pieces(links, **values))

    def pieces(self, links: list[str] | None = None, **values: Any) -> list[str]:
        """The output as static text and slot values in turn (the static pieces are the same
        objects for every recipient: the message encoder encodes them once)."""
        evaluated = {e: self._evaluate(e, values) for e in self.expressions}
        out = [self.static[0]]
        for (kind, key), text in zip(self.slots, self.static[1:], strict=True):
            if kind == "expr":
                out.append(evaluated[key])
            elif links is not None:
                out.append(links[key] if key < len(links) else "")
            else:
                value = str(values.get(f"__link_{key}", ""))
                out.append(str(escape(value)) if self.escape else value)
            out.append(text)
        return out


def _template(env: Environment, source: str) -> BoundTemplate | SlotTemplate:
    full = env.from_string(source)
    if "{%" in source or "{{-" in source or "-}}" in source:
        return full
    try:
        fast = SlotTemplate(env, source)
        probe: dict[str, Any] = {
            "email": "probe@example.org",
            "first_name": "Probe <&>",
            "last_name": "O'Probe",
            "metadata": {},
            "unsubscribe_url": "https://example.org/u?a=1&b=2",
            "postal_address": "Probe & Co\n1 <Main> St",
            **{f"__link_{i}": f"https://example.org/t/c/{i}?x=<&>" for i in range(len(fast.slots))},
        }
        if fast.render(**probe) == full.render(**probe):
            return fast
    except LiquidError:
        pass
    return full


class RenderError(Exception):
    """This recipient's message cannot be rendered; the delivery fails, the campaign goes on."""


@dataclass
class CompiledVariant:
    subject: Any
    html: Any | None
    text: Any | None
    preview_text: Any | None
    links: list[str] = field(
        default_factory=list
    )  # link number -> original URL (may hold merge tags)


# A part that never names {{ unsubscribe_url }} gets a footer with it: no campaign leaves without
# a visible way out. Added after the links are numbered, so click tokens keep their link numbers.
_UNSUBSCRIBE_TAG = re.compile(r"{{-?\s*unsubscribe_url\b")
_FOOTER_HTML = (
    '<div style="margin:24px 0 0;padding:12px 0 0;font-size:12px;line-height:1.5;color:#6b6b6b;'
    'text-align:center">You receive this email because you subscribed. '
    '<a href="{{ unsubscribe_url }}" style="color:#6b6b6b">Unsubscribe</a>%s</div>'
)
_POSTAL_HTML = "<br>{{ postal_address | newline_to_br }}"
_FOOTER_TEXT = (
    "\n\n--\nYou receive this email because you subscribed. Unsubscribe: {{ unsubscribe_url }}\n%s"
)
_POSTAL_TEXT = "{{ postal_address }}\n"


def has_unsubscribe_link(source: str | None) -> bool:
    return source is not None and _UNSUBSCRIBE_TAG.search(source) is not None


def _with_footer_html(html: str, postal_address: bool) -> str:
    footer = _FOOTER_HTML % (_POSTAL_HTML if postal_address else "")
    close = _last_body_close(html)
    return (
        html + footer if close is None else html[: close.start()] + footer + html[close.start() :]
    )


def compile_variant(
    subject: str,
    html: str | None,
    text: str | None,
    preview_text: str | None,
    track_links: bool = True,
    footer: bool = False,
    postal_address: bool = False,
) -> CompiledVariant:
    """`footer`: give each part that has no unsubscribe link a footer with one (and with the
    account's postal address, `{{ postal_address }}` in the context, when `postal_address`)."""
    links: list[str] = []
    if html and track_links:
        html = rewrite_links(html, links, HREF, html=True)
    if text and track_links:
        text = rewrite_links(text, links, TEXT_URL, html=False)
    if html and not text:
        # The plain-text part is derived once per campaign from the HTML template (merge tags and
        # link placeholders survive as text) and then rendered per recipient like any text.
        text = html_to_text(html)
    if footer:
        if html and not has_unsubscribe_link(html):
            html = _with_footer_html(html, postal_address)
        if text is not None and not has_unsubscribe_link(text):
            text = text.rstrip("\n") + _FOOTER_TEXT % (_POSTAL_TEXT if postal_address else "")
    try:
        return CompiledVariant(
            subject=_template(TEXT_ENV, subject),
            html=_template(HTML_ENV, html) if html else None,
            text=_template(TEXT_ENV, text) if text else None,
            preview_text=_template(TEXT_ENV, preview_text) if preview_text else None,
            links=links,
        )
    except LiquidError as exc:  # content is validated on save; this is a guard, not a path
        raise RenderError(f"template syntax error: {exc}") from exc


def recipient_context(
    email: str,
    first_name: str | None,
    last_name: str | None,
    metadata: dict[str, Any] | None,
    unsubscribe_url: str,
    postal_address: str | None = None,
) -> dict[str, Any]:
    return {
        "email": email,
        "first_name": first_name or "",
        "last_name": last_name or "",
        "metadata": metadata or {},
        "unsubscribe_url": unsubscribe_url,
        "postal_address": postal_address or "",
    }


@dataclass
class Rendered:
    """The bodies as the pieces they were rendered from (see SlotTemplate.pieces); the sender
    encodes the pieces, `html` and `text` are their concatenation for everyone else."""

    subject: str
    html_pieces: list[str] | None
    text_pieces: list[str]

    @property
    def html(self) -> str | None:
        return None if self.html_pieces is None else "".join(self.html_pieces)

    @property
    def text(self) -> str:
        return "".join(self.text_pieces)


def render(
    compiled: CompiledVariant,
    context: dict[str, Any],
    click_urls: list[str],
    open_pixel_url: str | None,
    click_urls_html: list[str] | None = None,
) -> Rendered:
    """`click_urls_html`: the same URLs HTML-escaped, when the caller can make them cheaper than
    escaping each (tracking URLs are one escaped prefix and a base64url token)."""
    templates = (compiled.subject, compiled.html, compiled.text, compiled.preview_text)
    if all(t is None or isinstance(t, SlotTemplate) for t in templates):
        values = context  # slot templates take the links as lists
    else:
        values = {**context, **{f"__link_{i}": url for i, url in enumerate(click_urls)}}
    if click_urls_html is None:
        click_urls_html = [str(escape(url)) for url in click_urls]
    try:
        subject = "".join(_pieces(compiled.subject, values, click_urls) or ())
        html = _pieces(compiled.html, values, click_urls_html)
        text = _pieces(compiled.text, values, click_urls) or ["\n"]
        preview = _pieces(compiled.preview_text, values, click_urls)
    except ResourceLimitError as exc:
        raise RenderError(f"the template exceeds the {limit_name(exc)}") from exc
    except LiquidError as exc:
        raise RenderError(f"could not render for {context.get('email')}: {exc}") from exc
    if html is not None:
        html = _decorate_html(html, "".join(preview) if preview else None, open_pixel_url)
    return Rendered(subject=subject, html_pieces=html, text_pieces=text)


def _pieces(template: Any, values: dict[str, Any], links: list[str]) -> list[str] | None:
    if template is None:
        return None
    if isinstance(template, SlotTemplate):
        return template.pieces(links, **values)
    return [template.render(**values)]


def _decorate_html(pieces: list[str], preview: str | None, pixel_url: str | None) -> list[str]:
    """The preheader after <body> and the open pixel before the last </body> (or at the start and
    the end), inserted as pieces of their own. Positions are found in the whole text, so a tag
    split between pieces is found too."""
    html = "".join(pieces)
    inserts: list[tuple[int, str]] = []
    if preview:
        # The preheader: shown by inbox previews, hidden in the opened message.
        hidden = (
            '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" '
            'aria-hidden="true">'
            f"{htmllib.escape(preview)}</div>"
        )
        match = _BODY_OPEN.search(html)
        inserts.append((match.end() if match else 0, hidden))
    if pixel_url:
        pixel = (
            f'<img src="{htmllib.escape(pixel_url)}" width="1" height="1" alt="" '
            'style="display:block;border:0">'
        )
        match = _last_body_close(html)
        inserts.append((match.start() if match else len(html), pixel))
    # sorted by position; on a tie the preheader stays first (it was inserted before the pixel was
    # placed)
    return _insert(pieces, sorted(inserts, key=lambda insert: insert[0])) if inserts else pieces


def _last_body_close(html: str) -> re.Match[str] | None:
    """The last `</body>`, looked for from the end (it is nearly always there) and only then in
    the whole text."""
    start = max(html.rfind("</body"), html.rfind("</BODY"), 0)
    match = None
    for found in _BODY_CLOSE.finditer(html, start):
        match = found
    if match is None and start:
        for found in _BODY_CLOSE.finditer(html):
            match = found
    return match


def _insert(pieces: list[str], inserts: list[tuple[int, str]]) -> list[str]:
    """`inserts`: (offset in the joined text, text), offsets in ascending order. The piece each
    one falls in is found by bisection (not by walking a message's few hundred pieces) and split
    there; the parts of a template's static text stay `Recurring`: where a tag sits in static
    text is the same for every recipient, so their encoding is remembered too."""
    if not pieces:
        return [text for _, text in inserts]
    ends = list(accumulate(map(len, pieces)))  # where each piece ends in the joined text
    out = list(pieces)
    for position, text in reversed(inserts):  # from the back: the pieces in front keep their places
        i = min(bisect_left(ends, position), len(ends) - 1)
        piece = out[
            i
        ]  # the original piece, or the front of it when a later insert split it already
        cut = position - (ends[i] - len(pieces[i]))
        out[i : i + 1] = [_part(piece, 0, cut), text, _part(piece, cut, len(piece))]
    return out


def _part(piece: str, start: int, end: int) -> str:
    if start == 0 and end == len(piece):
        return piece
    part = piece[start:end]
    return Recurring(part) if type(piece) is Recurring and part else part


class _TextExtractor(HTMLParser):
    _BLOCK = {
        "p",
        "div",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "table",
        "section",
        "article",
    }
    _SKIP = {"style", "script", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK or tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
        elif tag == "a" and self._href:
            self.parts.append(f" ({self._href})")
            self._href = None

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A readable plain-text part for an HTML-only campaign (links kept as "text (url)")."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"
