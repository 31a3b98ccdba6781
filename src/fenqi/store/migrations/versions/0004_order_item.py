"""What the borrower bought: the order's item, shown beside the merchant on her plans.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("loans", sa.Column("item", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("loans", "item")
