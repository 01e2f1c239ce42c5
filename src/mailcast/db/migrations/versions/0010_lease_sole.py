"""delivery_leases: whether the claim that made a lease found no other lease of its campaign
alive (the end of such a batch moves the campaign's start past it)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing leases: not sole (their end moves nothing, as before). '0', a plain default: see
    # 0009.
    with op.batch_alter_table("delivery_leases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sole", sa.Boolean(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("delivery_leases", schema=None) as batch_op:
        batch_op.drop_column("sole")
