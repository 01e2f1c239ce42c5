"""delivery_leases: one lease per claimed batch instead of a write to every delivery in it

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

import mailcast.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_leases",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=False),
        sa.Column("expires_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("delivery_leases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_leases_campaign_id"), ["campaign_id"], unique=False
        )
    # Rows leased the old way (owner set, still pending) are claimable again: the workers of the
    # old version are stopped before an upgrade, so nobody is sending them.
    op.execute(
        "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL "
        "WHERE status IN ('queued', 'deferred') AND lease_owner IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("delivery_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_leases_campaign_id"))
    op.drop_table("delivery_leases")
