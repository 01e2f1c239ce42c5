"""campaign_test_sends: the test messages of a campaign, to limit them per hour

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

import mailcast.db.types

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_test_sends",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("at", mailcast.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_campaign_test_sends_campaign_at",
        "campaign_test_sends",
        ["campaign_id", "at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_test_sends_campaign_at", table_name="campaign_test_sends")
    op.drop_table("campaign_test_sends")
