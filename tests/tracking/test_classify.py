"""What a batch of hits means, apart from any database: checked against a plain restatement of the
rules over any batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from mailcast.tracking.classify import Hit, Recorded, classify

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def is_machine(agent: str | None, sent_at: datetime | None, at: datetime, window: int) -> bool:
    return agent == "scanner"


recorded_rows = st.dictionaries(
    st.integers(1, 6),
    st.builds(
        Recorded,
        st.one_of(st.none(), st.just(T0)),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    max_size=5,
)
hits = st.lists(
    st.builds(
        Hit,
        st.sampled_from(["open", "click"]),
        st.integers(1, 7),  # 7 is never recorded: a delivery that no longer exists
        st.integers(0, 10_000).map(lambda s: T0 + timedelta(seconds=s)),
        st.sampled_from(["Mozilla/5.0", "scanner", None]),
        st.just("https://example.com/"),
    ),
    max_size=30,
)


@given(recorded_rows, hits)
def test_a_batch_is_classified_by_the_rules(recorded, batch):
    changes = classify(batch, recorded, 0, is_machine)
    ours = [h for h in batch if h.delivery_id in recorded]
    for delivery_id, row in recorded.items():
        mine = [h for h in ours if h.delivery_id == delivery_id]
        people = [h for h in mine if h.user_agent != "scanner"]
        machines = [h for h in mine if h.user_agent == "scanner"]
        opens = [
            (e["machine"], e["at"])
            for e in changes.events
            if e["delivery_id"] == delivery_id and e["type"] == "open"
        ]
        # One open event a kind at most, at the first hit of that kind, unless one is recorded.
        expected = []
        if people and not row.person_opened:
            expected.append((False, people[0].at))
        if machines and not row.machine_opened:
            expected.append((True, machines[0].at))
        assert sorted(opens) == sorted(expected)
        assert changes.opened.get(delivery_id) == (
            people[0].at if people and not row.person_opened else None
        )
        assert changes.machine_opened.get(delivery_id) == (
            machines[0].at if machines and not row.machine_opened else None
        )
        # Every pixel load counts; a person's first click is kept unless one is.
        assert changes.loads[delivery_id] == sum(h.kind == "open" for h in mine)
        person_clicks = [h for h in people if h.kind == "click"]
        assert changes.clicked.get(delivery_id) == (
            person_clicks[0].at if person_clicks and not row.person_clicked else None
        )
        if row.sent_at is not None:
            known = changes.known[delivery_id]
            assert known.person_opened == (row.person_opened or bool(people))
            assert known.machine_opened == (row.machine_opened or bool(machines))
        else:
            assert delivery_id not in changes.known
    # Each click is an event, in order; nothing of a delivery not recorded.
    clicks = [(e["delivery_id"], e["at"]) for e in changes.events if e["type"] == "click"]
    assert clicks == [(h.delivery_id, h.at) for h in ours if h.kind == "click"]
    assert all(e["delivery_id"] in recorded for e in changes.events)
    assert set(changes.changed()) <= set(recorded)
    assert changes.changed() == sorted(changes.changed())


def test_a_click_without_a_recorded_open_records_the_open_too():
    hit = Hit("click", 1, T0, "Mozilla/5.0", "https://example.com/")
    changes = classify([hit], {1: Recorded(T0, False, False, False)}, 0, is_machine)
    assert [e["type"] for e in changes.events] == ["open", "click"]
    assert (changes.opened, changes.clicked, dict(changes.loads)) == ({1: T0}, {1: T0}, {})
