"""What a batch of tracking hits means, given what the deliveries' rows already record: which hits
are events (a click; the first open by a person, the first open by a machine), which pixel loads
are only counts, and which first opens and first clicks the rows keep. No database here: the event
stores (`tracking/store.py`) read the rows, call `classify`, and write what it returns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


class Hit(NamedTuple):  # a tuple: made on every pixel load and click
    kind: str  # "open" (a pixel load) or "click"
    delivery_id: int
    at: datetime
    user_agent: str | None
    url: str | None = None


class Recorded(NamedTuple):
    """What a delivery's row records before a batch is written."""

    sent_at: datetime | None
    person_opened: bool
    machine_opened: bool
    person_clicked: bool


class Known(NamedTuple):
    """What a process knows of a delivery once a write of its hits committed: when it was sent,
    and whether its first open by a person and by a machine are recorded (they never stop being)."""

    sent_at: datetime
    person_opened: bool
    machine_opened: bool


# Whether a hit is a machine's: (user agent, when its message was sent, when, window seconds).
MachineTest = Callable[[str | None, datetime | None, datetime, int], bool]

EVENT_COLUMNS = ("delivery_id", "type", "at", "url", "user_agent", "machine")


@dataclass
class Changes:
    """What a batch writes: event rows, and per delivery its loads to add and the first opens and
    first click to keep where none is kept yet."""

    events: list[dict[str, Any]] = field(default_factory=list)
    loads: Counter[int] = field(default_factory=Counter)
    opened: dict[int, datetime] = field(default_factory=dict)  # a person's first open
    machine_opened: dict[int, datetime] = field(default_factory=dict)
    clicked: dict[int, datetime] = field(default_factory=dict)  # a person's first click
    known: dict[int, Known] = field(default_factory=dict)

    def changed(self) -> list[int]:
        """The deliveries whose rows change, in id order (the order their locks are taken in)."""
        return sorted(
            self.loads.keys()
            | self.opened.keys()
            | self.clicked.keys()
            | self.machine_opened.keys()
        )


def classify(
    hits: Iterable[Hit],
    recorded: dict[int, Recorded],
    window_seconds: int,
    is_machine: MachineTest,
) -> Changes:
    """Each click is an event; the first open of a delivery (once as a machine's, once as a
    person's) is an event and every pixel load is counted; a click records the open too when none
    was recorded (images may be blocked). A person's first open and first click are kept on the
    delivery. Hits of deliveries not in `recorded` are dropped. `known`: the rows as they will be
    once the changes are written, for the deliveries that were sent."""
    out = Changes()
    # (delivery, machine) pairs whose first open is recorded, and deliveries a person clicked.
    seen = {(i, False) for i, r in recorded.items() if r.person_opened}
    seen |= {(i, True) for i, r in recorded.items() if r.machine_opened}
    clicked_before = {i for i, r in recorded.items() if r.person_clicked}
    for hit in hits:
        row = recorded.get(hit.delivery_id)
        if row is None:
            continue
        machine = is_machine(hit.user_agent, row.sent_at, hit.at, window_seconds)
        agent = (hit.user_agent or "")[:1000] or None
        if (hit.delivery_id, machine) not in seen:
            seen.add((hit.delivery_id, machine))
            out.events.append(
                {
                    "delivery_id": hit.delivery_id,
                    "type": "open",
                    "at": hit.at,
                    "url": None,
                    "user_agent": agent,
                    "machine": machine,
                }
            )
            (out.machine_opened if machine else out.opened)[hit.delivery_id] = hit.at
        if hit.kind == "open":
            out.loads[hit.delivery_id] += 1
        else:
            out.events.append(
                {
                    "delivery_id": hit.delivery_id,
                    "type": "click",
                    "at": hit.at,
                    "url": (hit.url or "")[:2000],
                    "user_agent": agent,
                    "machine": machine,
                }
            )
            if not machine and hit.delivery_id not in clicked_before:
                clicked_before.add(hit.delivery_id)
                out.clicked[hit.delivery_id] = hit.at
    out.known = {
        delivery_id: Known(row.sent_at, (delivery_id, False) in seen, (delivery_id, True) in seen)
        for delivery_id, row in recorded.items()
        if row.sent_at is not None
    }
    return out
