"""deliveries: an index of the opened ones by contact (the "did not open" rule and the resend
estimate take a campaign's openers from it, not from all its deliveries)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

OPENED = "opened_at IS NOT NULL"


def upgrade() -> None:
    op.create_index('ix_deliveries_opened', 'deliveries', ['campaign_id', 'contact_id'], unique=False,
                    postgresql_where=sa.text(OPENED), sqlite_where=sa.text(OPENED))


def downgrade() -> None:
    op.drop_index('ix_deliveries_opened', table_name='deliveries', postgresql_where=sa.text(OPENED),
                  sqlite_where=sa.text(OPENED))
