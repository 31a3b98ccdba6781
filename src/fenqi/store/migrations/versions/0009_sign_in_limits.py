"""Sign-in under attack: atomic counters for the throttles and lockouts, operators who can be
disabled, API keys that record when they were revoked and last used, and the indexes that
find an operator's sessions and prune expired codes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "sign_in_throttles",
        sa.Column("key", sa.String(), nullable=False),  # SHA-256 of the limit and the subject
        _timestamp("window_start", nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_throttles")),
    )
    op.create_index("ix_sign_in_throttles_window_start", "sign_in_throttles", ["window_start"])
    op.create_index("ix_sign_in_codes_expires_at", "sign_in_codes", ["expires_at"])
    op.create_index("ix_sessions_kind_subject", "sessions", ["kind", "subject"])
    with op.batch_alter_table("users") as users:
        users.add_column(_timestamp("disabled_at"))
    with op.batch_alter_table("api_keys") as keys:
        keys.add_column(_timestamp("revoked_at"))
        keys.add_column(_timestamp("last_used_at"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as keys:
        keys.drop_column("last_used_at")
        keys.drop_column("revoked_at")
    with op.batch_alter_table("users") as users:
        users.drop_column("disabled_at")
    op.drop_index("ix_sessions_kind_subject", "sessions")
    op.drop_index("ix_sign_in_codes_expires_at", "sign_in_codes")
    op.drop_index("ix_sign_in_throttles_window_start", "sign_in_throttles")
    op.drop_table("sign_in_throttles")
