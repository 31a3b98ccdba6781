"""Close of business: the nightly batch (docs/design.md#the-business-day-batch,
docs/domain.md#close-of-business).

A run closes one business day. Only loans whose next action date has come, and whose watermark
is behind the day, are read. They are split into chunks by loan-id range; each chunk is a job
that one worker takes (``SKIP LOCKED`` on PostgreSQL; one at a time on SQLite) and does in
three phases, as every debit is (``fenqi.services.withholding``): a transaction leases the job
and commits the day's auto-debit requests (the loans the domain finds owing one); the gateway
is asked for each with no transaction open and no loan locked; a last transaction loads the
chunk's loans and events in a few queries, lets the domain decide each loan's day (write-off,
the auto-debit's outcome or its retry, late fee, penalty, dunning messages), and writes the
events, journal entries, receipts, outbox messages, bucket moves, watermarks and next action
dates with bulk statements, marking the job done in the same commit. A worker that dies loses
only its open transaction: the job goes back to the queue (its requests kept, under order ids
made of the loan, the installment and the attempt, so the gateway moves no money twice) and the
rerun does exactly what the lost one would have. A day already closed for a loan is never closed
again.

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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import partial
from operator import methodcaller
from typing import NamedTuple, TypeVar

from fenqi import clock
from fenqi.domain.collection import debit_due, write_off_due
from fenqi.domain.dunning import Recipient, message, notices
from fenqi.domain.errors import InvariantError
from fenqi.domain.events import DebitFailed, Event, Payment, WriteOff
from fenqi.domain.loan import LoanState, LoanStatus, bucket
from fenqi.domain.withholding import SETTLED, DebitRequest, Kind, Status
from fenqi.loans.aggregate import Loan
from fenqi.loans.booking import Booking, book
from fenqi.loans.ports import Batch, Borrower, JobRecord, UnitOfWork
from fenqi.ports import GatewayAnswer
from fenqi.services import withholding
from fenqi.services.context import Context, Document, permitted, transact
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import Permission
from fenqi.services.views import Aging, CobClosed, CobRun, CobRunReport, NothingToClose

CHUNK_SIZE = 500
MAX_ATTEMPTS = 3  # tries that raise, since a chunk was queued, before it fails for good
WAIT_SECONDS = 0.3  # between looks at a run whose last chunks other workers hold
# How long a chunk's gateway calls may run before another worker may take the chunk up (its
# worker presumed dead): a chunk of slow answers, each within the HTTP adapter's timeout.
LEASE = timedelta(minutes=10)
NO_METHOD = "no repayment method bound"
T = TypeVar("T")
ERROR_LENGTH = 300  # characters of a failure kept with its chunk and run
_BUCKET_ORDER = {f"M{n}": n for n in range(8)}


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
          progress: Callable[[Document], None] | None = None) -> CobClosed:  # fmt: skip
    """Closes business day ``day`` in this process (other workers may help), after catching up
    the days before it on which loans are behind (``days_to_close``): the day's run, or nothing
    to close, with what was closed before it."""
    *before, last = close_through(
        context, day, today=today, chunk_size=chunk_size, take=take, progress=progress
    )
    return CobClosed(last, tuple(before))


def close_through(
    context: Context,
    through: date,
    *,
    today: date | None = None,
    chunk_size: int = CHUNK_SIZE,
    take: Take | None = None,
    progress: Callable[[Document], None] | None = None,
) -> list[CobRun | NothingToClose]:
    """Closes ``through``, after each earlier day on which loans are behind, in order: from the
    first of ``days_to_close(through)``, then each next day on which a loan has work not closed
    yet (the days between, when no loan has any, are passed over), a run each (``take`` does
    its chunks: by default this process, with ``progress`` told of each). It stops at a day
    whose run failed: the days after it would find that day's loans behind. Admins only."""
    permitted(context, Permission.ADMINISTER)
    day = first = days_to_close(context, through, today=today)[0]
    closed: list[CobRun | NothingToClose] = []
    while True:
        caught_up_from = first if day == through and first < through else None
        run_id = start_run(context, day, chunk_size, today=today, caught_up_from=caught_up_from)
        if run_id is None:
            closed.append(NothingToClose(day, caught_up_from))
        else:
            if take is None:
                work(context, run_id, progress, today=today)
            else:
                take(run_id, day)
            closed.append(_settle(context, run_id, today))
        last = closed[-1]
        if day == through or (isinstance(last, CobRun) and last.failed):
            return closed
        behind = _in_batch(context, lambda batch: batch.first_behind(through))
        day = through if behind is None else max(behind, day + timedelta(days=1))


def days_to_close(context: Context, through: date, *, today: date | None = None) -> list[date]:
    """The business days closing ``through`` takes, oldest first: the days from the first on
    which a loan is behind, then ``through`` itself. A loan is behind when it is open (it has a
    next action date) and its first day of work not closed yet — its next action date, or the
    day after its watermark ``closed_through`` if that is later — comes before ``through``:
    its next action date is before ``through`` and its watermark before the day before.
    Refuses a day after ``today`` (default: the clock's) or before any loan was opened."""
    _refuse_future(through, today)

    def first(batch: Batch) -> date | None:
        start = batch.first_behind(through) if through > date.min else None
        if start is None:
            opened = batch.first_opened_if_idle(through)
            if opened is not None and through < opened:
                raise BusinessDayError(
                    f"business day {through} is before the first loan was opened ({opened}); "
                    f"nothing was open to close: give a day from {opened} on"
                )
        return start

    start = _in_batch(context, first)
    if start is None:
        return [through]
    return [start + timedelta(days=k) for k in range((through - start).days + 1)]


def _in_batch(context: Context, work: Callable[[Batch], T]) -> T:
    """``work`` on the batch's store, in one unit of work."""
    return transact(context, lambda unit: work(unit.batch))


def _refuse_future(day: date, today: date | None) -> None:
    today = clock.today() if today is None else today
    if day > today:
        raise BusinessDayError(
            f"business day {day} has not come yet (today is {today}, Beijing time); "
            f"give a day up to {today}"
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
    or its chunks failed — is taken up again instead, its failed chunks queued anew. The audit
    log says who started or took up which run."""
    who = permitted(context, Permission.ADMINISTER)
    _refuse_future(day, today)

    def plan(unit: UnitOfWork) -> int | None:
        taken_up = unit.batch.take_up(day, caught_up_from)
        run_id = taken_up
        if run_id is None:
            run_id = unit.batch.new_run(day, chunk_size, caught_up_from)
        if run_id is not None:
            since = None if caught_up_from is None else caught_up_from.isoformat()
            unit.audit(who.name, "cob.run", f"cob:{run_id}", "",
                       after={"business_date": day.isoformat(), "taken_up": taken_up is not None,
                              "caught_up_from": since})  # fmt: skip
        return run_id

    return transact(context, plan)


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
    at once. Admins only."""
    permitted(context, Permission.ADMINISTER)
    today = clock.today() if today is None else today
    if run_id is not None:
        _refuse_future_run(context, run_id, today)
    done, failed = 0, []
    while True:
        taken: list[tuple[int, int]] = []
        try:
            counts = _one_job(context, run_id=run_id, today=today, taken=taken)
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
    day = _in_batch(context, lambda batch: batch.business_date(run_id))
    if day is not None:
        _refuse_future(day, today)


def _chunk_failed(context: Context, run_id: int, chunk_no: int, error: Exception) -> str | None:
    """Records a chunk's failed try, queueing it again or, at the last one, failing it for good
    (then says so, and settles the run if that was its last chunk). A broken invariant fails it
    at once: the same chunk would break it again. Only a chunk still queued is touched: another
    worker may have taken it and done it meanwhile."""
    said = failure(error)
    tries = 1 if isinstance(error, InvariantError) else MAX_ATTEMPTS

    def record(batch: Batch) -> str | None:
        status = batch.job_failed(run_id, chunk_no, said, worker_name(), tries)
        if status != "failed":
            return None
        batch.settle_run(run_id, _outcome)
        return f"run {run_id} chunk {chunk_no} failed {_times(tries)}: {said}"

    return _in_batch(context, record)


def _times(tries: int) -> str:
    """How often a chunk failed for good: once (a broken invariant), or every try."""
    return "once, an invariant broken" if tries == 1 else f"{tries} times"


def failure(error: BaseException) -> str:
    """What a failure says: the exception's class and the first line of its message — for a
    database error, the driver's — and never the statement or its parameters, which SQLAlchemy
    puts on later lines."""
    orig = getattr(error, "orig", None)  # a database error: the driver's own
    cause = orig if isinstance(orig, BaseException) else error
    lines = str(cause).strip().splitlines()
    said = f"{type(cause).__name__}: {lines[0].strip()}" if lines else type(cause).__name__
    return said[:ERROR_LENGTH]


def _settle(context: Context, run_id: int, today: date | None) -> CobRun:
    """The run once every chunk is done or failed for good: chunks that other workers still
    hold are waited for, and those they leave (a worker killed mid-chunk) are taken."""
    while (run := finish_run(context, run_id)).record.status == "running":
        time.sleep(WAIT_SECONDS)
        work(context, run_id, today=today)
    return run


def finish_run(context: Context, run_id: int) -> CobRun:
    """The run as it stands, settled first if every chunk is (``settle_run``: the worker that
    settled the last chunk has done so already, unless the run was left from before)."""

    def finish(batch: Batch) -> CobRun:
        run_row = batch.settle_run(run_id, _outcome)
        return CobRun(run_row, _settled(batch.chunk_figures([run_id])[run_id]))

    return _in_batch(context, finish)


def _outcome(jobs: list[JobRecord], figures: dict[str, int]) -> tuple[str, str | None, Document]:
    """A run whose chunks are all settled: done, or failed with the error of its first chunk
    that failed for good; and what its chunks did, added up."""
    tally = Tally()
    for job in jobs:
        tally.add(job.counts or {})
    failed = [job for job in jobs if job.status == "failed"]
    error = _run_error(failed, len(jobs)) if failed else None
    return ("failed" if failed else "done"), error, {**tally.document(), **_settled(figures)}


def _settled(figures: dict[str, int]) -> dict[str, int]:
    return {name: figures[name] for name in ("chunks", "chunks_done", "chunks_failed")}


def _run_error(failed: list[JobRecord], chunks: int) -> str:
    first = failed[0]
    return (f"{len(failed)} of {chunks} chunks failed; chunk {first.chunk_no} after "
            f"{first.attempts} attempts: {first.error}")  # fmt: skip


# -- a chunk --------------------------------------------------------------------------------------


_Asked = tuple[JobRecord, list[DebitRequest]]  # a chunk leased, and its requests committed


def _one_job(context: Context, *, run_id: int | None, today: date,
             taken: list[tuple[int, int]]) -> Document | None:  # fmt: skip
    """Takes the next queued chunk and closes it in its three phases; ``taken`` is told which
    before any of its work, so that a failure can be recorded against it. None when no chunk
    is left. A chunk another worker took up while this one's gateway calls ran (its lease out)
    is left to it, and the next one taken."""
    while True:
        asked = _in_batch(context, partial(_request_debits, run_id=run_id, today=today,
                                           taken=taken))  # fmt: skip
        if asked is None:
            return None
        job, requests = asked
        answers = {request.order_id: withholding.ask(context, request)
                   for request in requests if request.status not in SETTLED}  # fmt: skip
        _in_batch(context, methodcaller("release", job))
        counts = _in_batch(context, partial(_book_job, job=job, answers=answers))
        if counts is not None:
            return counts


def _request_debits(batch: Batch, *, run_id: int | None, today: date,
                    taken: list[tuple[int, int]]) -> _Asked | None:  # fmt: skip
    """Phase 1: leases the next queued chunk and commits its auto-debit requests: one for each
    loan whose day owes a debit (``_debit_wanted``), as they stand if recorded already."""
    job = batch.take_job(run_id, today, worker_name(), LEASE)
    if job is None:
        return None
    taken.append((job.run_id, job.chunk_no))
    day = job.business_date
    loans = batch.chunk(day, job.first_loan_id, job.last_loan_id)
    people = batch.borrowers({loan.borrower_id for loan in loans})
    wanted = [_debit_wanted(loan, people.get(loan.borrower_id), day) for loan in loans]
    return job, batch.add_requests([request for request in wanted if request is not None])


def _debit_wanted(loan: Loan, person: Borrower | None, day: date) -> DebitRequest | None:
    """The auto-debit of the loan's day from its borrower's default method, if it owes one and
    is not written off that day. Its key names the loan, the installment and the attempt, so a
    rerun never debits twice."""
    method = None if person is None else person.default_method
    before = loan.state_on(day)
    if method is None or write_off_due(before, loan.policy, loan.next_seq) is not None:
        return None
    plan = debit_due(before, loan.policy, day)
    if plan is None:
        return None
    key = f"cob:{loan.id}:{plan.due_date.isoformat()}:{plan.attempt}"
    return DebitRequest(loan.id, withholding.order_id(loan.id, key), Kind.COB, plan.amount,
                        method.channel, method.id, method.token_ref, key, day,
                        due_date=plan.due_date, debit_attempt=plan.attempt)  # fmt: skip


def _book_job(batch: Batch, *, job: JobRecord,
              answers: dict[str, GatewayAnswer]) -> Document | None:  # fmt: skip
    """Phase 3: closes the chunk, the gateway's answers booked, in this transaction; None when
    another worker holds the chunk or did it meanwhile."""
    if not batch.hold(job):
        return None
    counts = _close_chunk(
        batch, job.business_date, job.first_loan_id, job.last_loan_id, answers=answers
    )
    batch.job_done(job, counts, worker_name())
    batch.settle_run(job.run_id, _outcome)
    return counts


def _close_chunk(batch: Batch, day: date, first: int, last: int, *,
                 answers: dict[str, GatewayAnswer]) -> Document:  # fmt: skip
    requests: dict[int, list[DebitRequest]] = {}
    for request in batch.requests(day, first, last):  # locked before the loans, as every writer
        answer = answers.get(request.order_id)
        answered = request if answer is None else request.answered(
            answer.outcome, answer.reference, answer.reason
        )  # fmt: skip
        requests.setdefault(request.loan_id, []).append(answered)
    loans = batch.chunk(day, first, last)
    people = batch.borrowers({loan.borrower_id for loan in loans})
    chunk = _Chunk(day, requests)
    for loan in loans:
        chunk.close_loan(loan, people.get(loan.borrower_id))
    batch.save_requests(chunk.answered)
    chunk.tally.rows = batch.save(chunk.booked, chunk.outbox, chunk.moves)
    return chunk.tally.document()


@dataclass
class _Chunk:
    """One chunk's business day: its loans are closed one by one, their bookings and notices
    gathered, so that each table gets one bulk statement. ``requests`` are its loans' auto-debit
    requests of the day, with the gateway's answers applied."""

    day: date
    requests: dict[int, list[DebitRequest]]
    tally: Tally = field(default_factory=Tally)
    booked: list[tuple[Loan, Booking]] = field(default_factory=list)
    outbox: list[Document] = field(default_factory=list)
    moves: list[Document] = field(default_factory=list)
    answered: list[DebitRequest] = field(default_factory=list)

    def close_loan(self, loan: Loan, person: Borrower | None) -> None:
        """One loan's business day: its auto-debit's outcome if one was asked for, else its
        write-off once its DPD has reached the product's write-off DPD, else the debit it is
        owed with no method to take it from; its books brought to the day, its messages, its
        bucket, and its next action date."""
        day = self.day
        self.tally.loans += 1
        method = None if person is None else person.default_method
        added: list[Event] = []
        asked = self.requests.get(loan.id, [])
        if asked:
            added += self.outcomes(loan, asked)
        else:
            before = loan.state_on(day)
            if (written_off := write_off_due(before, loan.policy, loan.next_seq)) is not None:
                added.append(written_off)
                self.tally.write_offs += 1
            elif method is None and (plan := debit_due(before, loan.policy, day)) is not None:
                self.count(plan.amount, Status.FAILED)
                added.append(DebitFailed(loan.next_seq, day, plan.due_date, plan.attempt,
                                         NO_METHOD))  # fmt: skip
        memo = "write-off" if added and isinstance(added[-1], WriteOff) else "auto-debit"
        booking = book(loan, added, day, memo=memo, accrual=f"close of business {day.isoformat()}",
                       issued=clock.stamp(), paid_with=method, closing=True)  # fmt: skip
        self.booked.append((loan, booking))
        self.messages(loan, booking.state, person)
        self.bucket(loan, booking.state)

    def outcomes(self, loan: Loan, asked: list[DebitRequest]) -> list[Event]:
        """The events the gateway's answers book: a payment for money taken, a failed debit
        for a decline; nothing yet for a debit not answered (a notification or the reconciler
        books it), nor for one booked already (by a notification that came first)."""
        events: list[Event] = []
        for request in asked:
            self.count(request.amount, request.status)
            if not request.to_book():
                self.answered.append(request)
                continue
            seq = loan.next_seq + len(events)
            if request.status is Status.SUCCEEDED:
                events.append(Payment(seq, self.day, request.amount, request.channel))
            else:
                events.append(DebitFailed(seq, self.day, request.due_date or self.day,
                                          request.debit_attempt or 1,
                                          request.reason or "declined"))  # fmt: skip
            self.answered.append(replace(request, booked=request.status, booked_seq=seq))
        return events

    def count(self, amount: int, status: Status) -> None:
        tally = self.tally
        tally.debits_tried += 1
        if status is Status.SUCCEEDED:
            tally.debits_succeeded += 1
            tally.debited += amount
        elif status is Status.FAILED:
            tally.debits_failed += 1
            tally.failed_amount += amount

    def messages(self, loan: Loan, state: LoanState, person: Borrower | None) -> None:
        if person is None:
            return
        method = person.default_method
        tail = None if method is None or method.kind != "bank_card" else method.masked_account[-4:]
        recipient = Recipient(person.name, loan.order_id, tail)
        for notice in notices(state, loan.policy, self.day):
            self.outbox.append({
                "loan_id": loan.id, "day": self.day, "stage": notice.step,
                "borrower_id": person.id, "phone": person.phone,
                "text": message(notice, recipient), "status": "pending", "sent_at": None,
            })  # fmt: skip
            self.tally.sms_queued += 1

    def bucket(self, loan: Loan, after: LoanState) -> None:
        """The loan's move between buckets, from where its last saved DPD had it."""
        was, now_in = bucket(loan.dpd), after.bucket
        if was == now_in:
            return
        self.moves.append({"loan_id": loan.id, "day": self.day, "from_bucket": was,
                           "to_bucket": now_in, "dpd": after.dpd})  # fmt: skip
        if _BUCKET_ORDER[now_in] > _BUCKET_ORDER[was]:
            self.tally.newly_overdue[now_in] += 1


# -- reading runs and the portfolio ---------------------------------------------------------------


def runs(context: Context, limit: int = 20) -> list[CobRun]:
    """The latest runs, newest first."""
    permitted(context, Permission.READ)

    def listing(batch: Batch) -> list[CobRun]:
        rows = batch.runs(limit)
        figures = batch.chunk_figures([row.id for row in rows])
        return [CobRun(row, _settled(figures[row.id])) for row in rows]

    return _in_batch(context, listing)


def run_report(context: Context, run_id: int) -> CobRunReport:
    permitted(context, Permission.READ)

    def report(batch: Batch) -> CobRunReport:
        row = batch.run(run_id)
        if row is None:
            raise NotFoundError(f"no close-of-business run {run_id}")
        figures = _settled(batch.chunk_figures([run_id])[run_id])
        return CobRunReport(CobRun(row, figures), tuple(batch.jobs(run_id)))

    return _in_batch(context, report)


def aging(context: Context, day: date) -> Aging:
    """Loans and their outstanding principal by delinquency bucket on ``day``: a loan the
    batch has closed through ``day`` (or not yet) as its row stands, one it has closed past
    ``day`` replayed to ``day``. So a past day's report is those loans as they were that day
    (never a bucket a loan reached later), and closing later days does not change it; a
    correction dated back to it (a reversal, a backdated payment) does, as it does the loan."""
    permitted(context, Permission.READ)

    def report(batch: Batch) -> Aging:
        rows, unclosed = batch.aging(day)
        for loan in batch.loans_closed_past(day):
            state = loan.state_on(day)
            rows.append((state.dpd, state.outstanding_principal, state.status.value))
        counts: Counter[str] = Counter()
        principal: Counter[str] = Counter()
        for dpd, outstanding, status in rows:
            if status in (LoanStatus.SETTLED.value, LoanStatus.CANCELLED.value):
                continue
            name = "written_off" if status == LoanStatus.WRITTEN_OFF.value else bucket(dpd)
            counts[name] += 1
            principal[name] += outstanding
        return Aging(day, counts, principal, unclosed)

    return _in_batch(context, report)
