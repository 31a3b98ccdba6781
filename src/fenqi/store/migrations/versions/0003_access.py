"""Who may do what: operators (password hashed with scrypt) and their API keys, borrowers'
one-time sign-in codes, and sessions for the console and the borrower page.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
        sa.CheckConstraint("role IN ('viewer', 'agent', 'admin')", name=op.f("ck_users_role")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("secret_hash", sa.String(), nullable=False),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_api_keys_username_users")
        ),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),  # operator | borrower
        sa.Column("subject", sa.String(), nullable=False),  # a username or a borrower id
        sa.Column("csrf", sa.String(), nullable=False),
        _timestamp("expires_at"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sessions")),
    )
    op.create_table(
        "sign_in_codes",
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("code_hash", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("expires_at"),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_sign_in_codes")),
    )


def downgrade() -> None:
    for table in ("sign_in_codes", "sessions", "api_keys", "users"):
        op.drop_table(table)
