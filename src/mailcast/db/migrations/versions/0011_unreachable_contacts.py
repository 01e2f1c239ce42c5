"""contacts: an index of those no campaign may mail; deleted_contacts: the ids of deleted
contacts (the non-opener count takes both away instead of joining every contact)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

import mailcast.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UNREACHABLE = "unsubscribed OR suppressed_reason IS NOT NULL"
# Deliveries that point at a contact deleted before this revision (PostgreSQL keeps the id; on
# SQLite the key has set it to NULL, so this finds nothing there).
BACKFILL = sa.text(
    "INSERT INTO deleted_contacts (id, account_id, deleted_at) "
    "SELECT DISTINCT deliveries.contact_id, campaigns.account_id, CURRENT_TIMESTAMP "
    "FROM deliveries JOIN campaigns ON campaigns.id = deliveries.campaign_id "
    "WHERE deliveries.contact_id IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM contacts WHERE contacts.id = deliveries.contact_id)"
)


def upgrade() -> None:
    op.create_table(
        "deleted_contacts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("deleted_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deleted_contacts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deleted_contacts_account_id"), ["account_id"], unique=False
        )
    op.execute(BACKFILL)
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contacts_unreachable",
            ["id"],
            unique=False,
            postgresql_where=sa.text(UNREACHABLE),
            sqlite_where=sa.text(UNREACHABLE),
        )


def downgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_contacts_unreachable",
            postgresql_where=sa.text(UNREACHABLE),
            sqlite_where=sa.text(UNREACHABLE),
        )
    with op.batch_alter_table("deleted_contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deleted_contacts_account_id"))
    op.drop_table("deleted_contacts")
