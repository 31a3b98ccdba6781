"""Each loan's journal balances as the batch left them, with the loan version they belong to, so
that the next night need not add up the loan's whole journal again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("loans") as loans:
        loans.add_column(sa.Column("journal_balances", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("loans") as loans:
        loans.drop_column("journal_balances")
