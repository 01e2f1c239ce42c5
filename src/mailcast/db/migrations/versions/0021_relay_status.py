"""relay_status: relays the workers could not reach, since when and why

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

import mailcast.db.types

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_status",
        sa.Column("relay", sa.String(length=300), nullable=False),
        sa.Column("down_since", mailcast.db.types.UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", mailcast.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("relay"),
    )


def downgrade() -> None:
    op.drop_table("relay_status")
