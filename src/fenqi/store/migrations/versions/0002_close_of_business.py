"""The nightly batch: each loan's next action date and watermark, runs and their chunk jobs,
bucket moves, and the SMS outbox with what the gateway sent.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("loans") as loans:
        # The earliest day the batch has work on the loan (NULL: none ever again), and the last
        # business day the batch closed for it.
        loans.add_column(sa.Column("next_action_date", sa.Date(), nullable=True))
        loans.add_column(sa.Column("closed_through", sa.Date(), nullable=True))
    op.execute("UPDATE loans SET next_action_date = opened, closed_through = opened")
    op.create_index("ix_loans_next_action_date", "loans", ["next_action_date", "id"])
    op.create_table(
        "cob_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),  # running | done | failed
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cob_runs")),
    )
    op.create_table(
        "cob_jobs",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("first_loan_id", sa.Integer(), nullable=False),
        sa.Column("last_loan_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),  # queued | done
        sa.Column("worker", sa.String(), nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "chunk_no", name=op.f("pk_cob_jobs")),
    )
    op.create_index("ix_cob_jobs_status", "cob_jobs", ["status", "run_id", "chunk_no"])
    op.create_table(
        "bucket_moves",
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("from_bucket", sa.String(), nullable=False),
        sa.Column("to_bucket", sa.String(), nullable=False),
        sa.Column("dpd", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("loan_id", "day", name=op.f("pk_bucket_moves")),
    )
    op.create_table(
        "sms_outbox",
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("borrower_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),  # pending | sent
        _timestamp("sent_at", nullable=True),
        sa.PrimaryKeyConstraint("loan_id", "day", "stage", name=op.f("pk_sms_outbox")),
    )
    op.create_index("ix_sms_outbox_status", "sms_outbox", ["status", "day"])
    op.create_table(
        "sms_sent",  # what the SMS gateway simulator delivered
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("borrower_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        _timestamp("sent_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_sent")),
    )
    op.create_index("ix_sms_sent_borrower_id", "sms_sent", ["borrower_id", "sent_at"])


def downgrade() -> None:
    for table in ("sms_sent", "sms_outbox", "bucket_moves", "cob_jobs", "cob_runs"):
        op.drop_table(table)
    op.drop_index("ix_loans_next_action_date", "loans")
    with op.batch_alter_table("loans") as loans:
        loans.drop_column("closed_through")
        loans.drop_column("next_action_date")
