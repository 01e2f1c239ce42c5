from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from mailcast.api.schemas import Input, SingleLine, Timestamp
from mailcast.campaigns.lifecycle import Status

if TYPE_CHECKING:
    from mailcast.config import Settings
    from mailcast.db.models import Campaign


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be an absolute http(s) URL")
    return value


HttpUrlStr = Annotated[SingleLine, AfterValidator(_http_url)]
Body = Annotated[str, Field(max_length=900_000)]


class VariantB(Input):
    """Overrides for variant B; every field left out falls back to variant A's."""

    subject: SingleLine | None = Field(default=None, min_length=1, max_length=998)
    preview_text: SingleLine | None = Field(default=None, max_length=500)
    html: Body | None = None
    text_content: Body | None = None
    template_id: str | None = Field(default=None, max_length=40)

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


# A JSON number (33.5 as well as 50); booleans and strings are refused, not read as 1 or parsed.
Number = StrictInt | StrictFloat


class AbTest(Input):
    enabled: StrictBool
    split_percent: Number = Field(
        default=50, ge=1, le=99, description="% of the test sample receiving variant B"
    )
    sample_percent: Number = Field(
        default=100,
        ge=1,
        le=100,
        description="% of the audience in the test; the rest is the holdback",
    )
    winner_metric: Literal["open_rate", "click_rate"] | None = Field(
        default=None, description="Required when sample_percent < 100"
    )
    evaluate_after_minutes: Number = Field(default=60, ge=5, le=10080)
    variant_b: VariantB | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AbTest:
        if self.enabled and not (self.variant_b and self.variant_b.overrides()):
            raise ValueError(
                "variant_b: at least one override (subject, preview_text, html, text_content or "
                "template_id) is required when enabled is true"
            )
        if self.enabled and self.sample_percent < 100 and self.winner_metric is None:
            raise ValueError(
                "winner_metric: required when sample_percent is below 100 (it picks the winner "
                "the holdback receives)"
            )
        return self


class OpenedRule(Input):
    type: Literal["opened", "not_opened", "clicked", "not_clicked"]
    campaign_id: str = Field(min_length=1, max_length=40)


class MetadataRule(Input):
    type: Literal["metadata"]
    key: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    op: Literal["equals", "contains"]
    value: SingleLine = Field(max_length=1000)


AudienceRule = Annotated[OpenedRule | MetadataRule, Field(discriminator="type")]


class CampaignCreate(Input):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    name: SingleLine = Field(min_length=1, max_length=200)
    subject: SingleLine = Field(min_length=1, max_length=998)
    from_: SingleLine = Field(
        alias="from", min_length=3, max_length=400, examples=["Newsletter <news@acme.com>"]
    )
    audience_id: str = Field(min_length=1, max_length=40)
    html: Body | None = None
    text: Body | None = None
    template_id: str | None = Field(default=None, max_length=40)
    unsubscribe_url: HttpUrlStr = Field(max_length=2000)
    scheduled_at: datetime | None = Field(
        default=None, description="ISO 8601; omit to send at once"
    )
    reply_to: SingleLine | None = Field(default=None, max_length=400)
    preview_text: SingleLine | None = Field(default=None, max_length=500)
    draft: bool = Field(
        default=False, description="Keep the campaign a draft instead of sending or scheduling it"
    )
    ab_test: AbTest | None = None
    audience_rules: list[AudienceRule] | None = Field(
        default=None,
        max_length=50,
        description=(
            "Evaluated when sending starts: opened / not_opened / clicked / not_clicked a "
            "campaign, or metadata "
            "KEY equals / contains VALUE. All must hold."
        ),
    )


class CampaignUpdate(Input):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    name: SingleLine | None = Field(default=None, min_length=1, max_length=200)
    subject: SingleLine | None = Field(default=None, min_length=1, max_length=998)
    from_: SingleLine | None = Field(default=None, alias="from", min_length=3, max_length=400)
    audience_id: str | None = Field(default=None, min_length=1, max_length=40)
    html: Body | None = None
    text: Body | None = None
    template_id: str | None = Field(default=None, max_length=40)
    unsubscribe_url: HttpUrlStr | None = Field(default=None, max_length=2000)
    scheduled_at: datetime | None = Field(
        default=None, description="A new time; null turns a scheduled campaign back into a draft"
    )
    reply_to: SingleLine | None = Field(default=None, max_length=400)
    preview_text: SingleLine | None = Field(default=None, max_length=500)
    ab_test: AbTest | None = None
    audience_rules: list[AudienceRule] | None = Field(default=None, max_length=50)


class ScheduleRequest(Input):
    scheduled_at: datetime


class CampaignStatsOut(BaseModel):
    """The sendry SDK's CampaignStats."""

    total_recipients: int
    sent_count: int
    delivered_count: int
    opened_count: int
    clicked_count: int
    bounced_count: int
    complained_count: int
    unsubscribed_count: int
    failed_count: int
    unknown_count: int
    machine_opened_count: int = Field(
        description="Opened only by machines (privacy proxies, scanners): "
        "not in opened_count, counted as non-openers"
    )


class StatsOut(BaseModel):
    """GET /v1/campaigns/{id}/stats, exactly the spec's shape."""

    campaign_id: str
    total: int
    sent: int
    delivered: int
    opened: int
    machine_opened: int = Field(
        description="Opened only by machines (privacy proxies, scanners, or within "
        "MAILCAST_MACHINE_OPEN_WINDOW_SECONDS of sending): not in opened"
    )
    clicked: int
    bounced: int
    complained: int
    unsubscribed: int


class CampaignOut(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    id: str
    name: str
    subject: str
    from_: str = Field(serialization_alias="from")
    reply_to: str | None
    preview_text: str | None
    audience_id: str
    template_id: str | None
    html: str | None
    text: str | None
    unsubscribe_url: str
    status: Status
    scheduled_at: Timestamp | None
    send_started_at: Timestamp | None
    sent_at: Timestamp | None
    cancelled_at: Timestamp | None
    last_error: str | None = None
    ab_test: dict[str, Any] | None = None
    audience_rules: list[dict[str, Any]] = []
    resent_from_id: str | None = None
    email_id: str | None = None
    stats: CampaignStatsOut
    created_at: Timestamp
    updated_at: Timestamp
    relay_unreachable_since: Timestamp | None = Field(
        default=None,
        description="Sending, and the workers cannot reach its SMTP relay since then: its "
        "messages wait (they are not failed) and the relay is probed until it answers",
    )
    relay_error: str | None = Field(
        default=None, description="The last connection error, while unreachable"
    )


class VariantResult(BaseModel):
    sent: int
    opened: int
    clicked: int
    open_rate: float
    click_rate: float


class AbResults(BaseModel):
    """GET /v1/campaigns/{id}/ab-test/results, the spec's shape."""

    enabled: StrictBool
    variant_a: VariantResult
    variant_b: VariantResult
    winner_variant: Literal["a", "b"] | None
    winner_evaluated_at: Timestamp | None
    winner_metric: str | None
    holdback_total: int
    sample_percent: int | float
    split_percent: int | float
    evaluate_after_minutes: int | float


class PickWinner(Input):
    variant: Literal["a", "b"]


class ResendCampaign(BaseModel):
    """The new draft, in the shape the Sequenzy API documents (camelCase by alias)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    subject: str
    status: Status
    labels: list[str] = []
    email_id: str = Field(serialization_alias="emailId")
    scheduled_at: Timestamp | None = Field(serialization_alias="scheduledAt")
    sent_at: Timestamp | None = Field(serialization_alias="sentAt")
    created_at: Timestamp = Field(serialization_alias="createdAt")
    url: str
    preview_url: str = Field(serialization_alias="previewUrl")

    @classmethod
    def of(cls, campaign: Campaign, settings: Settings) -> ResendCampaign:
        url = settings.public_url(
            f"/dashboard/company/{campaign.account_id}/campaign/{campaign.id}"
        )
        return cls(
            id=campaign.id,
            name=campaign.name,
            subject=campaign.subject,
            status=Status(campaign.status),
            email_id=campaign.email_id or "",
            scheduled_at=campaign.scheduled_at,
            sent_at=campaign.sent_at,
            created_at=campaign.created_at,
            url=url,
            preview_url=f"{url}?step=review",
        )


class ResendOut(BaseModel):
    """snake_case (the /v1 dialect; served without aliases)."""

    success: bool
    campaign: ResendCampaign
    estimated_non_opener_count: int


class SequenzyResendOut(BaseModel):
    success: bool
    campaign: ResendCampaign
    estimated_non_opener_count: int = Field(serialization_alias="estimatedNonOpenerCount")


class TestSendRequest(Input):
    emails: list[Annotated[str, Field(min_length=3, max_length=320)]] = Field(
        min_length=1, max_length=5, description="1-5 addresses to send the test to"
    )
    variant: Literal["a", "b"] | None = Field(
        default=None, description="The A/B variant to send (default a)"
    )


class TestSentOut(BaseModel):
    email: str
    status: str = Field(description="The relay's answer: sent, deferred, bounced or failed")
    message: str
    message_id: str | None


class TestSendOut(BaseModel):
    campaign_id: str
    variant: str
    subject: str
    recipients: list[TestSentOut]


class RenderOut(BaseModel):
    """The message as one contact would get it."""

    campaign_id: str
    variant: str
    contact_id: str | None = Field(
        description="The contact it was rendered for; null: a sample contact"
    )
    email: str
    subject: str
    preview_text: str | None
    html: str | None
    text: str


# The Sequenzy dialect's render, check and test (what its SDK sends and parses; camelCase by alias).
class SequenzyRenderRequest(BaseModel):
    """Personalisation by a stored contact (`subscriberId`) and the A/B variant (`variantId`: a or
    b); the SDK's other fields are accepted and have no effect here."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    subscriber_id: str | None = Field(default=None, alias="subscriberId", max_length=40)
    variant_id: Literal["a", "b"] | None = Field(default=None, alias="variantId")


class SequenzyTestRequest(Input):
    to: str = Field(min_length=3, max_length=320)


class SequenzyEntity(BaseModel):
    id: str
    type: str = "campaign"
    variant_id: str | None = Field(default=None, serialization_alias="variantId")


class SequenzyMergeTag(BaseModel):
    tag: str
    reason: str = "unknown"


class SequenzyRenderOut(BaseModel):
    success: bool = True
    entity: SequenzyEntity
    html: str
    locale: str = "en"
    personalized: bool
    preview_text: str | None = Field(serialization_alias="previewText")
    subject: str
    tracking_applied: bool = Field(default=False, serialization_alias="trackingApplied")
    # No block conditions here: everything is evaluated.
    unevaluated_conditions: list[dict[str, Any]] = Field(
        default=[], serialization_alias="unevaluatedConditions"
    )
    unresolved_merge_tags: list[SequenzyMergeTag] = Field(serialization_alias="unresolvedMergeTags")


class SequenzyIssue(BaseModel):
    category: Literal["subject", "preview", "content"]
    severity: Literal["error", "warning", "info"]
    rule: str
    message: str


class SequenzyCheckOut(BaseModel):
    success: bool = True
    entity: SequenzyEntity
    subject: str
    preview_text: str | None = Field(serialization_alias="previewText")
    issues: list[SequenzyIssue]
    score: int
    grade: Literal["A", "B", "C", "D", "F"]
    links_checked: bool = Field(default=False, serialization_alias="linksChecked")
    unresolved_merge_tags: list[SequenzyMergeTag] = Field(serialization_alias="unresolvedMergeTags")


class SequenzyTestOut(BaseModel):
    success: bool
    campaign_id: str = Field(serialization_alias="campaignId")
    email_send_id: str | None = Field(serialization_alias="emailSendId")
    recipient_email: str = Field(serialization_alias="recipientEmail")
    message: str
