"""Writing a batch of imported contacts: one interface, one implementation per database, chosen
where the app, the worker and the command line are assembled (`contact_store`).

Both keep the import rules: a new address is a new contact; an existing contact gets the names a
row gives (an empty cell changes nothing), its metadata merged key by key, and an unsubscribe
(never a re-subscribe); every row's contact joins the audience, if one is named."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailcast.contacts.csvfile import Row
from mailcast.db.models import Contact, table_of
from mailcast.ids import new_id


class ContactStore(Protocol):
    # The function of `reader.PREPARERS` that turns rows (one per address) into what `merge`
    # writes: Python's work, done where the rows are read, not while the database waits.
    preparer: str

    async def merge(
        self,
        connection: AsyncConnection,
        account_id: str,
        audience_id: str | None,
        prepared: Any,
        now: datetime,
    ) -> tuple[int, int]:
        """Write prepared rows in the caller's transaction: (created, updated)."""
        ...


# A batch goes into a temporary table by COPY, then one statement merges it into contacts and
# adds the memberships. `xmax = 0` tells a row this statement inserted from one it updated; a
# contact it inserted has no membership yet, so only the updated ones need ON CONFLICT (whose
# speculative insertion costs every row it is asked of).
_BATCH_TABLE = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS contact_import_batch (id text, email text, first_name "
    "text, "
    "last_name text, metadata jsonb, unsubscribed boolean) ON COMMIT DELETE ROWS"
)
_BATCH_COLUMNS = ("id", "email", "first_name", "last_name", "metadata", "unsubscribed")
_MERGE = text("""
    WITH merged AS (
        INSERT INTO contacts AS c (id, account_id, email, first_name, last_name, metadata,
                                   unsubscribed, unsubscribed_at, created_at, updated_at)
        SELECT id, :account, email, first_name, last_name, metadata, unsubscribed,
               CASE WHEN unsubscribed THEN CAST(:now AS timestamptz) END, :now, :now
        FROM contact_import_batch
        ON CONFLICT (account_id, email) DO UPDATE SET
            first_name = coalesce(excluded.first_name, c.first_name),
            last_name = coalesce(excluded.last_name, c.last_name),
            metadata = CASE WHEN excluded.metadata IS NULL THEN c.metadata
                            WHEN c.metadata IS NULL THEN excluded.metadata
                            ELSE c.metadata || excluded.metadata END,
            unsubscribed = c.unsubscribed OR excluded.unsubscribed,
            unsubscribed_at = CASE WHEN c.unsubscribed THEN c.unsubscribed_at
                                   WHEN excluded.unsubscribed THEN excluded.unsubscribed_at END,
            updated_at = excluded.updated_at
        RETURNING c.id, (c.xmax = 0) AS inserted
    ), joined_new AS (
        INSERT INTO audience_members (audience_id, contact_id, created_at)
        SELECT CAST(:audience AS varchar), id, :now FROM merged
        WHERE inserted AND CAST(:audience AS varchar) IS NOT NULL
    ), joined_existing AS (
        INSERT INTO audience_members (audience_id, contact_id, created_at)
        SELECT CAST(:audience AS varchar), id, :now FROM merged
        WHERE NOT inserted AND CAST(:audience AS varchar) IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged""")


class PostgresContactStore:
    preparer = "copy"

    async def merge(
        self,
        connection: AsyncConnection,
        account_id: str,
        audience_id: str | None,
        prepared: list[tuple[Any, ...]],
        now: datetime,
    ) -> tuple[int, int]:
        if not prepared:
            return 0, 0
        await connection.execute(_BATCH_TABLE)
        raw: Any = (await connection.get_raw_connection()).driver_connection
        await raw.copy_records_to_table(
            "contact_import_batch", records=prepared, columns=_BATCH_COLUMNS
        )
        created, updated = (
            await connection.execute(
                _MERGE, {"account": account_id, "audience": audience_id, "now": now}
            )
        ).one()
        return created, updated


_CHUNK = 500  # addresses per look-up (SQLite's host parameters are limited)
_SQLITE_INSERT = (
    "INSERT INTO contacts (id, account_id, email, first_name, last_name, metadata, unsubscribed, "
    "unsubscribed_at, suppressed_reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
    "NULL, ?, ?)"
)
_SQLITE_UPDATE = (
    "UPDATE contacts SET first_name = ?, last_name = ?, metadata = ?, unsubscribed = ?, "
    "unsubscribed_at = CASE WHEN ? THEN ? ELSE unsubscribed_at END, updated_at = ? WHERE id = ?"
)
_SQLITE_JOIN = (
    "INSERT OR IGNORE INTO audience_members (audience_id, contact_id, created_at) VALUES (?, ?, ?)"
)


class SqliteContactStore:
    """SQLite writes one transaction at a time: the batch's existing contacts are read, merged
    here, and written with one executemany per kind, straight to the driver: its rows are plain
    values (the batch's one timestamp formatted once as the column stores it), where the
    statement layer's per-value conversions were most of what a batch cost."""

    preparer = "rows"

    async def merge(
        self,
        connection: AsyncConnection,
        account_id: str,
        audience_id: str | None,
        prepared: Sequence[Row],
        now: datetime,
    ) -> tuple[int, int]:
        rows = prepared
        if not rows:
            return 0, 0
        bind: Any = _contacts.c.created_at.type.bind_processor(connection.dialect)
        stamp = bind(now)
        existing: dict[str, tuple[Any, ...]] = {}
        emails = [r.email for r in rows]
        for start in range(0, len(emails), _CHUNK):
            chunk = emails[start : start + _CHUNK]
            found: Any = await connection.exec_driver_sql(
                "SELECT id, email, first_name, last_name, metadata, unsubscribed FROM contacts "
                f"WHERE account_id = ? AND email IN ({', '.join('?' * len(chunk))})",
                (account_id, *chunk),
            )
            existing.update((row[1], tuple(row)) for row in found)
        inserts, updates, members = [], [], []
        dumps = json.dumps
        for row in rows:
            old = existing.get(row.email)
            if old is None:
                contact_id = new_id("ct")
                inserts.append(
                    (
                        contact_id,
                        account_id,
                        row.email,
                        row.first_name,
                        row.last_name,
                        dumps(row.metadata) if row.metadata else None,
                        row.unsubscribed,
                        stamp if row.unsubscribed else None,
                        stamp,
                        stamp,
                    )
                )
            else:
                contact_id, _, first, last, metadata, unsubscribed = old
                if row.metadata:
                    metadata = dumps({**(json.loads(metadata) if metadata else {}), **row.metadata})
                updates.append(
                    (
                        row.first_name or first,
                        row.last_name or last,
                        metadata,
                        bool(unsubscribed) or row.unsubscribed,
                        row.unsubscribed and not unsubscribed,
                        stamp,
                        stamp,
                        contact_id,
                    )
                )
            members.append((audience_id, contact_id, stamp))
        if inserts:
            await connection.exec_driver_sql(_SQLITE_INSERT, inserts)
        if updates:
            await connection.exec_driver_sql(_SQLITE_UPDATE, updates)
        if audience_id:
            await connection.exec_driver_sql(_SQLITE_JOIN, members)
        return len(inserts), len(updates)


_contacts = table_of(Contact)


def contact_store(engine: AsyncEngine) -> ContactStore:
    return PostgresContactStore() if engine.dialect.name == "postgresql" else SqliteContactStore()
