"""Every debit of a bound method in two phases: a debit request says what it books when its
answer comes (a prepayment's mode, the batch's installment and attempt) and which outcome is
booked already; a chunk of the batch is leased to its worker while its gateway calls run, with
no transaction open; the in-process gateway simulator keeps its orders, so that an order sent
twice takes the money once and the reconciler can ask about it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("debit_requests") as table:
        table.add_column(sa.Column("mode", sa.String(), nullable=True))
        table.add_column(sa.Column("due_date", sa.Date(), nullable=True))
        table.add_column(sa.Column("debit_attempt", sa.Integer(), nullable=True))
        table.add_column(sa.Column("booked", sa.String(), nullable=True))
        table.add_column(sa.Column("booked_seq", sa.Integer(), nullable=True))
    with op.batch_alter_table("cob_jobs") as table:
        table.add_column(sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "sim_orders",
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("token_ref", sa.String(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_sim_orders")),
    )


def downgrade() -> None:
    op.drop_table("sim_orders")
    with op.batch_alter_table("cob_jobs") as table:
        table.drop_column("leased_until")
    with op.batch_alter_table("debit_requests") as table:
        for column in ("booked_seq", "booked", "debit_attempt", "due_date", "mode"):
            table.drop_column(column)
