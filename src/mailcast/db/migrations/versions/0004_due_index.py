"""the send queue's partial index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DUE = sa.text("status IN ('queued', 'deferred')")


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_status_next_attempt")
        batch_op.create_index(
            "ix_deliveries_due",
            ["campaign_id", "next_attempt_at", "id"],
            unique=False,
            postgresql_where=DUE,
            sqlite_where=DUE,
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_due", postgresql_where=DUE, sqlite_where=DUE)
        batch_op.create_index(
            "ix_deliveries_status_next_attempt", ["status", "next_attempt_at"], unique=False
        )
