"""deliveries: indexes of the opened and of the clicked ones by time (the "did not open" rule and
the resend estimate take a campaign's openers from the first, the dashboard's chart of opens and
clicks over time reads both), neither visiting the campaign's other deliveries

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

OPENED = "opened_at IS NOT NULL"
CLICKED = "clicked_at IS NOT NULL"


def upgrade() -> None:
    # PostgreSQL carries the contact in the index (INCLUDE); SQLite, which has no INCLUDE, as a key.
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_index(
        "ix_deliveries_opened",
        "deliveries",
        ["campaign_id", "opened_at"] if postgresql else ["campaign_id", "opened_at", "contact_id"],
        unique=False,
        postgresql_where=sa.text(OPENED),
        sqlite_where=sa.text(OPENED),
        postgresql_include=["contact_id"],
    )
    op.create_index(
        "ix_deliveries_clicked",
        "deliveries",
        ["campaign_id", "clicked_at"],
        unique=False,
        postgresql_where=sa.text(CLICKED),
        sqlite_where=sa.text(CLICKED),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_clicked", table_name="deliveries")
    op.drop_index("ix_deliveries_opened", table_name="deliveries")
