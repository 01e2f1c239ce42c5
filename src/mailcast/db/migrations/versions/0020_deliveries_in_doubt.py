"""deliveries.in_doubt: sent again after its worker died while the message was on the wire

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both: a batch copy of the table on SQLite would drop its triggers.
    op.add_column(
        "deliveries", sa.Column("in_doubt", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("in_doubt")
