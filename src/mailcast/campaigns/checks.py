"""Pre-send checks: what the review step lists before a campaign goes out, each with its state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.accounts import service as accounts
from mailcast.campaigns import ab
from mailcast.campaigns import repository as repo
from mailcast.campaigns import service as campaigns
from mailcast.config import Settings
from mailcast.db.models import Campaign
from mailcast.delivery import repository as delivery_repo
from mailcast.delivery.render import has_unsubscribe_link
from mailcast.domains import service as domains

OK, WARN, FAIL = "ok", "warn", "fail"
# Merge tags a message knows; `metadata.*` is whatever a contact carries.
KNOWN_TAGS = {"email", "first_name", "last_name", "metadata", "unsubscribe_url", "postal_address"}
_OUTPUT = re.compile(r"{{-?\s*([A-Za-z_][\w]*)")
_LIQUID_LOCALS = re.compile(r"{%-?\s*(?:assign|capture|for)\s+([A-Za-z_]\w*)")


@dataclass
class Check:
    name: str
    state: str  # ok, warn, fail
    message: str


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href is not None:
                self.hrefs.append(href.strip())


def unknown_tags(*sources: str | None) -> list[str]:
    unknown: set[str] = set()
    for source in filter(None, sources):
        local = set(_LIQUID_LOCALS.findall(source))
        unknown.update(
            name for name in _OUTPUT.findall(source) if name not in KNOWN_TAGS and name not in local
        )
    return sorted(unknown)


def bad_links(html: str | None) -> list[str]:
    if not html:
        return []
    parser = _Links()
    parser.feed(html)
    return [
        href
        for href in parser.hrefs
        if not href.startswith(("http://", "https://", "mailto:", "tel:", "#", "{{"))
    ]


async def run(
    session: AsyncSession,
    settings: Settings,
    campaign: Campaign,
    now: datetime,
    recipients: int | None = None,
) -> list[Check]:
    """The checks, on the content as it would be sent (templates filled in) and the audience now
    (`recipients`: the count, when the caller has it already)."""
    content = await campaigns.content_as_sent(session, campaign)
    out: list[Check] = []
    sender = campaigns.sender_address(campaign.from_address).rpartition("@")[2]
    domain = await delivery_repo.signing_domain(session, campaign.account_id, sender)
    if domain is None or domain.status != "verified":
        out.append(
            Check(
                "sender_domain", FAIL, f"{sender} is not a verified sender domain of this account"
            )
        )
    elif not domains.signs_with_dkim(domain):
        out.append(
            Check(
                "sender_domain",
                WARN,
                f"{sender} is verified, but its DKIM record is not: mail goes out unsigned",
            )
        )
    else:
        out.append(Check("sender_domain", OK, f"{sender} is verified and its mail is DKIM-signed"))
    variants = ["a", "b"] if ab.enabled(content) else ["a"]
    parts = [ab.content(content, v) for v in variants]
    if all(has_unsubscribe_link(p["html"]) or has_unsubscribe_link(p["text"]) for p in parts):
        out.append(Check("unsubscribe_link", OK, "The body has an unsubscribe link"))
    else:
        out.append(
            Check(
                "unsubscribe_link",
                WARN,
                "The body has no {{ unsubscribe_url }} link: a footer with one "
                "(and the account's postal address) is added",
            )
        )
    account = await accounts.get_account(session, campaign.account_id)
    if recipients is None:
        recipients = await repo.recipient_count(session, campaign, now)
    period, quota, used = await accounts.quota_used(session, settings, account, now)
    if campaign.send_started_at is not None:
        out.append(Check("quota", OK, f"Sending started; {used:,} of {quota:,} used in {period}"))
    elif used + recipients > quota:
        out.append(
            Check(
                "quota",
                FAIL,
                f"{recipients:,} recipients do not fit in what is left of {period}'s quota "
                f"({quota - used:,} of {quota:,})",
            )
        )
    else:
        out.append(
            Check(
                "quota",
                OK,
                f"{recipients:,} recipients; {quota - used:,} of {quota:,} left in {period}",
            )
        )
    tags = unknown_tags(*(p[f] for p in parts for f in ("subject", "html", "text", "preview_text")))
    if tags:
        out.append(
            Check("merge_tags", FAIL, "Unknown merge tags (they render empty): " + ", ".join(tags))
        )
    else:
        out.append(Check("merge_tags", OK, "Every merge tag is known"))
    links = sorted({link for p in parts for link in bad_links(p["html"])})
    if links:
        out.append(
            Check(
                "links", FAIL, "Links that are not absolute http(s) URLs: " + ", ".join(links[:10])
            )
        )
    else:
        out.append(Check("links", OK, "Every link is an absolute http(s) URL"))
    return out
