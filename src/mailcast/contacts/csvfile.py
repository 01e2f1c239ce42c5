"""Contact lists as CSV, read as a stream: any size in flat memory, resumable at a record's end.

A file is UTF-8 (with or without a byte order mark; bytes that are not UTF-8, and NUL, read as
U+FFFD),
its first line a header, its delimiter "," or ";" (or a tab), whichever the header line has most
of outside quotes. Header names are matched without regard to case, spaces, "-" and "_", with
the aliases other tools export ("Email Address", "E-mail", "First Name", "Surname", ...); every
other column becomes metadata under its header (lower case)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from mailcast.contacts.addresses import normalise_email

_BOM = b"\xef\xbb\xbf"
_ALIASES = {
    "email": {
        "email",
        "emailaddress",
        "mail",
        "mailaddress",
        "emails",
        "subscriberemail",
        "contactemail",
    },
    "first_name": {"firstname", "first", "givenname", "forename", "fname"},
    "last_name": {"lastname", "last", "surname", "familyname", "lname"},
    "unsubscribed": {"unsubscribed", "unsubscribe", "optedout", "optout"},
}
_FIELD_OF = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
_TRUE = frozenset({"1", "true", "yes", "y", "t", "x"})
_MAX_FIELD = 200  # first and last names, as the API allows them
_CONTROL = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\u0085]"
)  # names are one line, as in the API
_MAX_METADATA = 16_384  # bytes of JSON, as the API allows


class CsvError(ValueError):
    """The file cannot be read as a contact list (no header, no email column)."""


@dataclass(frozen=True)
class Layout:
    """What the header said: kept with an import, so that reading resumes past it."""

    delimiter: str
    email: int
    first_name: int | None
    last_name: int | None
    unsubscribed: int | None
    metadata: tuple[tuple[int, str], ...]  # (column, key)
    header_bytes: int  # where the first record starts

    def to_json(self) -> dict[str, Any]:
        return {
            "delimiter": self.delimiter,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "unsubscribed": self.unsubscribed,
            "metadata": [list(pair) for pair in self.metadata],
            "header_bytes": self.header_bytes,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Layout:
        return cls(
            value["delimiter"],
            value["email"],
            value["first_name"],
            value["last_name"],
            value["unsubscribed"],
            tuple((i, key) for i, key in value["metadata"]),
            value["header_bytes"],
        )


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _delimiter(line: str) -> str:
    counts = {d: 0 for d in (",", ";", "\t")}
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def read_layout(handle: BinaryIO) -> Layout:
    """The header line of a file opened in binary at its start."""
    first = handle.readline()
    size = len(first)
    if first.startswith(_BOM):
        first = first[len(_BOM) :]
    line = first.decode("utf-8", "replace").rstrip("\r\n")
    if not line.strip():
        raise CsvError("The file is empty: it needs a header row with an email column")
    delimiter = _delimiter(line)
    names = next(csv.reader([line], delimiter=delimiter))
    columns: dict[str, int] = {}
    metadata = []
    for i, name in enumerate(names):
        field = _FIELD_OF.get(_key(name))
        if field is not None and field not in columns:
            columns[field] = i
        elif name.strip():
            metadata.append((i, name.strip().lower()))
    if "email" not in columns:
        raise CsvError(
            "The header row has no email column (it has: "
            f"{', '.join(n.strip() for n in names)[:500]})"
        )
    return Layout(
        delimiter,
        columns["email"],
        columns.get("first_name"),
        columns.get("last_name"),
        columns.get("unsubscribed"),
        tuple(metadata),
        size,
    )


class _Lines:
    """The file's lines as text, counting the bytes handed out: the csv reader takes exactly the
    lines of one record at a time, so after each record `offset` is where the next one starts."""

    def __init__(self, handle: BinaryIO, offset: int) -> None:
        self.handle = handle
        self.offset = offset

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.handle.readline()
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        if b"\x00" in raw:  # no database stores a NUL in text
            raw = raw.replace(b"\x00", "\ufffd".encode())
        return raw.decode("utf-8", "replace")


@dataclass
class Row:
    email: str
    first_name: str | None
    last_name: str | None
    metadata: dict[str, str] | None
    unsubscribed: bool


@dataclass
class Rejected:
    line: int
    email: str
    reason: str


@dataclass
class Batch:
    """Up to `size` records: the valid rows merged by address, the rejected ones, and where the
    file stands after the last record (the offset to resume from and the line it starts on)."""

    rows: dict[str, Row]
    rejected: list[Rejected]
    records: int
    repeats: int  # rows merged into an earlier row of the batch (the same address)
    offset: int
    line: int
    prepared: Any = None  # the rows as the contact store writes them (ContactStore.prepare)


def batches(handle: BinaryIO, layout: Layout, offset: int, line: int, size: int) -> Iterator[Batch]:
    """The records from `offset` (a record's start, on `line`), `size` at a time. A blank line is
    skipped; a record with no address or a bad one is rejected with its reason."""
    handle.seek(offset)
    lines = _Lines(handle, offset)
    email_at, first_at, last_at, unsub_at = (
        layout.email,
        layout.first_name,
        layout.last_name,
        layout.unsubscribed,
    )
    metadata = layout.metadata
    rows: dict[str, Row] = {}
    rejected: list[Rejected] = []
    records = repeats = 0
    reader = csv.reader(lines, delimiter=layout.delimiter)
    base, read = line, 0  # the line the reader started on; the lines it has read
    while True:
        start = base + read
        try:
            record = next(reader)
        except StopIteration:
            break
        except (
            csv.Error
        ) as exc:  # a field over the size limit: the record is lost, the rest is read
            rejected.append(Rejected(start, "", f"unreadable CSV: {exc}"))
            records += 1
            base, read = base + reader.line_num, 0
            reader = csv.reader(lines, delimiter=layout.delimiter)
            continue
        read = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        records += 1
        raw = record[email_at].strip() if email_at < len(record) else ""
        try:
            email = normalise_email(raw)
        except ValueError as exc:
            rejected.append(Rejected(start, raw[:320], str(exc) if raw else "no email address"))
        else:
            row = _row(email, record, first_at, last_at, unsub_at, metadata)
            if isinstance(row, str):
                rejected.append(Rejected(start, raw[:320], row))
            elif email in rows:
                repeats += 1
                _merge(rows[email], row)
            else:
                rows[email] = row
        if records >= size:
            yield Batch(rows, rejected, records, repeats, lines.offset, base + read)
            rows, rejected, records, repeats = {}, [], 0, 0
    if records or rows or rejected:
        yield Batch(rows, rejected, records, repeats, lines.offset, base + read)


def _cell(record: list[str], at: int | None) -> str | None:
    if at is None or at >= len(record):
        return None
    return record[at].strip() or None


def _row(
    email: str,
    record: list[str],
    first_at: int | None,
    last_at: int | None,
    unsub_at: int | None,
    metadata: tuple[tuple[int, str], ...],
) -> Row | str:
    """The row, or why it is refused. An empty cell gives nothing (an import never clears a
    field)."""
    first, last = _cell(record, first_at), _cell(record, last_at)
    if (first and len(first) > _MAX_FIELD) or (last and len(last) > _MAX_FIELD):
        return f"a name is longer than {_MAX_FIELD} characters"
    if (first and _CONTROL.search(first)) or (last and _CONTROL.search(last)):
        return "a name must be a single line without control characters"
    values = None
    if metadata:
        values = {key: value for at, key in metadata if (value := _cell(record, at)) is not None}
        if values and len(json.dumps(values)) > _MAX_METADATA:
            return f"metadata is larger than {_MAX_METADATA} bytes"
        values = values or None
    unsubscribed = (_cell(record, unsub_at) or "").lower() in _TRUE
    return Row(email, first, last, values, unsubscribed)


def _merge(into: Row, later: Row) -> None:
    """A later row of the same address: what it gives wins, metadata key by key; an unsubscribe
    stays."""
    into.first_name = later.first_name or into.first_name
    into.last_name = later.last_name or into.last_name
    if later.metadata:
        into.metadata = {**(into.metadata or {}), **later.metadata}
    into.unsubscribed = into.unsubscribed or later.unsubscribed
