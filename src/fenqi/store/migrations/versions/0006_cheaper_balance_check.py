"""The PostgreSQL check that every journal entry balances, with a plan PostgreSQL keeps.

The first version built its query text per posting (``EXECUTE format(…)``), so each of the
batch's hundreds of thousands of postings was parsed and planned again at commit: 48 µs a row
here, nine seconds of a million-loan night. A static query is planned once per session. It reads
``postings`` by name (the connection's search_path), which on a table partitioned by ``loan_id``
prunes to the partition. Still row by row and deferred to commit, as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from importlib import import_module

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

PLANNED_ONCE = """
CREATE OR REPLACE FUNCTION postings_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    line postings%ROWTYPE;
    excess numeric;
BEGIN
    FOREACH line IN ARRAY CASE TG_OP WHEN 'INSERT' THEN ARRAY[NEW] WHEN 'DELETE' THEN ARRAY[OLD]
                                     ELSE ARRAY[OLD, NEW] END
    LOOP
        SELECT coalesce(sum(debit), 0) - coalesce(sum(credit), 0) INTO excess
            FROM postings WHERE loan_id = line.loan_id AND entry_no = line.entry_no;
        IF excess <> 0 THEN
            RAISE EXCEPTION 'journal entry % of loan % is unbalanced: debits less credits % fen',
                line.entry_no, line.loan_id, excess
                USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(PLANNED_ONCE)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        first = import_module("fenqi.store.migrations.versions.0001_initial")
        op.execute(
            first.ENTRY_BALANCED_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
        )
