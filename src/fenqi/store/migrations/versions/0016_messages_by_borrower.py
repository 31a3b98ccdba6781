"""A borrower's messages are read by her: the outbox is indexed by borrower and day, so her
message centre (and the console's list of what she was sent) reads her rows only.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_sms_outbox_borrower", "sms_outbox", ["borrower_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_sms_outbox_borrower", table_name="sms_outbox")
