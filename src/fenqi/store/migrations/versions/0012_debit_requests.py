"""Debit requests: a withholding gateway is asked to take money only after the request is
committed here, pending, under the merchant order id it is sent with; its answer (at once, in a
notification, or to the reconciler's query) settles the request.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

_OPEN = sa.text("status IN ('pending', 'unknown')")


def upgrade() -> None:
    op.create_table(
        "debit_requests",
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("method_id", sa.Integer(), nullable=True),
        sa.Column("token_ref", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reference", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("refers_to", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("loan_id", "order_id", name=op.f("pk_debit_requests")),
        sa.CheckConstraint(
            "status IN ('pending', 'unknown', 'succeeded', 'failed')",
            name=op.f("ck_debit_requests_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_debit_requests_amount")),
    )
    op.create_index("ix_debit_requests_open", "debit_requests", ["updated_at"],
                    postgresql_where=_OPEN, sqlite_where=_OPEN)  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_debit_requests_open", "debit_requests")
    op.drop_table("debit_requests")
