"""Each loan's fold as the batch last left it, so that the next night replays only the events
recorded since (``domain.loan.Checkpoint``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("loans") as loans:
        loans.add_column(sa.Column("checkpoint", sa.JSON(), nullable=True))
        # The last event the checkpoint holds: the batch reads only the events after it.
        loans.add_column(sa.Column("checkpoint_seq", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("loans") as loans:
        loans.drop_column("checkpoint_seq")
        loans.drop_column("checkpoint")
