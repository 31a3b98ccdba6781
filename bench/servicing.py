"""Payments per second through the service layer, on SQLite and on PostgreSQL, and the replay
time of a loan with 1,000 events. Run by hand:

    .venv/bin/python bench/servicing.py [--payments 400] [--processes 2] [--postgres URL]

Each payment is a whole unit of work: load the loan and its events, replay it, book the accrual
and the payment's journal entry, store the event, the receipt and the idempotency key, and bump
the loan's version. The baseline, measured in the same run on the same database, is the bare
floor of a unit of work: one transaction inserting one event row. Payments are spread over
distinct loans (one process never waits for another's loan).

Targets (issue 3): at least 1,000 payments/s on PostgreSQL from 2 processes; replay of 1,000
events in at most 10 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path

from sqlalchemy import Engine, text

from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.events import Channel, Payment
from fenqi.domain.loan import replay
from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.schedule import Method, Terms
from fenqi.services import borrowers, products, servicing
from fenqi.services.context import Context
from fenqi.store.database import make_engine, upgrade

START = date(2026, 1, 15)
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def replay_time(events: int = 1_000, rounds: int = 7) -> float:
    """Milliseconds to replay a 24-period loan with ``events`` payments (best of ``rounds``)."""
    terms = Terms(Money(100_000_00), 24, Method.EQUAL_INSTALLMENT, START, Fraction(12, 100))
    policy = Product(code="cash", name="cash", method=terms.method, periods=(24,))
    history = [
        Payment(k, START + timedelta(days=k * 730 // events), Money(11_500 + k % 7), Channel.MANUAL)
        for k in range(1, events + 1)
    ]
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        replay(terms, policy, history, START + timedelta(days=750))
        best = min(best, time.perf_counter() - began)
    return best * 1000


def prepare(url: str, loans: int) -> list[int]:
    engine = make_engine(url)
    upgrade(engine)
    context = Context(engine, SimulatedChannel, actor="bench")
    products.load_products(context)
    borrower = borrowers.create_borrower(context, "bench", "13000000000", Money(10**12))
    made = []
    for number in range(loans):
        order = servicing.Order(
            borrower["id"], f"B{number}", "m", Money(1_000_000), "cash", 24, START
        )
        made.append(servicing.checkout(context, order)["id"])
    engine.dispose()
    return made


def pay_many(url: str, loans: list[int], payments: int, worker: int) -> float:
    """Pays ``payments`` times round the given loans; returns the seconds it took."""
    engine = make_engine(url)
    context = Context(engine, SimulatedChannel, actor="bench")
    source = servicing.Source(manual=True)
    began = time.perf_counter()
    for number in range(payments):
        loan = loans[number % len(loans)]
        servicing.pay(context, loan, Money(1_000), source, START + timedelta(days=1 + number // 50),
                      idempotency_key=f"w{worker}-{number}")  # fmt: skip
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed


def bare_floor(url: str, payments: int) -> float:
    """Units of work per second that only insert one event row each: the database's floor."""
    engine = make_engine(url)
    began = time.perf_counter()
    for number in range(payments):
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO loan_events (loan_id, seq, kind, effective, booked_at, payload)"
                    " VALUES (999999, :seq, 'bench', :day, :at, '{}')"
                ),
                {"seq": number, "day": START, "at": "2026-01-15T00:00:00+00:00"},
            )
    elapsed = time.perf_counter() - began
    engine.dispose()
    return payments / elapsed


def throughput(url: str, payments: int, processes: int) -> tuple[float, float]:
    loans = prepare(url, 20 * processes)
    shares = [loans[worker::processes] for worker in range(processes)]
    began = time.perf_counter()
    with multiprocessing.Pool(processes) as pool:
        pool.starmap(pay_many, [(url, share, payments, k) for k, share in enumerate(shares)])
    elapsed = time.perf_counter() - began
    return payments * processes / elapsed, bare_floor(url, payments)


def fresh_postgres(url: str) -> tuple[str, Engine]:
    """A new schema on the server, so the bench never touches anything else there."""
    server = make_engine(url)
    schema = f"fenqi_bench_{int(time.time())}"
    with server.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    return f"{url}?options=-csearch_path%3D{schema}", server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=400, help="payments per process")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--postgres", default=POSTGRES, help="server URL ('' to skip)")
    options = parser.parse_args()
    print(f"replay of a 1,000-event loan: {replay_time():.2f} ms (best of 7; target ≤ 10 ms)")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        rate, floor = throughput(url, options.payments, 1)
        print(f"SQLite, 1 process:     {rate:8,.0f} payments/s   bare one-row floor "
              f"{floor:8,.0f}/s   ratio {rate / floor:.2f}")  # fmt: skip
    if options.postgres:
        url, server = fresh_postgres(options.postgres)
        schema = url.rsplit("%3D", 1)[1]
        try:
            rate, floor = throughput(url, options.payments, options.processes)
            print(f"PostgreSQL, {options.processes} processes: {rate:8,.0f} payments/s   "
                  f"bare one-row floor {floor:8,.0f}/s (1 process)   target ≥ 1,000/s")  # fmt: skip
        finally:
            with server.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            server.dispose()


if __name__ == "__main__":
    main()
