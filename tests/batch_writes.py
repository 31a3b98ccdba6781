"""What a close of business writes, read back for tests that compare two batches' work."""

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.store.schema import JournalEntryRow, LoanEventRow, LoanRow, PostingRow, SmsOutboxRow


def snapshot(engine: Engine, *, checkpoints: bool = True) -> dict[str, Any]:
    """Events, journal, outbox and loan rows, without the wall-clock times stamped on them
    (and without each loan's checkpoint, if ``checkpoints`` is false)."""
    with Session(engine) as session:

        def rows(*columns: Any) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in session.execute(select(*columns).order_by(*columns[:3]))]

        kept = (LoanRow.checkpoint_seq, LoanRow.checkpoint) if checkpoints else ()
        return {
            "events": rows(LoanEventRow.loan_id, LoanEventRow.seq, LoanEventRow.kind,
                           LoanEventRow.effective, LoanEventRow.payload),
            "entries": rows(JournalEntryRow.loan_id, JournalEntryRow.entry_no,
                            JournalEntryRow.booked_date, JournalEntryRow.memo),
            "postings": rows(PostingRow.loan_id, PostingRow.entry_no, PostingRow.line_no,
                             PostingRow.account, PostingRow.debit, PostingRow.credit),
            "outbox": rows(SmsOutboxRow.loan_id, SmsOutboxRow.day, SmsOutboxRow.stage,
                           SmsOutboxRow.text, SmsOutboxRow.status),
            "loans": rows(LoanRow.id, LoanRow.version, LoanRow.status, LoanRow.dpd,
                          LoanRow.outstanding_principal, LoanRow.closed_through,
                          LoanRow.next_action_date, *kept),
        }  # fmt: skip
