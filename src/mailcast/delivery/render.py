"""Per-recipient rendering. A campaign variant is compiled once (Liquid parse, link discovery);
each recipient costs one render of the parsed templates."""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from liquid import Environment
from markupsafe import escape
from liquid.exceptions import LiquidError

# HTML output escapes merge values (a subscriber named "<script>" stays text); subject and text do not.
HTML_ENV = Environment(autoescape=True)
TEXT_ENV = Environment(autoescape=False)

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_TEXT_URL = re.compile(r"""https?://[^\s<>"']+""")
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)


_OUTPUT_TAG = re.compile(r"{{(.*?)}}", re.DOTALL)
_LINK_SLOT = re.compile(r"^__link_(\d+)$")


class SlotTemplate:
    """An output-only template ({{ ... }} and text, no {% %} tags) split once into static text and
    slots. Per recipient each distinct expression is evaluated once (a newsletter repeats
    `{{ first_name }}` and has dozens of link slots), links are filled without Liquid at all.
    Used only when it renders exactly what Liquid renders (checked when compiled)."""

    def __init__(self, env: Environment, source: str) -> None:
        pieces = _OUTPUT_TAG.split(source)
        self.static = pieces[0::2]
        self.slots = [p.strip() for p in pieces[1::2]]
        self.escape = env.autoescape
        self.expressions = {e: env.from_string("{{ " + e + " }}") for e in set(self.slots) if not _LINK_SLOT.match(e)}

    def render(self, **values: Any) -> str:
        evaluated = {e: t.render(**values) for e, t in self.expressions.items()}
        out = [self.static[0]]
        for slot, text in zip(self.slots, self.static[1:]):
            if slot in evaluated:
                out.append(evaluated[slot])
            else:
                value = str(values.get(slot, ""))
                out.append(str(escape(value)) if self.escape else value)
            out.append(text)
        return "".join(out)


def _template(env: Environment, source: str):
    full = env.from_string(source)
    if "{%" in source or "{{-" in source or "-}}" in source:
        return full
    try:
        fast = SlotTemplate(env, source)
        probe = {"email": "probe@example.org", "first_name": "Probe <&>", "last_name": "O'Probe",
                 "metadata": {}, "unsubscribe_url": "https://example.org/u?a=1&b=2",
                 **{f"__link_{i}": f"https://example.org/t/c/{i}?x=<&>" for i in range(len(fast.slots))}}
        if fast.render(**probe) == full.render(**probe):
            return fast
    except LiquidError:
        pass
    return full


class RenderError(Exception):
    """This recipient's message cannot be rendered; the delivery fails, the campaign goes on."""


def _trackable(url: str) -> bool:
    stripped = url.strip().lower()
    return stripped.startswith(("http://", "https://")) and "unsubscribe_url" not in stripped


@dataclass
class CompiledVariant:
    subject: Any
    html: Any | None
    text: Any | None
    preview_text: Any | None
    links: list[str] = field(default_factory=list)  # link number -> original URL (may hold merge tags)


def _rewrite_links(source: str, links: list[str], pattern: re.Pattern, html: bool) -> str:
    def replace(match: re.Match) -> str:
        url = match.group(3) if html else match.group(0)
        if not _trackable(htmllib.unescape(url) if html else url):
            return match.group(0)
        links.append(htmllib.unescape(url) if html else url)
        placeholder = "{{ __link_%d }}" % (len(links) - 1)
        if html:
            return f"{match.group(1)}{match.group(2)}{placeholder}{match.group(2)}"
        return placeholder

    return pattern.sub(replace, source)


def compile_variant(subject: str, html: str | None, text: str | None, preview_text: str | None,
                    track_links: bool = True) -> CompiledVariant:
    links: list[str] = []
    if html and track_links:
        html = _rewrite_links(html, links, _HREF, html=True)
    if text and track_links:
        text = _rewrite_links(text, links, _TEXT_URL, html=False)
    if html and not text:
        # The plain-text part is derived once per campaign from the HTML template (merge tags and
        # link placeholders survive as text) and then rendered per recipient like any text.
        text = html_to_text(html)
    try:
        return CompiledVariant(
            subject=TEXT_ENV.from_string(subject),
            html=_template(HTML_ENV, html) if html else None,
            text=_template(TEXT_ENV, text) if text else None,
            preview_text=TEXT_ENV.from_string(preview_text) if preview_text else None,
            links=links,
        )
    except LiquidError as exc:  # content is validated on save; this is a guard, not a path
        raise RenderError(f"template syntax error: {exc}") from exc


def recipient_context(email: str, first_name: str | None, last_name: str | None,
                      metadata: dict[str, Any] | None, unsubscribe_url: str) -> dict[str, Any]:
    return {
        "email": email,
        "first_name": first_name or "",
        "last_name": last_name or "",
        "metadata": metadata or {},
        "unsubscribe_url": unsubscribe_url,
    }


@dataclass
class Rendered:
    subject: str
    html: str | None
    text: str


def render(compiled: CompiledVariant, context: dict[str, Any], click_urls: list[str], open_pixel_url: str | None
           ) -> Rendered:
    values = {**context, **{f"__link_{i}": url for i, url in enumerate(click_urls)}}
    try:
        subject = compiled.subject.render(**values)
        html = compiled.html.render(**values) if compiled.html else None
        text = compiled.text.render(**values) if compiled.text else None
        preview = compiled.preview_text.render(**values) if compiled.preview_text else None
    except LiquidError as exc:
        raise RenderError(f"could not render for {context.get('email')}: {exc}") from exc
    if text is None:
        text = "\n"
    if html is not None:
        html = _decorate_html(html, preview, open_pixel_url)
    return Rendered(subject=subject, html=html, text=text)


def _decorate_html(html: str, preview: str | None, pixel_url: str | None) -> str:
    if preview:
        # The preheader: shown by inbox previews, hidden in the opened message.
        hidden = ('<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
                  f"{htmllib.escape(preview)}</div>")
        match = _BODY_OPEN.search(html)
        html = html[: match.end()] + hidden + html[match.end():] if match else hidden + html
    if pixel_url:
        pixel = f'<img src="{htmllib.escape(pixel_url)}" width="1" height="1" alt="" style="display:block;border:0">'
        match = None
        for match in _BODY_CLOSE.finditer(html):
            pass
        html = html[: match.start()] + pixel + html[match.start():] if match else html + pixel
    return html


class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "div", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "section", "article"}
    _SKIP = {"style", "script", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK or tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
        elif tag == "a" and self._href:
            self.parts.append(f" ({self._href})")
            self._href = None

    def handle_data(self, data):
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
