"""contacts and audience_members without foreign keys on PostgreSQL (their checks were most of
what a large import cost; the code keeps what they kept: see the models), and without the index
of contacts by account alone (the (account, email) key serves those reads)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_KEYS = (
    ("contacts_account_id_fkey", "contacts", "accounts", "account_id"),
    ("audience_members_audience_id_fkey", "audience_members", "audiences", "audience_id"),
    ("audience_members_contact_id_fkey", "audience_members", "contacts", "contact_id"),
)


def upgrade() -> None:
    op.drop_index("ix_contacts_account_id", table_name="contacts")
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps its keys (dropping one there means rebuilding the table)
    for name, table, _, _ in _KEYS:
        op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Memberships of what was deleted meanwhile: what the keys would have done to them.
        op.execute(
            "DELETE FROM audience_members WHERE NOT EXISTS (SELECT 1 FROM contacts WHERE "
            "contacts.id = audience_members.contact_id) OR NOT EXISTS (SELECT 1 FROM audiences "
            "WHERE "
            "audiences.id = audience_members.audience_id)"
        )
        for name, table, target, column in _KEYS:
            op.create_foreign_key(name, table, target, [column], ["id"], ondelete="CASCADE")
    op.create_index("ix_contacts_account_id", "contacts", ["account_id"], unique=False)
