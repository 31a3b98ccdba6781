"""Whoever finishes a run's last chunk settles the run, a chunk counts every try, and the
dispatcher's clock only moves forward.

A chunk's ``attempts`` now counts every try, the one that did it included; ``failures`` counts
the tries that raised since it was last queued (the budget of ``MAX_ATTEMPTS``; a rerun that
queues a failed chunk again resets it, and no longer resets ``attempts``). Before this revision
``attempts`` was what ``failures`` is now, so it is copied there, and a done chunk's try that
did it is added. The index on ``sms_outbox.sent_at`` finds the latest message sent, before
which no dispatch may be dated.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("cob_jobs") as jobs:
        jobs.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
    op.execute("UPDATE cob_jobs SET failures = attempts")
    op.execute("UPDATE cob_jobs SET attempts = attempts + 1 WHERE status = 'done'")
    op.create_index("ix_sms_outbox_sent_at", "sms_outbox", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_outbox_sent_at", "sms_outbox")
    op.execute("UPDATE cob_jobs SET attempts = failures")
    with op.batch_alter_table("cob_jobs") as jobs:
        jobs.drop_column("failures")
