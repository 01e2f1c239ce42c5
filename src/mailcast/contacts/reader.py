"""The reading process of a large import (`python -m mailcast.contacts.reader`): it parses the
file from a record's start and writes the batches, prepared for the contact store, to its
standard output (each a pickle after its length, 8 bytes big-endian), then None. It imports only
what reading needs, so it stays small."""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

from mailcast.contacts.csvfile import Batch, Layout, Row, batches
from mailcast.ids import new_id


def copy_records(rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """Rows as PostgreSQL's COPY takes them into the import's batch table (a new contact's id
    included)."""
    dumps = json.dumps
    return [
        (
            new_id("ct"),
            r.email,
            r.first_name,
            r.last_name,
            dumps(r.metadata) if r.metadata else None,
            r.unsubscribed,
        )
        for r in rows
    ]


def as_rows(rows: Sequence[Row]) -> list[Row]:
    return list(rows)


# How each contact store takes its rows (ContactStore.preparer names one).
PREPARERS: dict[str, Callable[[Sequence[Row]], Any]] = {"copy": copy_records, "rows": as_rows}


def prepared(
    handle: BinaryIO, layout: Layout, offset: int, line: int, size: int, preparer: str
) -> Iterator[Batch]:
    """The batches from `offset`, each with its rows prepared (and the rows themselves dropped)."""
    prepare = PREPARERS[preparer]
    for batch in batches(handle, layout, offset, line, size):
        batch.prepared = prepare(list(batch.rows.values()))
        batch.rows = {}
        yield batch


def main(argv: list[str]) -> int:
    path, layout, offset, line, size, preparer = argv
    out = sys.stdout.buffer

    def send(value: Batch | None) -> None:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "big") + data)
        out.flush()

    try:
        with open(path, "rb") as handle:
            for batch in prepared(
                handle,
                Layout.from_json(json.loads(layout)),
                int(offset),
                int(line),
                int(size),
                preparer,
            ):
                send(batch)
        send(None)
    except BrokenPipeError:  # the importer stopped reading
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
