"""What the nightly batch reads and writes: its runs and their chunks (the job queue), and for
a chunk of loans, a statement per table for the whole chunk — its loans (from their
checkpoints), their borrowers and default methods, the notices and bucket moves it leaves. The
loans' own changes go through ``save_bookings``. ``BatchStore`` is all of it in one
transaction, for the batch's service, which sees values only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from itertools import groupby
from typing import Any, TypeVar

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session, undefer

from fenqi.domain.events import Event
from fenqi.domain.loan import Checkpoint, resumable
from fenqi.domain.withholding import DebitRequest
from fenqi.loans.aggregate import Loan
from fenqi.loans.booking import Booking
from fenqi.loans.ports import Borrower, ChunkFigures, JobRecord, RunOutcome, RunRecord
from fenqi.store.borrowers import method_of
from fenqi.store.bulk import insert_rows
from fenqi.store.debit_requests import add_requests, chunk_requests, save_answer
from fenqi.store.documents import Document, event_from
from fenqi.store.errors import MissingError
from fenqi.store.loans import (
    journal_balances_of,
    loan_of,
    loans_closed_past,
    now,
    save_bookings,
)
from fenqi.store.schema import (
    BorrowerRow,
    BucketMoveRow,
    CobJobRow,
    CobRunRow,
    LoanEventRow,
    LoanRow,
    PaymentMethodRow,
    PostingRow,
    SmsOutboxRow,
)

T = TypeVar("T")


def due_loans(day: date) -> Any:
    """Loans with work on ``day`` that the batch has not closed for it yet (the index on
    next_action_date keeps idle loans unread)."""
    return select(LoanRow).where(
        LoanRow.next_action_date <= day,
        or_(LoanRow.closed_through.is_(None), LoanRow.closed_through < day),
    )


def chunk_loans(session: Session, day: date, first: int, last: int) -> list[Loan]:
    """The loans of ids ``first`` to ``last`` with work on ``day``, their rows locked, each with
    its events after its checkpoint (all of them for a loan that has none or cannot start from
    it: an event reaches back before it) and what its journal adds up to."""
    query = due_loans(day).where(LoanRow.id.between(first, last)).order_by(LoanRow.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    rows = list(session.scalars(
        query.options(undefer(LoanRow.checkpoint), undefer(LoanRow.journal_balances))
    ))  # fmt: skip
    since = {row.id: Checkpoint.from_document(row.checkpoint) for row in rows}
    later = _events_of(session, {row.id for row in rows}, after_checkpoint=True)
    whole = {
        loan_id
        for loan_id, kept in since.items()
        if kept is None or not resumable(kept, later.get(loan_id, []), day)
    }
    reaching_back = {loan_id for loan_id in whole if since[loan_id] is not None}
    later.update(_events_of(session, reaching_back, after_checkpoint=False))
    journals = {row.id: kept for row in rows if (kept := journal_balances_of(row)) is not None}
    journals.update(_journals(session, {row.id for row in rows} - set(journals)))
    return [
        loan_of(row, later.get(row.id, []), since=None if row.id in whole else since[row.id],
                journal=journals.get(row.id, {}))
        for row in rows
    ]  # fmt: skip


def _events_of(
    session: Session, loans: set[int], *, after_checkpoint: bool
) -> dict[int, list[Event]]:
    """The events of the chunk's loans with work (not of every loan in its id range): all of
    them, or those after each loan's checkpoint."""
    if not loans:
        return {}
    columns = (LoanEventRow.loan_id, LoanEventRow.kind, LoanEventRow.seq, LoanEventRow.effective,
               LoanEventRow.payload)  # fmt: skip
    query = select(*columns).where(LoanEventRow.loan_id.in_(loans))
    if after_checkpoint:
        query = query.join(LoanRow, LoanRow.id == LoanEventRow.loan_id).where(
            LoanEventRow.seq > func.coalesce(LoanRow.checkpoint_seq, 0)
        )
    stored = session.execute(query.order_by(LoanEventRow.loan_id, LoanEventRow.seq))
    return {
        loan_id: [
            event_from(kind, seq, effective, payload) for _, kind, seq, effective, payload in rows
        ]
        for loan_id, rows in groupby(stored, key=lambda stored_row: stored_row[0])
    }


def _journals(session: Session, loans: set[int]) -> dict[int, dict[str, int]]:
    """Each loan's account balances in the journal, for a whole chunk in one query (for the
    loans whose row does not say what they are)."""
    if not loans:
        return {}
    balance = func.sum(PostingRow.debit - PostingRow.credit)
    query = (
        select(PostingRow.loan_id, PostingRow.account, balance)
        .where(PostingRow.loan_id.in_(loans))
        .group_by(PostingRow.loan_id, PostingRow.account)
    )
    journals: dict[int, dict[str, int]] = {loan_id: {} for loan_id in loans}
    for loan_id, account, total in session.execute(query):
        if total:
            journals[loan_id][account] = int(total)
    return journals


def borrowers(session: Session, borrower_ids: set[int]) -> dict[int, Borrower]:
    """The borrowers, each with her active default method, if any."""
    if not borrower_ids:
        return {}
    rows = session.scalars(select(BorrowerRow).where(BorrowerRow.id.in_(borrower_ids)))
    methods = {
        method.borrower_id: method_of(method)
        for method in session.scalars(
            select(PaymentMethodRow).where(
                and_(
                    PaymentMethodRow.borrower_id.in_(borrower_ids),
                    PaymentMethodRow.status == "active",
                    PaymentMethodRow.is_default,
                )
            )
        )
    }
    return {row.id: Borrower(row.id, row.name, row.phone, methods.get(row.id)) for row in rows}


def write_notices(session: Session, outbox: Sequence[Document], moves: Sequence[Document]) -> int:
    """The chunk's text messages queued and its loans' moves between buckets."""
    insert_rows(session, SmsOutboxRow.__tablename__, outbox)
    insert_rows(session, BucketMoveRow.__tablename__, moves)
    return len(outbox) + len(moves)


def _run(row: CobRunRow) -> RunRecord:
    return RunRecord(row.id, row.business_date, row.status, row.started_at, row.finished_at,
                     dict(row.counts), row.error, row.caught_up_from)  # fmt: skip


def _job(row: CobJobRow) -> JobRecord:
    return JobRecord(row.run_id, row.chunk_no, row.business_date, row.first_loan_id,
                     row.last_loan_id, row.status, row.worker, row.finished_at, row.counts,
                     row.attempts, row.error)  # fmt: skip


class BatchStore:
    """The batch's reads and writes in one transaction (``session``'s)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- the portfolio --------------------------------------------------------------------------

    def first_behind(self, day: date) -> date | None:
        """The first day before ``day`` on which a loan has work not closed yet, if any."""
        action, watermark = LoanRow.next_action_date, LoanRow.closed_through
        behind = select(
            func.min(case((or_(watermark.is_(None), watermark < action), action))),
            func.min(case((watermark >= action, watermark))),
        ).where(action < day, or_(watermark.is_(None), watermark < day - timedelta(days=1)))
        from_action, from_watermark = self.session.execute(behind).one()
        starts = [from_action] if from_action is not None else []
        if from_watermark is not None:
            starts.append(from_watermark + timedelta(days=1))
        return min(starts, default=None)

    def first_opened_if_idle(self, day: date) -> date | None:
        """When nothing is due on ``day``, the day the first loan was opened (a scan of the
        loans, so read on a rerun or a slip of the keyboard, never on a night with work)."""
        due = self.session.scalar(due_loans(day).with_only_columns(LoanRow.id).limit(1))
        if due is not None:
            return None
        return self.session.scalar(select(func.min(LoanRow.opened)))

    def chunk(self, day: date, first: int, last: int) -> list[Loan]:
        return chunk_loans(self.session, day, first, last)

    def add_requests(self, requests: list[DebitRequest]) -> list[DebitRequest]:
        """The chunk's debit requests committed pending (those recorded already, as they
        stand: a chunk taken again after its worker died)."""
        return add_requests(self.session, requests, now())

    def requests(self, day: date, first: int, last: int) -> list[DebitRequest]:
        """The chunk's debit requests of ``day``, locked (before its loans are)."""
        return chunk_requests(self.session, day, first, last)

    def save_requests(self, requests: Sequence[DebitRequest]) -> None:
        at = now()
        for request in requests:
            save_answer(self.session, request, at)

    def borrowers(self, borrower_ids: set[int]) -> dict[int, Borrower]:
        return borrowers(self.session, borrower_ids)

    def save(self, booked: Sequence[tuple[Loan, Booking]], outbox: Sequence[Document],
             moves: Sequence[Document]) -> int:  # fmt: skip
        """A chunk's bookings, notices and bucket moves; returns the rows written."""
        return save_bookings(self.session, booked) + write_notices(self.session, outbox, moves)

    def aging(self, day: date) -> tuple[list[tuple[int, int, str]], int]:
        """Each loan opened by ``day`` that the batch has not closed past it: its DPD,
        outstanding principal and status; and how many loans still await the batch for
        ``day``."""
        query = select(LoanRow.dpd, LoanRow.outstanding_principal, LoanRow.status).where(
            LoanRow.opened <= day,
            or_(LoanRow.closed_through.is_(None), LoanRow.closed_through <= day),
        )
        rows = [(dpd, outstanding, status) for dpd, outstanding, status
                in self.session.execute(query)]  # fmt: skip
        unclosed = self.session.scalar(select(func.count()).select_from(due_loans(day).subquery()))
        return rows, int(unclosed or 0)

    def loans_closed_past(self, day: date) -> list[Loan]:
        return loans_closed_past(self.session, day)

    # -- runs -----------------------------------------------------------------------------------

    def take_up(self, day: date, caught_up_from: date | None) -> int | None:
        """The run of ``day`` that is not done, if any, running once more: its chunks' leases
        ended, its chunks that failed for good queued afresh (``failures`` back to 0; their
        ``attempts`` keep counting) — whether it was recorded failed or was left running (its
        coordinator died and no one settled it). Locked first: a worker settling it meanwhile
        is waited for."""
        open_run = self.session.scalars(
            select(CobRunRow)
            .where(CobRunRow.business_date == day, CobRunRow.status != "done")
            .with_for_update()
        ).first()
        if open_run is None:
            return None
        # Whoever starts the day again takes its chunks up now, as a worker that died would
        # have left them: a lease still running is ended (were its worker alive after all, the
        # two ask the gateway under the same order ids, and it moves the money once).
        self.session.execute(
            update(CobJobRow)
            .where(CobJobRow.run_id == open_run.id, CobJobRow.status == "queued")
            .values(leased_until=None)
            .execution_options(synchronize_session=False)
        )
        requeued = self.session.execute(
            update(CobJobRow)
            .where(CobJobRow.run_id == open_run.id, CobJobRow.status == "failed")
            .values(status="queued", failures=0)
            .returning(CobJobRow.chunk_no)
            .execution_options(synchronize_session=False)
        ).all()
        if requeued or open_run.status == "failed":
            open_run.status, open_run.error, open_run.finished_at = "running", None, None
        if caught_up_from is not None:
            open_run.caught_up_from = caught_up_from
        return open_run.id

    def new_run(self, day: date, chunk_size: int, caught_up_from: date | None) -> int | None:
        """A run for ``day`` with its chunks queued: the loans with work due, by id range;
        None, and no run, when nothing is due."""
        ids = list(self.session.scalars(
            due_loans(day).order_by(LoanRow.id).with_only_columns(LoanRow.id)
        ))  # fmt: skip
        if not ids:
            return None
        run_row = CobRunRow(business_date=day, status="running", started_at=now(), counts={},
                            caught_up_from=caught_up_from)  # fmt: skip
        self.session.add(run_row)
        self.session.flush()  # a second run of the day started at once fails here: retried
        chunks = [ids[start : start + chunk_size] for start in range(0, len(ids), chunk_size)]
        self.session.execute(
            insert(CobJobRow),
            [
                {"run_id": run_row.id, "chunk_no": number, "business_date": day,
                 "first_loan_id": chunk[0], "last_loan_id": chunk[-1], "status": "queued"}
                for number, chunk in enumerate(chunks, start=1)
            ],
        )  # fmt: skip
        return run_row.id

    def business_date(self, run_id: int) -> date | None:
        query = select(CobRunRow.business_date).where(CobRunRow.id == run_id)
        return self.session.scalar(query)

    def take_job(self, run_id: int | None, today: date, worker: str,
                 lease: timedelta) -> JobRecord | None:  # fmt: skip
        """The next queued chunk (of ``run_id``, or of any run) of a day up to ``today``,
        leased to ``worker`` for ``lease`` while its gateway calls run with no transaction open.
        On PostgreSQL, one no other worker holds (``SKIP LOCKED``) or has leased: a worker
        that died leaves its chunk to others when its lease runs out. SQLite runs its chunks
        one at a time in one process, which leases nothing: a chunk left leased by a process
        that died is taken again at once."""
        query = select(CobJobRow).where(
            CobJobRow.status == "queued", CobJobRow.business_date <= today
        )
        if run_id is not None:
            query = query.where(CobJobRow.run_id == run_id)
        query = query.order_by(CobJobRow.run_id, CobJobRow.chunk_no).limit(1)
        if self.session.get_bind().dialect.name == "postgresql":
            free = or_(CobJobRow.leased_until.is_(None), CobJobRow.leased_until < now())
            query = query.where(free).with_for_update(skip_locked=True)
        job = self.session.scalars(query).first()
        if job is None:
            return None
        job.worker, job.leased_until = worker, now() + lease
        return _job(job)

    def release(self, job: JobRecord) -> None:
        """Ends the chunk's lease: its gateway calls are over, and from now on its row lock
        keeps other workers off it (a worker that dies then leaves it to them at once)."""
        self.session.execute(
            update(CobJobRow)
            .where(CobJobRow.run_id == job.run_id, CobJobRow.chunk_no == job.chunk_no)
            .values(leased_until=None)
            .execution_options(synchronize_session=False)
        )

    def hold(self, job: JobRecord) -> bool:
        """Whether the chunk is still to do and this transaction holds it (on PostgreSQL, its
        row locked unless another worker holds it: one that took it up meanwhile)."""
        query = select(CobJobRow.status).where(
            CobJobRow.run_id == job.run_id, CobJobRow.chunk_no == job.chunk_no
        )
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return self.session.scalar(query) == "queued"

    def job_done(self, job: JobRecord, counts: Document, worker: str) -> None:
        self.session.execute(
            update(CobJobRow)
            .where(CobJobRow.run_id == job.run_id, CobJobRow.chunk_no == job.chunk_no)
            .values(status="done", worker=worker, finished_at=now(), counts=counts,
                    attempts=CobJobRow.attempts + 1, error=None,  # done: no failure stands
                    leased_until=None)
            .execution_options(synchronize_session=False)
        )  # fmt: skip

    def job_failed(self, run_id: int, chunk_no: int, said: str, worker: str,
                   max_attempts: int) -> str | None:  # fmt: skip
        """Records a chunk's failed try, queueing it again or, at the ``max_attempts``th
        failure, failing it for good; its status after, or None when it was no longer queued
        (another worker took it and did it meanwhile)."""
        failures = CobJobRow.failures + 1
        return self.session.execute(
            update(CobJobRow)
            .where(CobJobRow.run_id == run_id, CobJobRow.chunk_no == chunk_no,
                   CobJobRow.status == "queued")
            .values(attempts=CobJobRow.attempts + 1, failures=failures, error=said,
                    worker=worker, finished_at=now(), leased_until=None,
                    status=case((failures >= max_attempts, "failed"), else_="queued"))
            .returning(CobJobRow.status)
            .execution_options(synchronize_session=False)
        ).scalar()  # fmt: skip

    def settle_run(self, run_id: int, outcome: RunOutcome) -> RunRecord:
        """Once no chunk of the run is queued, records what ``outcome`` makes of its chunks:
        its status, error and counts. The run's row is locked first, and the chunks are counted
        after: of two workers settling the last two chunks at once, the second waits for the
        first to commit and then counts its chunk settled (each statement reads what is
        committed), so one of them always settles the run."""
        run_row = self.session.get(CobRunRow, run_id, with_for_update=True)
        if run_row is None:
            raise MissingError(f"no close-of-business run {run_id}")
        if run_row.status == "done":
            return _run(run_row)
        figures = self.chunk_figures([run_id])[run_id]
        if figures["chunks_queued"]:
            return _run(run_row)
        jobs = [_job(job) for job in self.session.scalars(
            select(CobJobRow).where(CobJobRow.run_id == run_id).order_by(CobJobRow.chunk_no)
            .execution_options(populate_existing=True)  # the chunk this transaction settled
        )]  # fmt: skip
        run_row.status, run_row.error, run_row.counts = outcome(jobs, figures)
        run_row.finished_at = now()
        return _run(run_row)

    def chunk_figures(self, run_ids: Sequence[int]) -> dict[int, ChunkFigures]:
        """Each run's chunks, done, failed and queued, as they stand (a run still running says
        how far it has got)."""
        figures = {run_id: dict.fromkeys(("chunks", "chunks_done", "chunks_failed",
                                          "chunks_queued"), 0) for run_id in run_ids}  # fmt: skip
        query = (
            select(CobJobRow.run_id, CobJobRow.status, func.count())
            .where(CobJobRow.run_id.in_(run_ids))
            .group_by(CobJobRow.run_id, CobJobRow.status)
        )
        for run_id, status, count in self.session.execute(query):
            figures[run_id]["chunks"] += count
            figures[run_id][f"chunks_{status}"] = count
        return figures

    def runs(self, limit: int) -> list[RunRecord]:
        query = select(CobRunRow).order_by(CobRunRow.id.desc()).limit(limit)
        return [_run(row) for row in self.session.scalars(query)]

    def run(self, run_id: int) -> RunRecord | None:
        row = self.session.get(CobRunRow, run_id)
        return None if row is None else _run(row)

    def jobs(self, run_id: int) -> list[JobRecord]:
        query = select(CobJobRow).where(CobJobRow.run_id == run_id).order_by(CobJobRow.chunk_no)
        return [_job(row) for row in self.session.scalars(query)]
