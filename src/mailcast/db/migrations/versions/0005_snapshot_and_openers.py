"""deliveries: first human open, no foreign keys on PostgreSQL, the status index carries the
non-opener count

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

import mailcast.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The first open by a person, from the events recorded so far.
BACKFILL = sa.text(
    "UPDATE deliveries SET opened_at = (SELECT min(events.at) FROM events WHERE events.delivery_id "
    "= deliveries.id "
    "AND events.type = 'open' AND events.machine = false) "
    "WHERE EXISTS (SELECT 1 FROM events WHERE events.delivery_id = deliveries.id AND events.type = "
    "'open' "
    "AND events.machine = false)"
)


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("opened_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute(BACKFILL)
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps its keys and indexes (see the Delivery model)
    op.drop_constraint("deliveries_campaign_id_fkey", "deliveries", type_="foreignkey")
    op.drop_constraint("deliveries_contact_id_fkey", "deliveries", type_="foreignkey")
    op.drop_index("ix_deliveries_campaign_status", table_name="deliveries")
    op.create_index(
        "ix_deliveries_campaign_status",
        "deliveries",
        ["campaign_id", "status"],
        unique=False,
        postgresql_include=["contact_id", "opened_at"],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_deliveries_campaign_status", table_name="deliveries")
        op.create_index(
            "ix_deliveries_campaign_status", "deliveries", ["campaign_id", "status"], unique=False
        )
        # Rows whose contact was deleted meanwhile point nowhere: what the key would have done to
        # them.
        op.execute(
            "UPDATE deliveries SET contact_id = NULL WHERE contact_id IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM contacts WHERE contacts.id = deliveries.contact_id)"
        )
        op.execute(
            "DELETE FROM deliveries WHERE NOT EXISTS "
            "(SELECT 1 FROM campaigns WHERE campaigns.id = deliveries.campaign_id)"
        )
        op.create_foreign_key(
            "deliveries_campaign_id_fkey",
            "deliveries",
            "campaigns",
            ["campaign_id"],
            ["id"],
            ondelete="CASCADE",
        )
        op.create_foreign_key(
            "deliveries_contact_id_fkey",
            "deliveries",
            "contacts",
            ["contact_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("opened_at")
