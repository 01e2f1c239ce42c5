"""The statuses a campaign and a delivery go through, as stored (one lower module, so that the
campaign and delivery packages name them without importing each other)."""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # waiting for its first attempt
    DEFERRED = (
        "deferred"  # waiting for another attempt (a 4xx, a connection failed, a paused relay)
    )
    HELD = "held"  # an A/B holdback, queued when the winner is picked
    SENDING = "sending"  # on the wire: its outcome is not recorded yet
    SENT = "sent"
    BOUNCED = "bounced"
    FAILED = "failed"
    UNKNOWN = "unknown"  # in doubt and not sent again (see docs/reliability.md)


# Campaigns that still need their audience and template.
UNFINISHED = frozenset(
    {
        CampaignStatus.DRAFT,
        CampaignStatus.SCHEDULED,
        CampaignStatus.SENDING,
        CampaignStatus.PAUSED,
    }
)

# A delivery waiting for (another) attempt.
PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
