"""The migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import column, delete, func, insert, select, table, text, update

from mailcast.db.engine import create_engine, is_sqlite
from mailcast.db.migrate import upgrade
from mailcast.db.models import Base, CampaignCount, DeletedContact, Delivery


async def test_migrated_schema_matches_the_models(engine):
    def diff(connection):
        dialect = connection.dialect.name

        def for_this_backend(obj, name, kind, reflected, compare_to) -> bool:
            # A model index or key made for one backend only (`ddl_if`) is not expected on the
            # other.
            condition = (
                getattr(obj, "_ddl_if", None)
                if not reflected
                else getattr(compare_to, "_ddl_if", None)
            )
            return condition is None or condition.dialect in (None, dialect)

        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": for_this_backend}
        )
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


@contextlib.asynccontextmanager
async def _old_database(db_url: str, tmp_path):
    """An engine on a database of its own (SQLite) or a schema of its own (PostgreSQL), so the
    suite's migrated one is left alone; migrate it to the revision a test starts from."""
    kwargs: dict = {}
    if is_sqlite(db_url):
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        schema = f"upgrade_{uuid.uuid4().hex[:8]}"
        kwargs = {"connect_args": {"server_settings": {"search_path": schema}}}
        admin = create_engine(db_url)
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await admin.dispose()
    engine = create_engine(db_url, **kwargs)
    try:
        yield engine
    finally:
        await engine.dispose()
        if kwargs:
            admin = create_engine(db_url)
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            await admin.dispose()


async def _one_campaign(conn, t: datetime, statuses: list[str]) -> None:
    tables = Base.metadata.tables
    await conn.execute(
        insert(tables["accounts"]), {"id": "acc_1", "name": "A", "plan": "free", "created_at": t}
    )
    await conn.execute(
        insert(tables["contacts"]),
        [
            {
                "id": f"con_{i}",
                "account_id": "acc_1",
                "email": f"r{i}@example.org",
                "unsubscribed": False,
                "created_at": t,
                "updated_at": t,
            }
            for i in range(len(statuses))
        ],
    )
    campaign = {
        "id": "camp_1",
        "account_id": "acc_1",
        "name": "N",
        "subject": "S",
        "from_address": "a@example.com",
        "audience_id": "aud_1",
        "unsubscribe_url": "https://example.com/u",
        "status": "sent",
        "created_at": t,
        "updated_at": t,
    }
    # Only these columns: the model's defaults of later columns would name columns the old schema
    # lacks.
    await conn.execute(insert(table("campaigns", *map(column, campaign))), campaign)
    await conn.execute(
        insert(tables["deliveries"]),
        [
            {
                "id": i + 1,
                "campaign_id": "camp_1",
                "contact_id": f"con_{i}",
                "email": f"r{i}@example.org",
                "variant": "a",
                "status": status,
                "attempts": 1,
                "created_at": t,
                "updated_at": t,
            }
            for i, status in enumerate(statuses)
        ],
    )


async def test_upgrading_takes_each_deliverys_first_human_open_from_its_events(db_url, tmp_path):
    """0005 adds deliveries.opened_at; rows sent before it get the time of their first open by a
    person (a machine's open does not count), the same thing the tracking endpoints record now."""
    async with _old_database(db_url, tmp_path) as engine:
        await upgrade(engine, "0004")
        t = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
        async with engine.begin() as conn:
            await _one_campaign(conn, t, ["sent"] * 3)
            await conn.execute(
                insert(Base.metadata.tables["events"]),
                [
                    {
                        "delivery_id": 1,
                        "type": "open",
                        "at": t + timedelta(hours=1),
                        "machine": True,
                    },
                    {
                        "delivery_id": 1,
                        "type": "open",
                        "at": t + timedelta(hours=3),
                        "machine": False,
                    },
                    {
                        "delivery_id": 1,
                        "type": "click",
                        "at": t + timedelta(hours=2),
                        "machine": False,
                    },
                    {
                        "delivery_id": 2,
                        "type": "open",
                        "at": t + timedelta(hours=1),
                        "machine": True,
                    },
                ],
            )
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = dict(
                (
                    await conn.execute(
                        select(Delivery.id, Delivery.opened_at).order_by(Delivery.id)
                    )
                ).all()
            )
        assert rows == {1: t + timedelta(hours=3), 2: None, 3: None}


async def test_upgrading_counts_the_deliveries_there_are_and_counts_on_from_there(db_url, tmp_path):
    """0008 adds the campaign counts and the deliveries' first click, complaint and unsubscribe: a
    campaign sent before it gets those from its events and its figures counted once, and the
    triggers count every change after."""
    async with _old_database(db_url, tmp_path) as engine:
        await upgrade(engine, "0007")
        t = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
        async with engine.begin() as conn:
            await _one_campaign(conn, t, ["sent", "sent", "bounced", "failed", "unknown", "queued"])
            await conn.execute(update(Delivery).where(Delivery.id == 1).values(opened_at=t))
            await conn.execute(
                insert(Base.metadata.tables["events"]),
                [
                    {
                        "delivery_id": 1,
                        "type": "click",
                        "at": t + timedelta(hours=2),
                        "machine": False,
                    },
                    {
                        "delivery_id": 1,
                        "type": "click",
                        "at": t + timedelta(hours=1),
                        "machine": False,
                    },
                    {"delivery_id": 2, "type": "click", "at": t, "machine": True},  # a link scanner
                    {"delivery_id": 2, "type": "complaint", "at": t, "machine": False},
                    {"delivery_id": 3, "type": "unsubscribe", "at": t, "machine": False},
                ],
            )
        await upgrade(engine)

        async def figures() -> tuple[int, ...]:
            names = (
                "total",
                "sent",
                "bounced",
                "failed",
                "unknown",
                "opened",
                "clicked",
                "complained",
                "unsubscribed",
            )
            async with engine.connect() as conn:
                return tuple(
                    int(n)
                    for n in (
                        await conn.execute(
                            select(
                                *[func.sum(getattr(CampaignCount, name)) for name in names]
                            ).where(CampaignCount.campaign_id == "camp_1")
                        )
                    ).one()
                )

        async with engine.connect() as conn:
            first = {
                row[0]: row[1:]
                for row in await conn.execute(
                    select(
                        Delivery.id,
                        Delivery.clicked_at,
                        Delivery.complained_at,
                        Delivery.unsubscribed_at,
                    )
                )
            }
        assert first[1] == (t + timedelta(hours=1), None, None)
        assert first[2] == (None, t, None) and first[3] == (None, None, t)
        assert await figures() == (6, 2, 1, 1, 1, 1, 1, 1, 1)
        async with engine.begin() as conn:
            await conn.execute(
                update(Delivery).where(Delivery.id == 6).values(status="sent", clicked_at=t)
            )
            await conn.execute(delete(Delivery).where(Delivery.id == 4))
        assert await figures() == (5, 3, 1, 0, 1, 1, 2, 1, 1)


async def test_upgrading_records_the_contacts_deleted_before_it(db_url, tmp_path):
    """0011 keeps the ids of deleted contacts (the non-opener count takes their deliveries away
    without joining every contact): a contact deleted before it is found from the deliveries that
    still point at it (PostgreSQL), and is counted out either way."""
    async with _old_database(db_url, tmp_path) as engine:
        await upgrade(engine, "0010")
        t = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
        async with engine.begin() as conn:
            await _one_campaign(conn, t, ["sent", "sent", "sent"])
            await conn.execute(delete(Base.metadata.tables["contacts"]).where(text("id = 'con_1'")))
        await upgrade(engine)
        async with engine.connect() as conn:
            deleted = set(
                (await conn.execute(select(DeletedContact.id, DeletedContact.account_id))).all()
            )
        assert deleted == (
            set() if is_sqlite(db_url) else {("con_1", "acc_1")}
        )  # SQLite's key set it to NULL


async def test_upgrading_takes_each_deliverys_first_machine_open_and_counts_machine_openers(
    db_url, tmp_path
):
    """0013 adds deliveries.machine_opened_at (from the events) and the machine_opened figure: the
    deliveries a machine opened and no person did, counted by the triggers from then on."""
    async with _old_database(db_url, tmp_path) as engine:
        await upgrade(engine, "0012")
        t = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
        async with engine.begin() as conn:
            await _one_campaign(conn, t, ["sent", "sent", "sent"])
            await conn.execute(
                insert(Base.metadata.tables["events"]),
                [
                    {
                        "delivery_id": 1,
                        "type": "open",
                        "at": t + timedelta(hours=2),
                        "machine": True,
                    },
                    {
                        "delivery_id": 1,
                        "type": "open",
                        "at": t + timedelta(hours=1),
                        "machine": True,
                    },
                    {"delivery_id": 2, "type": "open", "at": t, "machine": True},
                    {
                        "delivery_id": 2,
                        "type": "open",
                        "at": t + timedelta(hours=3),
                        "machine": False,
                    },
                ],
            )
            await conn.execute(
                update(table("deliveries", column("id"), column("opened_at")))
                .where(text("id = 2"))
                .values(opened_at=t + timedelta(hours=3))
            )
        await upgrade(engine)

        async def machine_opened() -> int:
            async with engine.connect() as conn:
                return int(
                    (
                        await conn.execute(
                            select(func.sum(CampaignCount.machine_opened)).where(
                                CampaignCount.campaign_id == "camp_1"
                            )
                        )
                    ).scalar_one()
                )

        async with engine.connect() as conn:
            first = dict(
                (await conn.execute(select(Delivery.id, Delivery.machine_opened_at))).all()
            )
        assert first == {1: t + timedelta(hours=1), 2: t, 3: None}
        assert await machine_opened() == 1  # delivery 2 was opened by a person too
        async with engine.begin() as conn:
            await conn.execute(update(Delivery).where(Delivery.id == 3).values(machine_opened_at=t))
        assert await machine_opened() == 2
        async with engine.begin() as conn:
            await conn.execute(update(Delivery).where(Delivery.id == 1).values(opened_at=t))
        assert await machine_opened() == 1
