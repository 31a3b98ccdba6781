"""A close-of-business run that fails says so: each chunk keeps how many times it was tried and
its last error, a run keeps the error it failed with and the first day a catch-up closed before
it, and a business day has at most one run that is not done (a second start joins it).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_OPEN = sa.text("status <> 'done'")


def upgrade() -> None:
    with op.batch_alter_table("cob_runs") as runs:
        runs.add_column(sa.Column("error", sa.String(), nullable=True))
        runs.add_column(sa.Column("caught_up_from", sa.Date(), nullable=True))
    with op.batch_alter_table("cob_jobs") as jobs:
        jobs.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        jobs.add_column(sa.Column("error", sa.String(), nullable=True))
    # Runs started at once for the same day before this revision: the newest is the one a rerun
    # takes up; the others are marked failed so that one open run per day can be required.
    op.execute(
        "UPDATE cob_runs SET status = 'failed', "
        "error = 'superseded by a later run of the same day' WHERE status <> 'done' AND id NOT IN "
        "(SELECT max(id) FROM cob_runs WHERE status <> 'done' GROUP BY business_date)"
    )
    op.create_index("ix_cob_runs_open_day", "cob_runs", ["business_date"], unique=True,
                    postgresql_where=_OPEN, sqlite_where=_OPEN)  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_cob_runs_open_day", "cob_runs")
    with op.batch_alter_table("cob_jobs") as jobs:
        jobs.drop_column("error")
        jobs.drop_column("attempts")
    with op.batch_alter_table("cob_runs") as runs:
        runs.drop_column("caught_up_from")
        runs.drop_column("error")
