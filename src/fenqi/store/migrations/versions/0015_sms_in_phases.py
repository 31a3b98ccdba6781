"""SMS go to the gateway outside any transaction, in phases: an outbox message is claimed
(``sending``), handed over, and its outcome recorded: the gateway's reference, or why it was
refused, or that no outcome came (``unknown``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("sms_outbox") as table:
        table.add_column(sa.Column("reference", sa.String(), nullable=True))
        table.add_column(sa.Column("reason", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sms_outbox") as table:
        table.drop_column("reason")
        table.drop_column("reference")
