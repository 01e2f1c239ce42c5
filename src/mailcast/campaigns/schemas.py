from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from typing import Annotated

from mailcast.api.schemas import Input, SingleLine, Timestamp
from mailcast.campaigns.lifecycle import Status


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be an absolute http(s) URL")
    return value


HttpUrlStr = Annotated[SingleLine, AfterValidator(_http_url)]
Body = Annotated[str, Field(max_length=900_000)]


class CampaignCreate(Input):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    name: SingleLine = Field(min_length=1, max_length=200)
    subject: SingleLine = Field(min_length=1, max_length=998)
    from_: SingleLine = Field(alias="from", min_length=3, max_length=400, examples=["Newsletter <news@acme.com>"])
    audience_id: str = Field(min_length=1, max_length=40)
    html: Body | None = None
    text: Body | None = None
    template_id: str | None = Field(default=None, max_length=40)
    unsubscribe_url: HttpUrlStr = Field(max_length=2000)
    scheduled_at: datetime | None = Field(default=None, description="ISO 8601; omit to send at once")
    reply_to: SingleLine | None = Field(default=None, max_length=400)
    preview_text: SingleLine | None = Field(default=None, max_length=500)
    draft: bool = Field(default=False, description="Keep the campaign a draft instead of sending or scheduling it")


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
    scheduled_at: datetime | None = Field(default=None, description="A new time; null turns a scheduled campaign back into a draft")
    reply_to: SingleLine | None = Field(default=None, max_length=400)
    preview_text: SingleLine | None = Field(default=None, max_length=500)


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


class StatsOut(BaseModel):
    """GET /v1/campaigns/{id}/stats, exactly the spec's shape."""

    campaign_id: str
    total: int
    sent: int
    delivered: int
    opened: int
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
    stats: CampaignStatsOut
    created_at: Timestamp
    updated_at: Timestamp
