"""A campaign's message before it is sent: rendered for one contact (the review step and
`GET .../render`), and sent as a test to a few addresses (`POST .../test`). Neither touches the
campaign's deliveries, figures or the month's quota."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailcast.audiences import repository as audiences_repo
from mailcast.campaigns import ab
from mailcast.campaigns import repository as repo
from mailcast.campaigns import service as campaigns
from mailcast.config import Settings
from mailcast.contacts import repository as contacts_repo
from mailcast.contacts.addresses import normalise_email
from mailcast.db.models import Campaign, Contact
from mailcast.delivery import message as mime
from mailcast.delivery.render import RenderError, recipient_context
from mailcast.delivery.service import compose, plan_for
from mailcast.delivery.tokens import Purpose, TokenCodec
from mailcast.delivery.transport import Envelope, Outcome, Transport
from mailcast.errors import NotFound, RateLimited, ValidationFailed

# Tokens of a preview or a test send name no delivery: their links, pixel and unsubscribe
# record nothing (a link answers "not valid").
NO_DELIVERY = 0
SAMPLE_EMAIL = "preview@example.org"
TEST_SENDS_PER_HOUR = 20  # per campaign
TEST_SUBJECT_PREFIX = "[Test] "


@dataclass
class Preview:
    subject: str
    preview_text: str | None
    html: str | None
    text: str
    variant: str
    email: str
    contact_id: str | None  # None: no contact to show it as, a sample was used

    @property
    def personalized(self) -> bool:
        return self.contact_id is not None


@dataclass
class TestSent:
    email: str
    status: Outcome  # sent, deferred, bounced, failed, unknown (the relay's answer)
    message: str
    message_id: str | None = None


@dataclass
class TestSend:
    campaign_id: str
    variant: str
    subject: str
    recipients: list[TestSent] = field(default_factory=list)


def _variant(campaign: Campaign, variant: str | None) -> str:
    variant = variant or "a"
    if variant == "b" and not ab.enabled(campaign):
        raise ValidationFailed.on(
            "variant", "no variant b", "variant: this campaign has no A/B test, so no variant b"
        )
    return variant


async def _contact(
    session: AsyncSession, campaign: Campaign, contact_id: str | None
) -> Contact | None:
    if contact_id:
        contact = await contacts_repo.get(session, campaign.account_id, contact_id)
        if contact is None:
            raise NotFound("No such contact", {"contact_id": contact_id})
        return contact
    first = await audiences_repo.reachable_members(session, campaign.audience_id, 1)
    return first[0] if first else None


async def render_preview(
    session: AsyncSession,
    settings: Settings,
    codec: TokenCodec,
    campaign: Campaign,
    contact_id: str | None,
    variant: str | None,
    now: datetime,
) -> Preview:
    """The message as `contact_id` (by default the audience's first member who can be mailed, or
    else a sample contact) would get it: merge tags filled, links tracked, the pixel and the
    unsubscribe link in place."""
    variant = _variant(campaign, variant)
    contact = await _contact(session, campaign, contact_id)
    plan = await plan_for(
        session, settings, await campaigns.content_as_sent(session, campaign), variant
    )
    email = contact.email if contact else SAMPLE_EMAIL
    try:
        _, _, rendered = compose(
            plan,
            codec,
            settings,
            now,
            NO_DELIVERY,
            email,
            contact.first_name if contact else None,
            contact.last_name if contact else None,
            contact.attributes if contact else None,
        )
        preview = _preview_text(plan.compiled.preview_text, contact, email)
    except RenderError as exc:
        raise ValidationFailed.on(
            "html", str(exc), f"The campaign cannot be rendered: {exc}"
        ) from exc
    return Preview(
        rendered.subject,
        preview,
        rendered.html,
        rendered.text,
        variant,
        email,
        contact.id if contact else None,
    )


def _preview_text(template: Any, contact: Contact | None, email: str) -> str | None:
    if template is None:
        return None
    context = recipient_context(
        email,
        contact.first_name if contact else None,
        contact.last_name if contact else None,
        contact.attributes if contact else None,
        "",
    )
    return str(template.render(**context))


async def send_test(
    session: AsyncSession,
    settings: Settings,
    codec: TokenCodec,
    transport: Transport,
    account_id: str,
    campaign_id: str,
    emails: list[str],
    variant: str | None,
    now: datetime,
) -> TestSend:
    """Send the campaign's message now to these addresses only, the subject marked "[Test] ", each
    personalised as the contact with that address if there is one. Counted neither in the
    campaign's figures nor in the quota; at most TEST_SENDS_PER_HOUR messages a campaign an hour."""
    campaign = await campaigns.get_campaign(session, account_id, campaign_id)
    variant = _variant(campaign, variant)
    addresses = []
    for i, raw in enumerate(emails):
        try:
            addresses.append(normalise_email(raw))
        except ValueError as exc:
            raise ValidationFailed.on(f"emails.{i}", str(exc)) from exc
    addresses = list(dict.fromkeys(addresses))
    since = now - timedelta(hours=1)
    sent = await repo.test_sends_since(session, campaign.id, since)
    if sent + len(addresses) > TEST_SENDS_PER_HOUR:
        oldest = await repo.oldest_test_send_since(session, campaign.id, since)
        retry = max(1, int(((oldest or now) + timedelta(hours=1) - now).total_seconds()) + 1)
        raise RateLimited(
            f"At most {TEST_SENDS_PER_HOUR} test messages a campaign an hour; {sent} were sent in "
            "the last hour",
            {"limit": TEST_SENDS_PER_HOUR, "used": sent, "retry_after": retry},
            retry_after=retry,
        )
    plan = await plan_for(
        session, settings, await campaigns.content_as_sent(session, campaign), variant
    )
    result = TestSend(campaign.id, variant, "")
    for email in addresses:
        contact = await contacts_repo.by_email(session, account_id, email)
        try:
            data, message_id, rendered = compose(
                plan,
                codec,
                settings,
                now,
                NO_DELIVERY,
                email,
                contact.first_name if contact else None,
                contact.last_name if contact else None,
                contact.attributes if contact else None,
                subject_prefix=TEST_SUBJECT_PREFIX,
            )
        except RenderError as exc:
            result.recipients.append(TestSent(email, Outcome.FAILED, str(exc)))
            continue
        result.subject = rendered.subject
        envelope = Envelope(
            sender=f"bounces+{codec.encode(NO_DELIVERY, Purpose.BOUNCE)}@{plan.bounce_domain}",
            recipient=email,
            data=data,
            sender_domain=plan.sender_domain,
            wire_ready=mime.builds_itself(email),
        )
        answer = await transport.send(envelope)
        # A relay that is down answers for itself: the test was not tried, as a 4xx would say.
        status = Outcome.DEFERRED if answer.outcome is Outcome.PAUSED else answer.outcome
        result.recipients.append(TestSent(email, status, answer.message, message_id))
    await repo.record_test_sends(session, campaign.id, addresses, now)
    return result
