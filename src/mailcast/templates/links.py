"""The links a template's message tracks: found and numbered the same way when a campaign is
compiled for sending and when a click looks for its target (without compiling anything)."""

from __future__ import annotations

import html as htmllib
import re

HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
TEXT_URL = re.compile(r"""https?://[^\s<>"']+""")


def _trackable(url: str) -> bool:
    stripped = url.strip().lower()
    return stripped.startswith(("http://", "https://")) and "unsubscribe_url" not in stripped


def rewrite_links(source: str, links: list[str], pattern: re.Pattern[str], html: bool) -> str:
    """`source` with each trackable link replaced by `{{ __link_N }}`, N its place in `links`
    (where its address is appended)."""

    def replace(match: re.Match[str]) -> str:
        url = match.group(3) if html else match.group(0)
        if not _trackable(htmllib.unescape(url) if html else url):
            return match.group(0)
        links.append(htmllib.unescape(url) if html else url)
        placeholder = f"{{{{ __link_{len(links) - 1} }}}}"
        if html:
            return f"{match.group(1)}{match.group(2)}{placeholder}{match.group(2)}"
        return placeholder

    return pattern.sub(replace, source)


def tracked_links(html: str | None, text: str | None) -> list[str]:
    """The links `compile_variant` tracks, in the same order, without compiling any template:
    what a click needs to find its target."""
    links: list[str] = []
    if html:
        rewrite_links(html, links, HREF, html=True)
    if text:
        rewrite_links(text, links, TEXT_URL, html=False)
    return links
