"""Writing a batch of imported contacts: one interface, one implementation per database, chosen
where the app, the worker and the command line are assembled (`contact_store`).

Both keep the import rules: a new address is a new contact; an existing contact gets the names a
row gives (an empty cell changes nothing), its metadata merged key by key, and an unsubscribe
(never a re-subscribe); every row's contact joins the audience, if one is named."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import bindparam, case, insert, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailcast.contacts.csvfile import Row
from mailcast.db.models import AudienceMember, Contact
from mailcast.ids import new_id


class ContactStore(Protocol):
    async def merge(self, connection: AsyncConnection, account_id: str, audience_id: str | None,
                    rows: Sequence[Row], now: datetime) -> tuple[int, int]:
        """Write the rows (one per address) in the caller's transaction: (created, updated)."""
        ...


# A batch goes into a temporary table by COPY, then one statement merges it into contacts and
# adds the memberships. `xmax = 0` tells a row this statement inserted from one it updated.
_BATCH_TABLE = text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS contact_import_batch (id text, email text, first_name text, "
    "last_name text, metadata jsonb, unsubscribed boolean) ON COMMIT DELETE ROWS")
_BATCH_COLUMNS = ("id", "email", "first_name", "last_name", "metadata", "unsubscribed")
_MERGE = text("""
    WITH merged AS (
        INSERT INTO contacts AS c (id, account_id, email, first_name, last_name, metadata, unsubscribed,
                                   unsubscribed_at, created_at, updated_at)
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
    ), joined AS (
        INSERT INTO audience_members (audience_id, contact_id, created_at)
        SELECT CAST(:audience AS varchar), id, :now FROM merged WHERE CAST(:audience AS varchar) IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged""")


class PostgresContactStore:
    async def merge(self, connection: AsyncConnection, account_id: str, audience_id: str | None,
                    rows: Sequence[Row], now: datetime) -> tuple[int, int]:
        if not rows:
            return 0, 0
        await connection.execute(_BATCH_TABLE)
        raw = (await connection.get_raw_connection()).driver_connection
        records = [(new_id("ct"), r.email, r.first_name, r.last_name,
                    json.dumps(r.metadata) if r.metadata else None, r.unsubscribed) for r in rows]
        await raw.copy_records_to_table("contact_import_batch", records=records, columns=_BATCH_COLUMNS)
        created, updated = (await connection.execute(
            _MERGE, {"account": account_id, "audience": audience_id, "now": now})).one()
        return created, updated


_CHUNK = 500  # addresses per look-up (SQLite's host parameters are limited)


class SqliteContactStore:
    """SQLite writes one transaction at a time: the existing contacts are read, merged here, and
    written with one executemany per kind."""

    async def merge(self, connection: AsyncConnection, account_id: str, audience_id: str | None,
                    rows: Sequence[Row], now: datetime) -> tuple[int, int]:
        if not rows:
            return 0, 0
        existing: dict[str, tuple] = {}
        emails = [r.email for r in rows]
        columns = (Contact.id, Contact.email, Contact.first_name, Contact.last_name, Contact.attributes,
                   Contact.unsubscribed)
        for start in range(0, len(emails), _CHUNK):
            found = await connection.execute(select(*columns).where(
                Contact.account_id == account_id, Contact.email.in_(emails[start : start + _CHUNK])))
            existing.update((found_row[1], tuple(found_row)) for found_row in found)
        inserts, updates, members = [], [], []
        for row in rows:
            old = existing.get(row.email)
            if old is None:
                contact_id = new_id("ct")
                inserts.append({"id": contact_id, "account_id": account_id, "email": row.email,
                                "first_name": row.first_name, "last_name": row.last_name, "metadata": row.metadata,
                                "unsubscribed": row.unsubscribed, "unsubscribed_at": now if row.unsubscribed else None,
                                "created_at": now, "updated_at": now})
            else:
                contact_id, _, first, last, metadata, unsubscribed = old
                updates.append({
                    "row_id": contact_id, "first_name": row.first_name or first, "last_name": row.last_name or last,
                    "metadata": {**(metadata or {}), **row.metadata} if row.metadata else metadata,
                    "unsubscribed": unsubscribed or row.unsubscribed,
                    "unsubscribe_now": row.unsubscribed and not unsubscribed, "now": now})
            members.append({"audience_id": audience_id, "contact_id": contact_id, "created_at": now})
        table = Contact.__table__
        if inserts:
            await connection.execute(insert(table), inserts)
        if updates:
            await connection.execute(_SQLITE_UPDATE, updates)
        if audience_id:
            await connection.execute(sqlite.insert(AudienceMember.__table__).on_conflict_do_nothing(), members)
        return len(inserts), len(updates)


_contacts = Contact.__table__
_now = bindparam("now", type_=_contacts.c.updated_at.type)
_SQLITE_UPDATE = (
    update(_contacts).where(_contacts.c.id == bindparam("row_id"))
    .values(first_name=bindparam("first_name"), last_name=bindparam("last_name"),
            metadata=bindparam("metadata", type_=_contacts.c.metadata.type),
            unsubscribed=bindparam("unsubscribed"), updated_at=_now,
            unsubscribed_at=case((bindparam("unsubscribe_now"), _now), else_=_contacts.c.unsubscribed_at))
)


def contact_store(engine: AsyncEngine) -> ContactStore:
    return PostgresContactStore() if engine.dialect.name == "postgresql" else SqliteContactStore()
