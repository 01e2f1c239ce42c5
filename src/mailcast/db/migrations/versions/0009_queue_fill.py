"""campaigns: the recipient snapshot queued in chunks (where the fill is, whether it is done, how
many recipients there were at the start)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every existing campaign queued its whole audience when it started: filled. ('1', not a
    # SQL expression: SQLite adds a column with a plain default in place, instead of copying the
    # table, which would run the foreign keys' ON DELETE CASCADE on its deliveries.)
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue_fill_after", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("queue_filled", sa.Boolean(), server_default="1", nullable=False)
        )
        batch_op.add_column(sa.Column("recipients", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("recipients")
        batch_op.drop_column("queue_filled")
        batch_op.drop_column("queue_fill_after")
