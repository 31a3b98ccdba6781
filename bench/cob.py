"""Close of business at scale on PostgreSQL: seeding a portfolio, closing one business day and a
30-day catch-up with worker processes, and the naive one-loan-at-a-time loop measured in the
same run. Run by hand:

    .venv/bin/python bench/cob.py [--loans 20000] [--workers 2] [--postgres URL]

In a fresh schema (dropped at the end): ``fenqi seed`` makes --loans loans for a fifth as many
borrowers, with two years of history through START. START + 1 is then closed by --workers
processes taking the run's chunks (``close_of_business.work``; each process is opened once
beforehand, as a long-running ``fenqi worker`` is), between ``start_run`` and ``finish_run``;
then 30 more days are caught up, one run per day, the same way.

The baseline closes the next day for a sample of the same loans one at a time, as a first
version would: each loan in its own transaction, loaded through the ORM, replayed, its debit
tried through the channel, and its event, journal entries, postings, receipt, messages, bucket
move and loan row written as ORM objects one by one. It is measured on loans with work that day
(what the batch reads) and on loans drawn from the whole portfolio (what a loop without next
action dates visits). A books check over every loan ends the run.

Targets (the issue): 1,000,000 loans closed in ≤ 15 s and 10,000,000 in ≤ 2 min on this 2-core
machine; at least 50× the naive loop.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from datetime import date, timedelta
from multiprocessing.pool import Pool

from sqlalchemy import or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from fenqi import seeding, wire
from fenqi.channels.gateways import simulated
from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.collection import DebitPlan, debit_due, next_action_date
from fenqi.domain.dunning import Recipient, message, notices
from fenqi.domain.events import Channel, DebitFailed, Event, Payment
from fenqi.domain.ledger import Line, balances, journal
from fenqi.domain.loan import LoanState, bucket
from fenqi.loans.aggregate import Loan
from fenqi.loans.receipts import receipt_of, stored
from fenqi.services import books, products
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context
from fenqi.services.policy import operator
from fenqi.store import schema
from fenqi.store.borrowers import method_of
from fenqi.store.database import make_engine, upgrade
from fenqi.store.loans import event_row, load_loan, now
from fenqi.wire import present
from schemas import fresh_schema  # the bench folder's own

START = date(2026, 6, 1)
DEADLOCK = "40P01"  # PostgreSQL's deadlock_detected
CATCH_UP_DAYS = 30
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_1M_SECONDS, TARGET_10M_SECONDS, TARGET_RATIO = 15, 120, 50


@dataclass(frozen=True)
class Closed:
    """What closing one or more business days did, and how long it took."""

    days: int
    loans: int  # loans with work (the runs' counts)
    rows: int  # rows written
    seconds: float
    deadlocks: int  # chunk transactions lost to a deadlock and done again
    worker_cpu: float  # CPU seconds the worker processes spent taking chunks
    machine_cpu: float | None  # CPU seconds the whole machine was busy (Linux), or None

    def report(self, portfolio: int) -> str:
        per_day = self.seconds / self.days
        return (f"{self.loans:,} loans with work, {self.rows:,} rows, in {self.seconds:.2f} s "
                f"({per_day:.2f} s a day): {portfolio / per_day:,.0f} portfolio loans/s, "
                f"{self.loans / self.seconds:,.0f} loans with work/s, "
                f"{self.rows / self.seconds:,.0f} rows written/s; "
                f"chunks redone after a deadlock: {self.deadlocks}; {self.cpu()}")  # fmt: skip

    def cpu(self) -> str:
        """Where the CPU went, per loan with work: the workers' Python, and the rest of the
        machine (PostgreSQL, mostly) — the two share its cores."""
        python = f"CPU per loan with work: {1000 * self.worker_cpu / self.loans:.2f} ms in workers"
        if self.machine_cpu is None:
            return python
        rest = (self.machine_cpu - self.worker_cpu) / self.loans
        return f"{python}, {1000 * rest:.2f} ms elsewhere (PostgreSQL, mostly)"


# -- the batch, with worker processes -------------------------------------------------------------

_worker: Context | None = None


def open_worker(url: str) -> None:
    """A worker process's own engine, opened once and connected, as a long-running ``fenqi
    worker`` has it (looking for a run that does not exist connects it)."""
    global _worker  # noqa: PLW0603 - one per worker process, set by the pool's initializer
    engine = make_engine(url)
    _worker = Context(engine, SimulatedChannel, operator("bench"), gateways=simulated(engine))
    cob.work(_worker, run_id=0)


def take_chunks(run_id: int) -> tuple[int, float]:
    """Takes the run's chunks until none is left; returns how many times a chunk's transaction
    was chosen as a deadlock victim and the chunk was taken again, and the CPU seconds this
    process spent. (The batch debits cards in its chunk transactions, and a borrower's loans
    fall in several chunks, so two workers can lock two cards in opposite orders; ``fenqi
    worker`` would stop there, with the chunk still queued.)"""
    assert _worker is not None, "open_worker runs first in every worker process"
    victims, began = 0, time.process_time()
    while True:
        try:
            cob.work(_worker, run_id)
        except OperationalError as error:
            if getattr(error.orig, "sqlstate", None) != DEADLOCK:
                raise
            victims += 1
            continue
        return victims, time.process_time() - began


def machine_busy() -> float | None:
    """CPU seconds the machine has been busy since boot, all cores (Linux's /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except OSError:
        return None
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def worker_pid(_: int) -> int:
    """A task that holds its worker a moment, so that every worker gets one."""
    time.sleep(0.05)
    return os.getpid()


def wait_for_workers(pool: Pool, count: int) -> None:
    """Returns once every worker process has started and opened its engine (a pool's worker
    takes tasks only after its initializer), so that no timing counts their start-up."""
    while len(set(pool.map(worker_pid, range(4 * count), chunksize=1))) < count:
        pass


def close_days(context: Context, workers: Pool, count: int, days: list[date]) -> Closed:
    """Closes each of ``days`` in turn: a run, its chunks taken by every worker, its sum."""
    loans = rows = deadlocks = 0
    worker_cpu = 0.0
    began, busy = time.perf_counter(), machine_busy()
    for day in days:
        run_id = cob.start_run(context, day)
        if run_id is None:  # no loan has work on the day: no run
            continue
        taking = [workers.apply_async(take_chunks, (run_id,)) for _ in range(count)]
        for victims, cpu in (taken.get() for taken in taking):
            deadlocks, worker_cpu = deadlocks + victims, worker_cpu + cpu
        counts = wire.document(cob.finish_run(context, run_id))
        assert counts["status"] == "done", counts
        loans, rows = loans + counts["loans"], rows + counts["rows"]
    seconds, busy_now = time.perf_counter() - began, machine_busy()
    machine = None if busy is None or busy_now is None else busy_now - busy
    return Closed(len(days), loans, rows, seconds, deadlocks, worker_cpu, machine)


# -- the naive loop -------------------------------------------------------------------------------


def naive_close(context: Context, loan_ids: list[int], day: date) -> float:
    """Closes ``day`` for each loan on its own; returns the seconds it took."""
    began = time.perf_counter()
    for loan_id in loan_ids:
        with Session(context.engine) as session, session.begin():
            naive_close_loan(context, session, loan_id, day)
    return time.perf_counter() - began


def default_method(session: Session, borrower_id: int) -> schema.PaymentMethodRow | None:
    """The borrower's active default method, as the ORM reads it."""
    method = schema.PaymentMethodRow
    query = select(method).where(method.borrower_id == borrower_id, method.status == "active",
                                 method.is_default)  # fmt: skip
    return session.scalars(query.order_by(method.id)).first()


def naive_close_loan(context: Context, session: Session, loan_id: int, day: date) -> None:
    """One loan's business day through the ORM: what the batch does for a loan, one object at
    a time."""
    record = load_loan(session, loan_id)
    loan, terms = session.get(schema.LoanRow, loan_id), record.terms
    assert loan is not None, f"loan {loan_id} is there"
    method = default_method(session, loan.borrower_id)
    booking = max(day, loan.booked_through)
    books_then = balances(terms, record.state_on(loan.booked_through))
    books_now = balances(terms, record.state_on(booking))
    accrual = journal(books_then, books_now)
    number = naive_post(session, loan_id, 2 * loan.version, booking, accrual, event_seq=None)
    plan = debit_due(record.state_on(day), record.policy, day)
    if plan is not None:
        event = naive_debit(context, session, record, plan, method=method, day=day)
        naive_event(session, record, event, method, booking)
        debited = journal(books_now, balances(terms, record.state_on(booking)))
        naive_post(session, loan_id, number, booking, debited, event_seq=event.seq)
    state = record.state_on(booking)
    naive_messages(session, record, state, method, day)
    if bucket(loan.dpd) != state.bucket:
        session.add(
            schema.BucketMoveRow(
                loan_id=loan_id,
                day=day,
                from_bucket=bucket(loan.dpd),
                to_bucket=state.bucket,
                dpd=state.dpd,
            )
        )
    loan.version += 1
    loan.status, loan.dpd = state.status.value, state.dpd
    loan.outstanding_principal = int(state.outstanding_principal)
    loan.booked_through, loan.closed_through = booking, day
    loan.next_action_date = next_action_date(state, record.policy, day)


def naive_event(session: Session, record: Loan, event: Event,
                method: schema.PaymentMethodRow | None, booking: date) -> None:  # fmt: skip
    """The debit's event, and a receipt if it paid."""
    session.add(schema.LoanEventRow(**event_row(record.id, event, now())))
    record.events.append(event)
    if isinstance(event, Payment):
        paid_with = None if method is None else method_of(method)
        receipt = receipt_of(record, record.state_on(booking), event, paid_with, now())
        row = schema.ReceiptRow(loan_id=record.id, seq=event.seq, receipt_no=receipt.receipt_id,
                                payload=stored(receipt))  # fmt: skip
        session.add(row)


def naive_messages(session: Session, record: Loan, state: LoanState,
                   method: schema.PaymentMethodRow | None, day: date) -> None:  # fmt: skip
    """The day's dunning messages, each an outbox row."""
    borrower = session.get(schema.BorrowerRow, record.borrower_id)
    assert borrower is not None, f"loan {record.id} has a borrower"
    tail = method.masked_account[-4:] if method and method.kind == "bank_card" else None
    for notice in notices(state, record.policy, day):
        words = message(notice, Recipient(borrower.name, record.order_id, tail))
        session.add(
            schema.SmsOutboxRow(
                loan_id=record.id,
                day=day,
                stage=notice.step,
                borrower_id=borrower.id,
                phone=borrower.phone,
                text=words,
                status="pending",
                sent_at=None,
            )
        )


def naive_debit(context: Context, session: Session, record: Loan, plan: DebitPlan, *,
                method: schema.PaymentMethodRow | None, day: date) -> Event:  # fmt: skip
    if method is None:
        reason = "no repayment method bound"
        return DebitFailed(record.next_seq, day, plan.due_date, plan.attempt, reason)
    key = f"naive:{record.id}:{plan.due_date}:{plan.attempt}"
    debit = context.channel(session).debit(method.token_ref, plan.amount, key)
    if debit.declined:
        return DebitFailed(record.next_seq, day, plan.due_date, plan.attempt, debit.declined)
    return Payment(record.next_seq, day, plan.amount, Channel(method.kind))


def naive_post(session: Session, loan_id: int, number: int, day: date,
               lines: tuple[Line, ...], *, event_seq: int | None) -> int:  # fmt: skip
    """An entry and its postings, one ORM object each; returns the next entry's number."""
    if not lines:
        return number
    memo = "close of business" if event_seq is None else "auto-debit"
    session.add(
        schema.JournalEntryRow(
            loan_id=loan_id, entry_no=number, booked_date=day, event_seq=event_seq, memo=memo
        )
    )
    for line_no, line in enumerate(lines, start=1):
        session.add(
            schema.PostingRow(
                loan_id=loan_id,
                entry_no=number,
                line_no=line_no,
                account=line.account,
                debit=int(line.debit),
                credit=int(line.credit),
            )
        )
    return number + 1


# -- the run --------------------------------------------------------------------------------------


def loans_with_work(context: Context, day: date) -> list[int]:
    with Session(context.engine) as session:
        query = select(schema.LoanRow.id).where(
            schema.LoanRow.next_action_date <= day,
            or_(schema.LoanRow.closed_through.is_(None), schema.LoanRow.closed_through < day),
        )
        return list(session.scalars(query.order_by(schema.LoanRow.id)))


def bench(url: str, loans: int, workers: int, sample: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    context = Context(engine, SimulatedChannel, operator("bench"), gateways=simulated(engine))
    products.seed_products(context)

    began = time.perf_counter()
    seeded = seeding.seed(context, loans, max(loans // 5, 1), START, 1)
    took = time.perf_counter() - began
    rows = seeded["events"] + seeded["journal_entries"] + seeded["postings"] + 3 * loans
    print(f"seeding:    {loans:,} loans, {seeded['borrowers']:,} borrowers, {rows:,} loan rows "
          f"in {took:.1f} s = {loans / took:,.0f} loans/s, {rows / took:,.0f} rows/s "
          f"(statuses {seeded['loans_by_status']})")  # fmt: skip

    with multiprocessing.get_context("spawn").Pool(workers, open_worker, (url,)) as pool:
        wait_for_workers(pool, workers)
        first = START + timedelta(days=1)
        one_day = close_days(context, pool, workers, [first])
        print(f"one day:    {first}, {workers} workers: {one_day.report(loans)}")
        through = first + timedelta(days=CATCH_UP_DAYS)
        days = cob.days_to_close(context, through)
        catch_up = close_days(context, pool, workers, days)
        print(f"catch-up:   {days[0]} … {days[-1]} ({len(days)} days): {catch_up.report(loans)}")

    naive_day = through + timedelta(days=1)
    busy = loans_with_work(context, naive_day)
    chosen = random.Random(1).sample(busy, min(sample, len(busy)))
    anyone = random.Random(2).sample(sorted(set(range(1, loans + 1)) - set(chosen)), sample)
    naive_busy = len(chosen) / naive_close(context, chosen, naive_day)
    naive_any = len(anyone) / naive_close(context, anyone, naive_day)
    print(f"naive:      {naive_day}, one loan at a time in 1 process: {naive_busy:,.0f} loans "
          f"with work/s ({len(chosen)} of them), {naive_any:,.0f} loans/s over {len(anyone)} "
          "drawn from the whole portfolio (a loop without next action dates visits every "
          "loan)")  # fmt: skip
    report_ratios(loans, one_day, catch_up, naive_busy, naive_any)

    began = time.perf_counter()
    check = present(books.check_books(context))
    print(f"books:      {'consistent' if check['consistent'] else 'INCONSISTENT'} over "
          f"{check['loans_checked']:,} loans ({time.perf_counter() - began:.1f} s)")  # fmt: skip
    engine.dispose()


def report_ratios(loans: int, one_day: Closed, catch_up: Closed, naive_busy: float,
                  naive_any: float) -> None:  # fmt: skip
    for name, closed in (("one day", one_day), ("catch-up", catch_up)):
        busy = closed.loans / closed.seconds / naive_busy
        portfolio = loans / (closed.seconds / closed.days) / naive_any
        print(f"ratio:      {name}: {busy:,.1f}× the naive loop per loan with work, "
              f"{portfolio:,.0f}× per portfolio loan (target ≥ {TARGET_RATIO}×)")  # fmt: skip
    for name, closed in (("one day", one_day), ("catch-up day", catch_up)):
        per_day = closed.seconds / closed.days
        million, ten = per_day * 1_000_000 / loans, per_day * 10_000_000 / loans
        print(f"projected:  {name}, EXTRAPOLATED linearly from {loans:,} loans measured: "
              f"1,000,000 loans in {million:,.0f} s (target ≤ {TARGET_1M_SECONDS} s), "
              f"10,000,000 in {ten:,.0f} s (target ≤ {TARGET_10M_SECONDS} s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=200, help="loans in each naive sample")
    parser.add_argument("--postgres", default=POSTGRES, help="the server's URL")
    options = parser.parse_args()
    with fresh_schema(options.postgres, "cob") as url:
        print(f"bench/cob.py: {options.loans:,} loans, {options.workers} workers, PostgreSQL "
              "(a schema of its own, dropped at the end)")  # fmt: skip
        bench(url, options.loans, options.workers, options.sample)


if __name__ == "__main__":
    main()
