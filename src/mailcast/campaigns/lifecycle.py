"""The campaign state machine: one transition table, and the actions the API offers on it."""

from __future__ import annotations

from enum import StrEnum

from mailcast.statuses import UNFINISHED as UNFINISHED
from mailcast.statuses import CampaignStatus

Status = CampaignStatus

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.SCHEDULED, Status.SENDING, Status.CANCELLED}),
    # scheduled -> scheduled is a new time; scheduled -> draft is an update with scheduled_at: null
    Status.SCHEDULED: frozenset({Status.DRAFT, Status.SCHEDULED, Status.SENDING, Status.CANCELLED}),
    Status.SENDING: frozenset({Status.PAUSED, Status.SENT}),
    Status.PAUSED: frozenset({Status.SENDING, Status.CANCELLED}),
    Status.SENT: frozenset(),
    Status.CANCELLED: frozenset(),
}

EDITABLE = frozenset({Status.DRAFT, Status.SCHEDULED})
DELETABLE = frozenset({Status.DRAFT, Status.CANCELLED})


def can(source: Status, target: Status) -> bool:
    return target in ALLOWED[source]


class Action(StrEnum):
    SEND = "send"
    SCHEDULE = "schedule"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


# action -> (states it may start from, state it leads to); every pair is in ALLOWED.
ACTIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.SEND: (frozenset({Status.DRAFT, Status.SCHEDULED}), Status.SENDING),
    Action.SCHEDULE: (frozenset({Status.DRAFT, Status.SCHEDULED}), Status.SCHEDULED),
    Action.PAUSE: (frozenset({Status.SENDING}), Status.PAUSED),
    Action.RESUME: (frozenset({Status.PAUSED}), Status.SENDING),
    Action.CANCEL: (frozenset({Status.DRAFT, Status.SCHEDULED, Status.PAUSED}), Status.CANCELLED),
}

assert all(can(s, t) for sources, t in ACTIONS.values() for s in sources)
