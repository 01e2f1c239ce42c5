"""Reading contact CSV files as a stream: layouts, quoting, aliases, and resuming at any batch."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcast.contacts.csvfile import CsvError, batches, read_layout


def _read(data: bytes, size: int = 1000):
    handle = io.BytesIO(data)
    layout = read_layout(handle)
    return layout, list(batches(handle, layout, layout.header_bytes, 2, size))


def test_bom_semicolons_aliases_and_quotes():
    data = (
        "\ufeffE-mail Address;First Name;Surname;City;Opted Out\r\n"
        '"ada@example.org";Ada;Lovelace;"London; UK";no\r\n'
        "\r\n"
        'GRACE@Example.org;"Grace ""Amazing""";Hopper;"New\nYork";yes\r\n'
    ).encode()
    layout, (batch,) = _read(data)
    assert layout.delimiter == ";" and layout.metadata == ((3, "city"),)
    ada, grace = batch.rows["ada@example.org"], batch.rows["grace@example.org"]
    assert (ada.first_name, ada.last_name, ada.metadata, ada.unsubscribed) == (
        "Ada",
        "Lovelace",
        {"city": "London; UK"},
        False,
    )
    assert (
        grace.first_name == 'Grace "Amazing"'
        and grace.metadata == {"city": "New\nYork"}
        and grace.unsubscribed
    )
    assert batch.records == 2 and batch.rejected == [] and batch.offset == len(data)


def test_bad_rows_are_rejected_with_their_line_and_duplicates_merged():
    data = (
        b"email,first_name,last_name,plan\n"
        b"a@example.org,A,,free\n"
        b"not-an-address,B,,\n"
        b"\n"
        b",no address,,\n"
        b'"multi\nline@example.org",C,,\n'
        b"A@example.org,,Later,pro\n"
        b"d@example.org," + b"x" * 201 + b",,\n"
    )
    _, (batch,) = _read(data)
    assert [(r.line, r.email) for r in batch.rejected] == [
        (3, "not-an-address"),
        (5, ""),
        (6, "multi\nline@example.org"),
        (9, "d@example.org"),
    ]
    assert (
        "no email address" in batch.rejected[1].reason
        and "longer than 200" in batch.rejected[3].reason
    )
    merged = batch.rows["a@example.org"]
    assert (merged.first_name, merged.last_name, merged.metadata) == ("A", "Later", {"plan": "pro"})
    assert (
        batch.repeats == 1 and batch.records == 6 and batch.line == 10
    )  # the blank line is no record


def test_a_file_without_an_email_column_is_refused():
    with pytest.raises(CsvError, match="no email column"):
        read_layout(io.BytesIO(b"name,city\nAda,London\n"))
    with pytest.raises(CsvError, match="empty"):
        read_layout(io.BytesIO(b""))


_cells = st.text(alphabet='ab,;"\n é', max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 30), _cells, _cells), max_size=40),
    size=st.integers(1, 7),
)
def test_resuming_at_any_batch_reads_the_same_rest(rows, size):
    """What a worker that died after a batch leaves: the next reads from the batch's offset and
    line, and gets exactly the records a single reading would have given after it."""
    lines = ["email,first_name,city"]
    for n, first, city in rows:
        quote = lambda v: '"' + v.replace('"', '""') + '"'  # noqa: E731
        lines.append(f"u{n}@example.org,{quote(first)},{quote(city)}")
    data = ("\n".join(lines) + "\n").encode()
    layout, whole = _read(data, size)
    for i, batch in enumerate(whole):
        handle = io.BytesIO(data)
        rest = list(batches(handle, layout, batch.offset, batch.line, size))
        assert [(b.rows, [(r.line, r.email) for r in b.rejected], b.records) for b in rest] == [
            (b.rows, [(r.line, r.email) for r in b.rejected], b.records) for b in whole[i + 1 :]
        ]
