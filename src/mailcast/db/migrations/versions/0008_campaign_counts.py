"""campaign_counts: a campaign's figures kept by triggers, so reading them costs a few rows; the
deliveries' first click, complaint and unsubscribe, which the figures follow like opened_at

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

import mailcast.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATUSES = (
    "sent",
    "bounced",
    "failed",
    "unknown",
)  # the statuses the figures name; total counts all
READERS = {
    "opened": "opened_at",
    "clicked": "clicked_at",
    "complained": "complained_at",
    "unsubscribed": "unsubscribed_at",
}  # a figure: the deliveries with this column set
FIGURES = ("total", *STATUSES, *READERS)
COLUMNS = ", ".join(FIGURES)


def _facts(row: str) -> dict[str, str]:
    """Each figure's 0-or-1 for one row (`row.` prefix, or '' for the bare columns)."""
    return {
        **{s: f"({row}status = '{s}')" for s in STATUSES},
        **{name: f"({row}{column} IS NOT NULL)" for name, column in READERS.items()},
    }


# PostgreSQL: one trigger per statement, reading the statement's rows (transition tables), adds one
# row of differences per campaign it changed. Nothing is updated in place, so workers recording at
# the same time never wait for each other on a counter row. A statement that changes no figure (a
# pixel load after the first, `sending`) adds nothing. Rows deleted after their campaign
# (campaigns/repository.py deletes the campaign first; its counts go with it by foreign key) add
# nothing either.
def _pg_sums(rows: str, sign: int) -> str:
    facts = _facts("")
    return (
        f"SELECT campaign_id, {sign} AS total, "
        + ", ".join(
            f"{'-' if sign < 0 else ''}{fact}::int AS {name}" for name, fact in facts.items()
        )
        + f" FROM {rows}"
    )


_PG_ADD = f"""
    INSERT INTO campaign_counts (campaign_id, {COLUMNS})
    SELECT campaign_id, {", ".join(f"sum({c})" for c in FIGURES)} FROM ({{changes}}) AS changes
    WHERE EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = changes.campaign_id)
    GROUP BY campaign_id
    HAVING {" OR ".join(f"sum({c}) <> 0" for c in FIGURES)}"""
_PG_FUNCTIONS = {
    "campaign_counts_inserted": _PG_ADD.format(changes=_pg_sums("new_rows", 1)),
    "campaign_counts_deleted": _PG_ADD.format(changes=_pg_sums("old_rows", -1)),
    "campaign_counts_updated": _PG_ADD.format(
        changes=f"{_pg_sums('new_rows', 1)} UNION ALL {_pg_sums('old_rows', -1)}"
    ),
}
_PG_TRIGGERS = {
    "campaign_counts_inserted": ("INSERT", "NEW TABLE AS new_rows"),
    "campaign_counts_deleted": ("DELETE", "OLD TABLE AS old_rows"),
    "campaign_counts_updated": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
}


def _sqlite_change(row: str, sign: str) -> str:
    return ", ".join(f"{name} = {name} {sign} {fact}" for name, fact in _facts(f"{row}.").items())


# SQLite: triggers per row (it has no others) updating the campaign's one row; SQLite writes one
# transaction at a time, so nobody waits on that row. A delivery never changes campaign.
_SQLITE_TRIGGERS = {
    "campaign_counts_inserted": f"""
        AFTER INSERT ON deliveries BEGIN
            INSERT INTO campaign_counts (campaign_id, {COLUMNS})
            SELECT NEW.campaign_id, {", ".join("0" for _ in FIGURES)}
            WHERE NOT EXISTS (SELECT 1 FROM campaign_counts WHERE campaign_id = NEW.campaign_id);
            UPDATE campaign_counts SET total = total + 1, {_sqlite_change("NEW", "+")}
            WHERE campaign_id = NEW.campaign_id;
        END""",
    "campaign_counts_deleted": f"""
        AFTER DELETE ON deliveries BEGIN
            UPDATE campaign_counts SET total = total - 1, {_sqlite_change("OLD", "-")}
            WHERE campaign_id = OLD.campaign_id;
        END""",
    "campaign_counts_updated": f"""
        AFTER UPDATE OF status, {", ".join(READERS.values())} ON deliveries
        WHEN OLD.status IS NOT NEW.status
             OR {
        " OR ".join(f"(OLD.{c} IS NULL) IS NOT (NEW.{c} IS NULL)" for c in READERS.values())
    } BEGIN
            UPDATE campaign_counts SET {
        ", ".join(
            f"{name} = {name} + {fact} - {_facts('OLD.')[name]}"
            for name, fact in _facts("NEW.").items()
        )
    }
            WHERE campaign_id = NEW.campaign_id;
        END""",
}
# Each campaign counted from its deliveries (the migration's start; `mailcast recount` does the
# same).
_COUNT_ALL = f"""
    INSERT INTO campaign_counts (campaign_id, {COLUMNS})
    SELECT campaign_id, count(*), {", ".join(f"sum(CASE WHEN {fact} THEN 1 ELSE 0 END)" for fact in _facts("").values())}
    FROM deliveries WHERE campaign_id IN (SELECT id FROM campaigns) GROUP BY campaign_id"""
# A delivery's first click by a person, first complaint and first unsubscribe, from its events.
_FIRST = {
    "clicked_at": "type = 'click' AND NOT events.machine",
    "complained_at": "type = 'complaint'",
    "unsubscribed_at": "type = 'unsubscribe'",
}


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for column in _FIRST:
            batch_op.add_column(
                sa.Column(column, mailcast.db.types.UTCDateTime(timezone=True), nullable=True)
            )
    for column, condition in _FIRST.items():
        op.execute(
            f"UPDATE deliveries SET {column} = (SELECT min(events.at) FROM events "
            f"WHERE events.delivery_id = deliveries.id AND {condition}) "
            "WHERE EXISTS (SELECT 1 FROM events WHERE events.delivery_id = deliveries.id AND "
            f"{condition})"
        )
    op.create_table(
        "campaign_counts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in FIGURES],
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("campaign_counts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_counts_campaign_id"), ["campaign_id"], unique=False
        )
    # The campaigns there are: counted once, before the triggers count every change after.
    op.execute(_COUNT_ALL)
    if op.get_bind().dialect.name == "postgresql":
        for name, body in _PG_FUNCTIONS.items():
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
        for name, body in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in _PG_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON deliveries" if postgresql else ""))
        if postgresql:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    with op.batch_alter_table("campaign_counts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_counts_campaign_id"))
    op.drop_table("campaign_counts")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for column in reversed(list(_FIRST)):
            batch_op.drop_column(column)
