"""campaign_counts: a campaign's delivery counts kept by triggers, so reading them costs a few rows

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

COUNTED = ("sent", "bounced", "failed", "unknown")  # the statuses the campaign figures name; total counts all


def _per_status(sign: str) -> str:
    return ", ".join(f"{sign}count(*) FILTER (WHERE status = '{s}')" for s in COUNTED)


# PostgreSQL: one trigger per statement, reading the statement's rows (transition tables), adds one
# row of differences per campaign it changed. Nothing is updated in place, so workers recording at
# the same time never wait for each other on a counter row. A statement that changes no count (a
# pixel load, `sending`) adds nothing. Rows deleted after their campaign (campaigns/repository.py
# deletes the campaign first; its counts go with it by foreign key) add nothing either.
_PG_FUNCTIONS = {
    "campaign_counts_inserted": f"""
        INSERT INTO campaign_counts (campaign_id, total, {", ".join(COUNTED)})
        SELECT campaign_id, count(*), {_per_status("")} FROM new_rows GROUP BY campaign_id""",
    "campaign_counts_deleted": f"""
        INSERT INTO campaign_counts (campaign_id, total, {", ".join(COUNTED)})
        SELECT campaign_id, -count(*), {_per_status("-")} FROM old_rows
        WHERE EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = old_rows.campaign_id) GROUP BY campaign_id""",
    "campaign_counts_updated": f"""
        INSERT INTO campaign_counts (campaign_id, total, {", ".join(COUNTED)})
        SELECT campaign_id, sum(total), {", ".join(f"sum({s})" for s in COUNTED)} FROM (
            SELECT campaign_id, 1 AS total, {", ".join(f"(status = '{s}')::int AS {s}" for s in COUNTED)}
            FROM new_rows
            UNION ALL
            SELECT campaign_id, -1, {", ".join(f"-(status = '{s}')::int" for s in COUNTED)} FROM old_rows
        ) AS changes
        WHERE EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = changes.campaign_id)
        GROUP BY campaign_id
        HAVING sum(total) <> 0 OR {" OR ".join(f"sum({s}) <> 0" for s in COUNTED)}""",
}
_PG_TRIGGERS = {
    "campaign_counts_inserted": ("INSERT", "NEW TABLE AS new_rows"),
    "campaign_counts_deleted": ("DELETE", "OLD TABLE AS old_rows"),
    "campaign_counts_updated": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
}


def _sqlite_change(row: str, sign: str) -> str:
    return ", ".join(f"{s} = {s} {sign} ({row}.status = '{s}')" for s in COUNTED)


# SQLite: triggers per row (it has no others) updating the campaign's one row; SQLite writes one
# transaction at a time, so nobody waits on that row. A delivery never changes campaign.
_SQLITE_TRIGGERS = {
    "campaign_counts_inserted": f"""
        AFTER INSERT ON deliveries BEGIN
            INSERT INTO campaign_counts (campaign_id, total, {", ".join(COUNTED)})
            SELECT NEW.campaign_id, 0, 0, 0, 0, 0
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
        AFTER UPDATE OF status ON deliveries WHEN OLD.status IS NOT NEW.status BEGIN
            UPDATE campaign_counts SET {", ".join(f"{s} = {s} + (NEW.status = '{s}') - (OLD.status = '{s}')"
                                                  for s in COUNTED)}
            WHERE campaign_id = NEW.campaign_id;
        END""",
}


def upgrade() -> None:
    op.create_table(
        'campaign_counts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('campaign_id', sa.String(length=40), nullable=False),
        sa.Column('total', sa.BigInteger(), nullable=False),
        sa.Column('sent', sa.BigInteger(), nullable=False),
        sa.Column('bounced', sa.BigInteger(), nullable=False),
        sa.Column('failed', sa.BigInteger(), nullable=False),
        sa.Column('unknown', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('campaign_counts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaign_counts_campaign_id'), ['campaign_id'], unique=False)
    # The campaigns there are: counted once, before the triggers count every change after.
    op.execute(f"""
        INSERT INTO campaign_counts (campaign_id, total, {", ".join(COUNTED)})
        SELECT campaign_id, count(*), {", ".join(f"sum(CASE WHEN status = '{s}' THEN 1 ELSE 0 END)" for s in COUNTED)}
        FROM deliveries WHERE campaign_id IN (SELECT id FROM campaigns) GROUP BY campaign_id""")
    if op.get_bind().dialect.name == "postgresql":
        for name, body in _PG_FUNCTIONS.items():
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; "
                       "RETURN NULL; END $$")
            event, tables = _PG_TRIGGERS[name]
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON deliveries REFERENCING {tables} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    else:
        for name, body in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in _PG_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON deliveries" if postgresql else ""))
        if postgresql:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    with op.batch_alter_table('campaign_counts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaign_counts_campaign_id'))
    op.drop_table('campaign_counts')
