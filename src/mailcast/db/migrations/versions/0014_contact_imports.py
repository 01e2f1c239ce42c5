"""contact_imports and contact_import_errors: CSV import jobs that survive their worker

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

import mailcast.db.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_imports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("audience_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("owns_file", sa.Boolean(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("file_bytes", sa.BigInteger(), nullable=False),
        sa.Column("layout", mailcast.db.types.JSONType, nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("rows_read", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_expires_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", mailcast.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("contact_imports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_imports_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index("ix_contact_imports_status", ["status", "created_at"], unique=False)
    op.create_table(
        "contact_import_errors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("import_id", sa.String(length=40), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["import_id"], ["contact_imports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("contact_import_errors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_import_errors_import_id"), ["import_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("contact_import_errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_import_errors_import_id"))
    op.drop_table("contact_import_errors")
    with op.batch_alter_table("contact_imports", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_imports_status")
        batch_op.drop_index(batch_op.f("ix_contact_imports_account_id"))
    op.drop_table("contact_imports")
