"""Close of business: the nightly batch (docs/design.md#the-business-day-batch,
docs/domain.md#close-of-business).

A run closes one business day. Only loans whose next action date has come, and whose watermark
is behind the day, are read. They are split into chunks by loan-id range; each chunk is a job
that one worker takes (``SKIP LOCKED`` on PostgreSQL; one at a time on SQLite) and does in one
transaction: load the chunk's loans and events in two queries, let the domain decide each loan's
day (write-off, auto-debit or its retry, late fee, penalty, dunning messages), and write the
events, journal entries, receipts, outbox messages, bucket moves, watermarks and next action
dates with bulk statements, marking the job done in the same commit. A worker that dies loses
only its open transaction: the job goes back to the queue and the rerun does exactly what the
lost one would have. A day already closed for a loan is never closed again.

A chunk that raises is recorded with its error and tried again, a bounded number of times.
Whoever settles a run's last chunk — done, or failed for good — settles the run in the same
transaction: done, or failed with the error; starting its day again takes its failed chunks up.
A day that has not come yet (``fenqi.clock``) is never closed; closing a day while loans are
behind closes the days they are behind first, one by one; a day with nothing to close records
no run.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from itertools import groupby
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, undefer

from fenqi import clock, wire
from fenqi.domain.collection import DebitPlan, debit_due, next_action_date, write_off_due
from fenqi.domain.dunning import Recipient, message, notices
from fenqi.domain.events import Channel, DebitFailed, Event, Payment, WriteOff
from fenqi.domain.ledger import Balances, balances, journal
from fenqi.domain.loan import Checkpoint, LoanState, LoanStatus, bucket, resumable
from fenqi.services.context import Context, Document, run
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.store.bulk import insert_rows
from fenqi.store.documents import event_from, terms_from
from fenqi.store.loans import (
    Entry,
    LoanRecord,
    cap_of,
    checkpoint_columns,
    event_row,
    journal_balances_column,
    journal_balances_of,
    journal_rows,
    policy_of,
)
from fenqi.store.schema import (
    Base,
    BorrowerRow,
    BucketMoveRow,
    CobJobRow,
    CobRunRow,
    JournalEntryRow,
    LoanEventRow,
    LoanRow,
    PaymentMethodRow,
    PostingRow,
    ReceiptRow,
    SmsOutboxRow,
)

CHUNK_SIZE = 500
MAX_ATTEMPTS = 3  # tries that raise, since a chunk was queued, before it fails for good
WAIT_SECONDS = 0.3  # between looks at a run whose last chunks other workers hold
ERROR_LENGTH = 300  # characters of a failure kept with its chunk and run
_BUCKET_ORDER = {f"M{n}": n for n in range(8)}


def now() -> datetime:
    return datetime.now(UTC)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- counting what a run did ----------------------------------------------------------------------


@dataclass
class Tally:
    """What a chunk (and, added up, a run) did."""

    loans: int = 0
    debits_tried: int = 0
    debits_succeeded: int = 0
    debits_failed: int = 0
    debited: int = 0  # fen
    failed_amount: int = 0  # fen
    newly_overdue: Counter[str] = field(default_factory=Counter)  # by the bucket moved into
    sms_queued: int = 0
    write_offs: int = 0
    rows: int = 0  # rows written

    def add(self, other: Document) -> None:
        for name in ("loans", "debits_tried", "debits_succeeded", "debits_failed", "debited",
                     "failed_amount", "sms_queued", "write_offs", "rows"):  # fmt: skip
            setattr(self, name, getattr(self, name) + other.get(name, 0))
        self.newly_overdue.update(other.get("newly_overdue", {}))

    def document(self) -> Document:
        return {
            "loans": self.loans,
            "debits_tried": self.debits_tried,
            "debits_succeeded": self.debits_succeeded,
            "debits_failed": self.debits_failed,
            "debited": self.debited,
            "failed_amount": self.failed_amount,
            "newly_overdue": dict(sorted(self.newly_overdue.items())),
            "sms_queued": self.sms_queued,
            "write_offs": self.write_offs,
            "rows": self.rows,
        }


# -- a run ----------------------------------------------------------------------------------------


Take = Callable[[int, date], None]  # does a run's chunks, given the run and its day


class BusinessDayError(RefusedError):
    """A business day the batch cannot close: one that has not come yet, or one before any loan
    was opened."""

    field = "date"


class RunFailedError(Exception):
    """A run whose chunks failed for good; ``document`` is the run, with its error."""

    def __init__(self, document: Document) -> None:
        self.document = document
        super().__init__(
            f"close of business {document['business_date']} failed (run {document['id']}): "
            f"{document['error']}"
        )


def close(context: Context, day: date, *, today: date | None = None,
          chunk_size: int = CHUNK_SIZE, take: Take | None = None,
          progress: Callable[[Document], None] | None = None) -> Document:  # fmt: skip
    """Closes business day ``day`` in this process (other workers may help), after catching up
    the days before it on which loans are behind (``days_to_close``): the day's run, or a
    ``nothing_to_do`` document, with ``caught_up``, what was closed before it."""
    *before, last = close_through(
        context, day, today=today, chunk_size=chunk_size, take=take, progress=progress
    )
    return {**last, "caught_up": before}


def close_through(
    context: Context,
    through: date,
    *,
    today: date | None = None,
    chunk_size: int = CHUNK_SIZE,
    take: Take | None = None,
    progress: Callable[[Document], None] | None = None,
) -> list[Document]:
    """Closes ``through``, after each earlier day on which loans are behind, in order: from the
    first of ``days_to_close(through)``, then each next day on which a loan has work not closed
    yet (the days between, when no loan has any, are passed over), a run each (``take`` does
    its chunks: by default this process, with ``progress`` told of each). It stops at a day
    whose run failed: the days after it would find that day's loans behind."""
    day = first = days_to_close(context, through, today=today)[0]
    closed: list[Document] = []
    while True:
        caught_up_from = first if day == through and first < through else None
        run_id = start_run(context, day, chunk_size, today=today, caught_up_from=caught_up_from)
        if run_id is None:
            closed.append(wire.cob_nothing_to_do(day, caught_up_from))
        else:
            if take is None:
                work(context, run_id, progress, today=today)
            else:
                take(run_id, day)
            closed.append(_settle(context, run_id, today))
        if day == through or closed[-1]["status"] == "failed":
            return closed
        behind = run(context, lambda session: _first_behind(session, through))
        day = through if behind is None else max(behind, day + timedelta(days=1))


def days_to_close(context: Context, through: date, *, today: date | None = None) -> list[date]:
    """The business days closing ``through`` takes, oldest first: the days from the first on
    which a loan is behind, then ``through`` itself. A loan is behind when it is open (it has a
    next action date) and its first day of work not closed yet — its next action date, or the
    day after its watermark ``closed_through`` if that is later — comes before ``through``:
    its next action date is before ``through`` and its watermark before the day before.
    Refuses a day after ``today`` (default: the clock's) or before any loan was opened."""
    _refuse_future(through, today)

    def first(session: Session) -> date | None:
        start = _first_behind(session, through) if through > date.min else None
        if start is None:
            _refuse_before_the_first_loan(session, through)
        return start

    start = run(context, first)
    if start is None:
        return [through]
    return [start + timedelta(days=k) for k in range((through - start).days + 1)]


def _first_behind(session: Session, day: date) -> date | None:
    """The first day before ``day`` on which a loan has work not closed yet, if any."""
    action, watermark = LoanRow.next_action_date, LoanRow.closed_through
    behind = select(
        func.min(case((or_(watermark.is_(None), watermark < action), action))),
        func.min(case((watermark >= action, watermark))),
    ).where(action < day, or_(watermark.is_(None), watermark < day - timedelta(days=1)))
    from_action, from_watermark = session.execute(behind).one()
    starts = [from_action] if from_action is not None else []
    if from_watermark is not None:
        starts.append(from_watermark + timedelta(days=1))
    return min(starts, default=None)


def _refuse_future(day: date, today: date | None) -> None:
    today = clock.today() if today is None else today
    if day > today:
        raise BusinessDayError(
            f"business day {day} has not come yet (today is {today}, Beijing time); "
            f"give a day up to {today}"
        )


def _refuse_before_the_first_loan(session: Session, day: date) -> None:
    """Only asked when nothing is due on ``day``, so the portfolio's first day is read (a scan
    of the loans) on a rerun or a slip of the keyboard, never on a night with work."""
    if session.scalar(_due_loans(day).with_only_columns(LoanRow.id).limit(1)) is not None:
        return
    first = session.scalar(select(func.min(LoanRow.opened)))
    if first is not None and day < first:
        raise BusinessDayError(
            f"business day {day} is before the first loan was opened ({first}); nothing was "
            f"open to close: give a day from {first} on"
        )


def start_run(
    context: Context,
    day: date,
    chunk_size: int = CHUNK_SIZE,
    *,
    today: date | None = None,
    caught_up_from: date | None = None,
) -> int | None:
    """Records a run for ``day`` and queues its chunks: the loans with work due, by id range;
    None, and no run, when nothing is due. A run of ``day`` that is not done — its process died,
    or its chunks failed — is taken up again instead, its failed chunks queued anew."""
    _refuse_future(day, today)

    def plan(session: Session) -> int | None:
        open_run = session.scalars(
            select(CobRunRow)
            .where(CobRunRow.business_date == day, CobRunRow.status != "done")
            .with_for_update()  # not settled by a worker meanwhile: it waits, then sees this
        ).first()
        if open_run is not None:
            _take_up(session, open_run, caught_up_from)
            return open_run.id
        ids = list(
            session.scalars(_due_loans(day).order_by(LoanRow.id).with_only_columns(LoanRow.id))
        )
        if not ids:
            return None
        run_row = CobRunRow(business_date=day, status="running", started_at=now(), counts={},
                            caught_up_from=caught_up_from)  # fmt: skip
        session.add(run_row)
        session.flush()  # a second run of the day started at once fails here, and is retried
        chunks = [ids[start : start + chunk_size] for start in range(0, len(ids), chunk_size)]
        session.execute(
            insert(CobJobRow),
            [
                {"run_id": run_row.id, "chunk_no": number, "business_date": day,
                 "first_loan_id": chunk[0], "last_loan_id": chunk[-1], "status": "queued"}
                for number, chunk in enumerate(chunks, start=1)
            ],
        )  # fmt: skip
        return run_row.id

    return run(context, plan)


def _take_up(session: Session, open_run: CobRunRow, caught_up_from: date | None) -> None:
    """A run started again: running once more, its chunks that failed for good queued afresh
    with ``MAX_ATTEMPTS`` tries of their own — whether the run was recorded failed or was left
    running (its coordinator died and no one settled it). Their ``attempts`` keep counting."""
    requeued = session.execute(
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


def _due_loans(day: date) -> Any:
    """Loans with work on ``day`` that the batch has not closed for it yet (the index on
    next_action_date keeps idle loans unread)."""
    return select(LoanRow).where(
        LoanRow.next_action_date <= day,
        or_(LoanRow.closed_through.is_(None), LoanRow.closed_through < day),
    )


class Worked(NamedTuple):
    """What one worker did: chunks done, and the chunks that failed for good, each said."""

    done: int
    failed: list[str]


def work(context: Context, run_id: int | None = None,
         progress: Callable[[Document], None] | None = None, *,
         today: date | None = None) -> Worked:  # fmt: skip
    """Takes queued chunks (of ``run_id``, or of any run) until none is left. A chunk that
    raises — any database error, any bug — is recorded with its error and queued again, up to
    ``MAX_ATTEMPTS`` tries that raise, then failed for good; a worker killed mid-chunk leaves it
    queued as it was. The worker that settles a run's last chunk settles the run. Chunks of a
    day after ``today`` are never taken. Any number of workers, on any machines, may run this
    at once."""
    today = clock.today() if today is None else today
    if run_id is not None:
        _refuse_future_run(context, run_id, today)
    done, failed = 0, []
    while True:
        taken: list[tuple[int, int]] = []
        try:
            counts = run(context, partial(_one_job, context, run_id=run_id, today=today,
                                          taken=taken))  # fmt: skip
        except Exception as error:  # whatever a chunk raised is its failure
            if not taken:  # before any chunk was taken: the queue itself cannot be read
                raise
            gave_up = _chunk_failed(context, *taken[-1], error)
            if gave_up is not None:
                failed.append(gave_up)
            continue
        if counts is None:
            return Worked(done, failed)
        done += 1
        if progress is not None:
            progress(counts)


def _refuse_future_run(context: Context, run_id: int, today: date) -> None:
    day = run(context, lambda session: session.scalar(
        select(CobRunRow.business_date).where(CobRunRow.id == run_id)
    ))  # fmt: skip
    if day is not None:
        _refuse_future(day, today)


def _chunk_failed(context: Context, run_id: int, chunk_no: int, error: Exception) -> str | None:
    """Records a chunk's failed try, queueing it again or, at the last one, failing it for good
    (then says so, and settles the run if that was its last chunk). Only a chunk still queued
    is touched: another worker may have taken it and done it meanwhile."""
    said = failure(error)
    failures = CobJobRow.failures + 1

    def record(session: Session) -> str | None:
        status = session.execute(
            update(CobJobRow)
            .where(CobJobRow.run_id == run_id, CobJobRow.chunk_no == chunk_no,
                   CobJobRow.status == "queued")
            .values(attempts=CobJobRow.attempts + 1, failures=failures, error=said,
                    worker=worker_name(), finished_at=now(),
                    status=case((failures >= MAX_ATTEMPTS, "failed"), else_="queued"))
            .returning(CobJobRow.status)
            .execution_options(synchronize_session=False)
        ).scalar()  # fmt: skip
        if status != "failed":
            return None
        _settle_run(session, run_id)
        return f"run {run_id} chunk {chunk_no} failed {MAX_ATTEMPTS} times: {said}"

    return run(context, record)


def failure(error: BaseException) -> str:
    """What a failure says: the exception's class and the first line of its message — for a
    database error, the driver's — and never the statement or its parameters, which SQLAlchemy
    puts on later lines."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = str(cause).strip().splitlines()
    said = f"{type(cause).__name__}: {lines[0].strip()}" if lines else type(cause).__name__
    return said[:ERROR_LENGTH]


def _settle(context: Context, run_id: int, today: date | None) -> Document:
    """The run once every chunk is done or failed for good: chunks that other workers still
    hold are waited for, and those they leave (a worker killed mid-chunk) are taken."""
    while (document := finish_run(context, run_id))["status"] == "running":
        time.sleep(WAIT_SECONDS)
        work(context, run_id, today=today)
    return document


def finish_run(context: Context, run_id: int) -> Document:
    """The run as it stands, settled first if every chunk is (``_settle_run``: the worker that
    settled the last chunk has done so already, unless the run was left from before)."""

    def finish(session: Session) -> Document:
        run_row = _settle_run(session, run_id)
        return wire.cob_run(run_row, _settled(_chunk_figures(session, [run_id])[run_id]))

    return run(context, finish)


def _settle_run(session: Session, run_id: int) -> CobRunRow:
    """In the transaction that settled one of its chunks: once no chunk of the run is queued,
    records it done, or failed with the error of its first chunk that failed for good, and
    adds up what its chunks did. The run's row is locked first, and the chunks are counted
    after: of two workers settling the last two chunks at once, the second waits for the first
    to commit and then counts its chunk settled (each statement reads what is committed), so one
    of them always settles the run."""
    run_row = session.get(CobRunRow, run_id, with_for_update=True)
    if run_row is None:
        raise NotFoundError(f"no close-of-business run {run_id}")
    if run_row.status == "done":
        return run_row
    figures = _chunk_figures(session, [run_id])[run_id]
    if figures["chunks_queued"]:
        return run_row
    jobs = list(session.scalars(
        select(CobJobRow).where(CobJobRow.run_id == run_id).order_by(CobJobRow.chunk_no)
        .execution_options(populate_existing=True)  # the chunk this transaction just settled
    ))  # fmt: skip
    tally = Tally()
    for job in jobs:
        tally.add(job.counts or {})
    failed = [job for job in jobs if job.status == "failed"]
    run_row.status, run_row.finished_at = ("failed" if failed else "done"), now()
    run_row.error = _run_error(failed, len(jobs)) if failed else None
    run_row.counts = {**tally.document(), **_settled(figures)}
    return run_row


def _chunk_figures(session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Each run's chunks, done, failed and queued, as they stand (a run still running says
    how far it has got)."""
    figures = {run_id: dict.fromkeys(("chunks", "chunks_done", "chunks_failed",
                                      "chunks_queued"), 0) for run_id in run_ids}  # fmt: skip
    query = (
        select(CobJobRow.run_id, CobJobRow.status, func.count())
        .where(CobJobRow.run_id.in_(run_ids))
        .group_by(CobJobRow.run_id, CobJobRow.status)
    )
    for run_id, status, count in session.execute(query):
        figures[run_id]["chunks"] += count
        figures[run_id][f"chunks_{status}"] = count
    return figures


def _settled(figures: dict[str, int]) -> dict[str, int]:
    return {name: figures[name] for name in ("chunks", "chunks_done", "chunks_failed")}


def _run_error(failed: list[CobJobRow], chunks: int) -> str:
    first = failed[0]
    return (f"{len(failed)} of {chunks} chunks failed; chunk {first.chunk_no} after "
            f"{first.attempts} attempts: {first.error}")  # fmt: skip


# -- a chunk --------------------------------------------------------------------------------------


def _one_job(context: Context, session: Session, *, run_id: int | None, today: date,
             taken: list[tuple[int, int]]) -> Document | None:  # fmt: skip
    """Takes the next queued chunk and closes it, in this transaction; ``taken`` is told which
    before any of its work, so that a failure can be recorded against it."""
    query = select(CobJobRow).where(CobJobRow.status == "queued", CobJobRow.business_date <= today)
    if run_id is not None:
        query = query.where(CobJobRow.run_id == run_id)
    query = query.order_by(CobJobRow.run_id, CobJobRow.chunk_no).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    job = session.scalars(query).first()
    if job is None:
        return None
    taken.append((job.run_id, job.chunk_no))
    counts = _close_chunk(context, session, job.business_date, job.first_loan_id, job.last_loan_id)
    session.execute(
        update(CobJobRow)
        .where(CobJobRow.run_id == job.run_id, CobJobRow.chunk_no == job.chunk_no)
        .values(status="done", worker=worker_name(), finished_at=now(), counts=counts,
                attempts=CobJobRow.attempts + 1, error=None)  # done: no failure stands
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    _settle_run(session, job.run_id)
    return counts


@dataclass
class _Writes:
    """Everything a chunk writes, gathered so that each table gets one bulk statement."""

    events: list[Document] = field(default_factory=list)
    entries: list[Document] = field(default_factory=list)
    postings: list[Document] = field(default_factory=list)
    receipts: list[Document] = field(default_factory=list)
    outbox: list[Document] = field(default_factory=list)
    moves: list[Document] = field(default_factory=list)
    loans: list[Document] = field(default_factory=list)

    def flush(self, session: Session) -> int:
        tables = ((LoanEventRow, self.events), (JournalEntryRow, self.entries),
                  (PostingRow, self.postings), (ReceiptRow, self.receipts),
                  (SmsOutboxRow, self.outbox), (BucketMoveRow, self.moves))  # fmt: skip
        for mapped, rows in tables:
            insert_rows(session, mapped.__tablename__, rows)  # COPY on PostgreSQL
        if self.loans:  # a Core statement executed many: the ORM's bulk path costs more a row
            loans = Base.metadata.tables[LoanRow.__tablename__]
            by_id = update(loans).where(loans.c.id == bindparam("loan_id"))
            session.execute(by_id, self.loans)
        return sum(len(rows) for _, rows in tables) + len(self.loans)


def _close_chunk(context: Context, session: Session, day: date, first: int, last: int) -> Document:
    query = _due_loans(day).where(LoanRow.id.between(first, last)).order_by(LoanRow.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    rows = list(session.scalars(
        query.options(undefer(LoanRow.checkpoint), undefer(LoanRow.journal_balances))
    ))  # fmt: skip
    records = _records(session, rows, day)
    people = _people(session, {row.borrower_id for row in rows})
    journals = {row.id: kept for row in rows if (kept := journal_balances_of(row)) is not None}
    journals.update(_journals(session, {row.id for row in rows} - set(journals)))
    chunk = _Chunk(context, session, day)
    for record in records:
        chunk.close_loan(
            record, people.get(record.row.borrower_id), journals.get(record.row.id, {})
        )
    chunk.tally.rows = chunk.writes.flush(session)
    return chunk.tally.document()


def _records(session: Session, rows: list[LoanRow], day: date) -> list[LoanRecord]:
    """The chunk's loans with their events: those after each loan's checkpoint, or all of them
    for a loan that has none or cannot start from it (an event reaches back before it)."""
    since = {row.id: Checkpoint.from_document(row.checkpoint) for row in rows}
    later = _events_of(session, {row.id for row in rows}, after_checkpoint=True)
    whole = {
        loan_id
        for loan_id, kept in since.items()
        if kept is None or not resumable(kept, later.get(loan_id, []), day)
    }
    reaching_back = {loan_id for loan_id in whole if since[loan_id] is not None}
    later.update(_events_of(session, reaching_back, after_checkpoint=False))
    return [
        LoanRecord(
            row,
            terms_from(row.terms),
            policy_of(row.policy),
            later.get(row.id, []),
            cap_of(row),
            None if row.id in whole else since[row.id],
        )
        for row in rows
    ]


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


@dataclass(frozen=True)
class _Person:
    borrower: BorrowerRow
    method: PaymentMethodRow | None


def _people(session: Session, borrower_ids: set[int]) -> dict[int, _Person]:
    if not borrower_ids:
        return {}
    borrowers = session.scalars(select(BorrowerRow).where(BorrowerRow.id.in_(borrower_ids)))
    methods = {
        method.borrower_id: method
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
    return {row.id: _Person(row, methods.get(row.id)) for row in borrowers}


@dataclass
class _Chunk:
    """One chunk's business day: its loans are closed one by one, its writes gathered."""

    context: Context
    session: Session
    day: date
    tally: Tally = field(default_factory=Tally)
    writes: _Writes = field(default_factory=_Writes)

    def close_loan(self, record: LoanRecord, person: _Person | None, booked: Balances) -> None:
        """One loan's business day: its write-off once its DPD has reached the product's
        write-off DPD, else the debit it is owed (if any); its books brought to the day, its
        messages, its bucket, and its next action date."""
        row, terms, day = record.row, record.terms, self.day
        self.tally.loans += 1
        booking = max(day, row.booked_through)
        before = record.state_on(day)
        method = None if person is None else person.method
        added: list[Event] = []
        if (written_off := write_off_due(before, record.policy, record.next_seq)) is not None:
            added.append(written_off)
            self.tally.write_offs += 1
        elif (plan := debit_due(before, record.policy, day)) is not None:
            added.append(self.debit(record, plan, method))
        books_from = booked  # what the journal holds now: the day's accrual brings it to the day
        books_day = balances(terms, record.state_on(booking))
        entries = [Entry(journal(books_from, books_day), f"close of business {day.isoformat()}")]
        for event in added:
            record.events.append(event)
            self.writes.events.append(event_row(row.id, event, now()))
        after = record.state_on(booking)
        books_after = books_day
        if added:
            books_after = balances(terms, after)
            memo = "write-off" if isinstance(added[-1], WriteOff) else "auto-debit"
            entries.append(Entry(journal(books_day, books_after), memo, added[-1].seq))
        self.post(row.id, row.version, booking, entries)
        paid = next((event for event in added if isinstance(event, Payment)), None)
        if paid is not None:
            receipt = wire.receipt(record, after, paid, method, issued=now())
            stored = {"loan_id": row.id, "seq": paid.seq, "receipt_no": receipt["id"]}
            self.writes.receipts.append({**stored, "payload": receipt})
        self.messages(record, after, person)
        self.bucket(row, after)
        self.writes.loans.append({
            "loan_id": row.id, "version": row.version + 1, "status": after.status.value,
            "outstanding_principal": int(after.outstanding_principal), "dpd": after.dpd,
            "booked_through": booking, "closed_through": day,
            "next_action_date": next_action_date(after, record.policy, day),
            **checkpoint_columns(record.checkpoint_on(booking)),
            **journal_balances_column(row.version + 1, books_after),
        })  # fmt: skip

    def debit(self, record: LoanRecord, plan: DebitPlan, method: PaymentMethodRow | None) -> Event:
        """Tries the auto-debit: a payment if the channel takes it, a failed debit otherwise.
        Its key names the loan, the installment and the attempt, so a rerun never debits
        twice."""
        seq, tally, day = record.next_seq, self.tally, self.day
        tally.debits_tried += 1
        declined = "no repayment method bound"
        if method is not None:
            key = f"cob:{record.row.id}:{plan.due_date.isoformat()}:{plan.attempt}"
            result = self.context.channel(self.session).debit(method.token_ref, plan.amount, key)
            if not result.declined:
                tally.debits_succeeded += 1
                tally.debited += plan.amount
                return Payment(seq, day, plan.amount, Channel(method.kind))
            declined = result.declined
        tally.debits_failed += 1
        tally.failed_amount += plan.amount
        return DebitFailed(seq, day, plan.due_date, plan.attempt, declined)

    def post(self, loan_id: int, version: int, day: date, entries: Sequence[Entry]) -> None:
        headers, lines = journal_rows(loan_id, version, day, entries)
        self.writes.entries += headers
        self.writes.postings += lines

    def messages(self, record: LoanRecord, state: LoanState, person: _Person | None) -> None:
        if person is None:
            return
        method = person.method
        tail = None if method is None or method.kind != "bank_card" else method.masked_account[-4:]
        recipient = Recipient(person.borrower.name, record.row.order_id, tail)
        for notice in notices(state, record.policy, self.day):
            self.writes.outbox.append({
                "loan_id": record.row.id, "day": self.day, "stage": notice.step,
                "borrower_id": person.borrower.id, "phone": person.borrower.phone,
                "text": message(notice, recipient), "status": "pending", "sent_at": None,
            })  # fmt: skip
            self.tally.sms_queued += 1

    def bucket(self, row: LoanRow, after: LoanState) -> None:
        was, now_in = bucket(row.dpd), after.bucket
        if was == now_in:
            return
        self.writes.moves.append({"loan_id": row.id, "day": self.day, "from_bucket": was,
                                  "to_bucket": now_in, "dpd": after.dpd})  # fmt: skip
        if _BUCKET_ORDER[now_in] > _BUCKET_ORDER[was]:
            self.tally.newly_overdue[now_in] += 1


# -- reading runs and the portfolio ---------------------------------------------------------------


def runs(context: Context, limit: int = 20) -> list[Document]:
    def listing(session: Session) -> list[Document]:
        query = select(CobRunRow).order_by(CobRunRow.id.desc()).limit(limit)
        rows = list(session.scalars(query))
        figures = _chunk_figures(session, [row.id for row in rows])
        return [wire.cob_run(row, _settled(figures[row.id])) for row in rows]

    return run(context, listing)


def run_report(context: Context, run_id: int) -> Document:
    def report(session: Session) -> Document:
        row = session.get(CobRunRow, run_id)
        if row is None:
            raise NotFoundError(f"no close-of-business run {run_id}")
        jobs = list(session.scalars(select(CobJobRow).where(CobJobRow.run_id == run_id)
                                    .order_by(CobJobRow.chunk_no)))  # fmt: skip
        figures = _settled(_chunk_figures(session, [run_id])[run_id])
        return {**wire.cob_run(row, figures), "chunks": [wire.cob_job(job) for job in jobs]}

    return run(context, report)


def aging(context: Context, day: date) -> Document:
    """Loans and their outstanding principal by delinquency bucket, as the batch closed them."""

    def report(session: Session) -> Document:
        query = select(LoanRow.dpd, LoanRow.outstanding_principal, LoanRow.status)
        rows = session.execute(query.where(LoanRow.opened <= day))
        counts: Counter[str] = Counter()
        principal: Counter[str] = Counter()
        for dpd, outstanding, status in rows:
            if status in (LoanStatus.SETTLED.value, LoanStatus.CANCELLED.value):
                continue
            name = "written_off" if status == LoanStatus.WRITTEN_OFF.value else bucket(dpd)
            counts[name] += 1
            principal[name] += outstanding
        unclosed = session.scalar(select(func.count()).select_from(_due_loans(day).subquery()))
        return wire.aging(day, counts, principal, int(unclosed or 0))

    return run(context, report)
