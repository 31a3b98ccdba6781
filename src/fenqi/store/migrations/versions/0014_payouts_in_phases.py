"""Money paid back goes through the withholding gateway in phases, as debits do: the in-process
gateway simulator keeps its refunds beside its debits, each naming the debit order it pays back,
so that a refund sent twice pays once and never more than the debit took.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("sim_orders") as table:
        table.add_column(sa.Column("refers_to", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sim_orders") as table:
        table.drop_column("refers_to")
