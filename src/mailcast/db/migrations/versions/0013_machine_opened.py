"""deliveries: when a machine (a privacy proxy, a scanner) first opened one; campaign_counts: the
deliveries opened by machines only (`machine_opened`, beside `opened`), kept by the triggers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

import mailcast.db.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The figures as 0008 counts them, and the one this revision adds. Frozen here, as every
# migration's SQL is: the triggers are written again whole (and 0008's again on a downgrade).
STATUSES = ("sent", "bounced", "failed", "unknown")
READERS = {
    "opened": "opened_at",
    "clicked": "clicked_at",
    "complained": "complained_at",
    "unsubscribed": "unsubscribed_at",
}


def _facts(row: str, machine: bool) -> dict[str, str]:
    """Each figure's 0-or-1 for one row (`row.` prefix, or '' for the bare columns), total aside."""
    facts = {
        **{s: f"({row}status = '{s}')" for s in STATUSES},
        **{name: f"({row}{column} IS NOT NULL)" for name, column in READERS.items()},
    }
    if machine:
        facts["machine_opened"] = f"({row}machine_opened_at IS NOT NULL AND {row}opened_at IS NULL)"
    return facts


def _pg_sums(rows: str, sign: int, machine: bool) -> str:
    return (
        f"SELECT campaign_id, {sign} AS total, "
        + ", ".join(
            f"{'-' if sign < 0 else ''}{fact}::int AS {name}"
            for name, fact in _facts("", machine).items()
        )
        + f" FROM {rows}"
    )


_PG_TRIGGERS = {
    "campaign_counts_inserted": ("INSERT", "NEW TABLE AS new_rows"),
    "campaign_counts_deleted": ("DELETE", "OLD TABLE AS old_rows"),
    "campaign_counts_updated": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
}


def _pg_functions(machine: bool) -> dict[str, str]:
    figures = ("total", *_facts("", machine))
    add = f"""
        INSERT INTO campaign_counts (campaign_id, {", ".join(figures)})
        SELECT campaign_id, {", ".join(f"sum({c})" for c in figures)} FROM ({{changes}}) AS changes
        WHERE EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = changes.campaign_id)
        GROUP BY campaign_id
        HAVING {" OR ".join(f"sum({c}) <> 0" for c in figures)}"""
    return {
        "campaign_counts_inserted": add.format(changes=_pg_sums("new_rows", 1, machine)),
        "campaign_counts_deleted": add.format(changes=_pg_sums("old_rows", -1, machine)),
        "campaign_counts_updated": add.format(
            changes=f"{_pg_sums('new_rows', 1, machine)} UNION ALL {_pg_sums('old_rows', -1, machine)}"
        ),
    }


def _sqlite_triggers(machine: bool) -> dict[str, str]:
    figures = ("total", *_facts("", machine))
    watched = (*READERS.values(), *(("machine_opened_at",) if machine else ()))

    def change(row: str, sign: str) -> str:
        return ", ".join(
            f"{name} = {name} {sign} {fact}" for name, fact in _facts(f"{row}.", machine).items()
        )

    return {
        "campaign_counts_inserted": f"""
            AFTER INSERT ON deliveries BEGIN
                INSERT INTO campaign_counts (campaign_id, {", ".join(figures)})
                SELECT NEW.campaign_id, {", ".join("0" for _ in figures)}
                WHERE NOT EXISTS (SELECT 1 FROM campaign_counts WHERE campaign_id = NEW.campaign_id);
                UPDATE campaign_counts SET total = total + 1, {change("NEW", "+")}
                WHERE campaign_id = NEW.campaign_id;
            END""",
        "campaign_counts_deleted": f"""
            AFTER DELETE ON deliveries BEGIN
                UPDATE campaign_counts SET total = total - 1, {change("OLD", "-")}
                WHERE campaign_id = OLD.campaign_id;
            END""",
        "campaign_counts_updated": f"""
            AFTER UPDATE OF status, {", ".join(watched)} ON deliveries
            WHEN OLD.status IS NOT NEW.status
                 OR {
            " OR ".join(f"(OLD.{c} IS NULL) IS NOT (NEW.{c} IS NULL)" for c in watched)
        } BEGIN
                UPDATE campaign_counts SET {
            ", ".join(
                f"{name} = {name} + {fact} - {_facts('OLD.', machine)[name]}"
                for name, fact in _facts("NEW.", machine).items()
            )
        }
                WHERE campaign_id = NEW.campaign_id;
            END""",
    }


def _count_all(machine: bool) -> str:
    facts = _facts("", machine)
    return f"""
        INSERT INTO campaign_counts (campaign_id, total, {", ".join(facts)})
        SELECT campaign_id, count(*), {", ".join(f"sum(CASE WHEN {fact} THEN 1 ELSE 0 END)" for fact in facts.values())}
        FROM deliveries WHERE campaign_id IN (SELECT id FROM campaigns) GROUP BY campaign_id"""


def _drop_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in _PG_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON deliveries" if postgresql else ""))
        if postgresql:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")


def _create_triggers(machine: bool) -> None:
    """The counts counted again from the deliveries, then kept by the triggers from there on."""
    op.execute("DELETE FROM campaign_counts")
    op.execute(_count_all(machine))
    if op.get_bind().dialect.name == "postgresql":
        for name, body in _pg_functions(machine).items():
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; "
                "RETURN NULL; END $$"
            )
            event, tables = _PG_TRIGGERS[name]
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON deliveries REFERENCING {tables} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
    else:
        for name, body in _sqlite_triggers(machine).items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def upgrade() -> None:
    # The triggers go first: on SQLite a table rebuilt by a batch operation would lose them.
    _drop_triggers()
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "machine_opened_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=True
            )
        )
    op.execute(
        "UPDATE deliveries SET machine_opened_at = (SELECT min(events.at) FROM events "
        "WHERE events.delivery_id = deliveries.id AND events.type = 'open' AND events.machine) "
        "WHERE EXISTS (SELECT 1 FROM events WHERE events.delivery_id = deliveries.id "
        "AND events.type = 'open' AND events.machine)"
    )
    # A plain default: SQLite adds such a column in place.
    with op.batch_alter_table("campaign_counts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("machine_opened", sa.BigInteger(), server_default="0", nullable=False)
        )
    _create_triggers(machine=True)


def downgrade() -> None:
    _drop_triggers()
    with op.batch_alter_table("campaign_counts", schema=None) as batch_op:
        batch_op.drop_column("machine_opened")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("machine_opened_at")
    _create_triggers(machine=False)
