"""Payments per second through the service layer, each beside the floor of the same writes sent
raw, measured in the same run; and the replay time of a loan with 1,000 events. Run by hand:

    .venv/bin/python bench/servicing.py [--payments 400] [--processes 2] [--postgres URL]
                                        [--no-sqlite]

On PostgreSQL, ``--processes`` processes pay at once, each round loans of its own (no process
ever waits for another's loan). Side by side:

- the raw floor: the writes a payment needs (its event, its journal entry and postings, its
  receipt, its idempotency key, the loan row's version, summary and checkpoint) sent with raw
  psycopg in the fewest round trips a payment allows: one that locks and reads the loan row, the
  events after its checkpoint and the key (pipelined), one that writes and commits (pipelined).
  Its rows are those of a real payment, captured from one the service layer made;
- the naive raw floor: the same statements, each sent and awaited on its own (ten round trips);
- payments by hand through the service layer (``servicing.pay``, the manual channel);
- a gateway debit's floor: the raw floor and one signed loopback HTTP debit to ``fenqi
  gateway-sim`` running in a process of its own; and the floor of the three-phase shape the
  withholding design asks for (the pending request committed, the HTTP debit, then the floor's
  round trips with the request settled in them);
- a gateway payment through the service layer (``servicing.pay`` from a bound bank card, with
  the simulator process as the bank card's gateway: the request committed, the HTTP debit with
  no transaction open, the payment booked); the bench first checks that the gateway simulator
  took the money.

Each figure is payments/s and its ratio to the raw floor. On SQLite (one process) the service
layer is set beside the same writes in one transaction through the ``sqlite3`` module.

Targets (issue 10): the service layer at 65% of the raw floor or better; beyond that, faster
than the naive floor.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import queue
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Json
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from fenqi import settings
from fenqi.channels.gateway_http import HttpGateway, SignedClient, SimulatorControls
from fenqi.channels.gateways import simulated
from fenqi.channels.signing import Signer
from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.events import Channel, Payment
from fenqi.domain.loan import replay
from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.schedule import Method, Terms
from fenqi.ports import Gateways
from fenqi.services import borrowers, products, servicing
from fenqi.services.context import Context
from fenqi.services.policy import operator
from fenqi.services.withholding import order_id
from fenqi.store.database import make_engine, upgrade
from fenqi.store.loans import load_loan
from fenqi.store.schema import (
    AuditLogRow,
    IdempotencyKeyRow,
    JournalEntryRow,
    LoanEventRow,
    LoanRow,
    PostingRow,
    ReceiptRow,
)
from fenqi.wire import present
from schemas import fresh_schema  # the bench folder's own

START = date(2026, 1, 15)
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
AMOUNT = Money(1_000)
LOANS_PER_PROCESS = 20
TARGET = 0.65
NOWHERE = "http://127.0.0.1:9/"  # the notify address: the simulator is told to send none


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


# -- the loans and the rows of one real payment ------------------------------------------------


@dataclass(frozen=True)
class Loan:
    """A loan a worker pays: its id, the next event and entry numbers and version it will
    write, and its borrower's bank card (the gateway's token)."""

    id: int
    seq: int
    entry_no: int
    version: int
    method_id: int
    token: str


@dataclass(frozen=True)
class Template:
    """The rows one payment made through the service layer wrote, for the floors to write
    again: the same kinds, columns and sizes."""

    kind: str
    event: dict[str, Any]
    memo: str
    postings: list[tuple[str, int, int]]
    receipt: dict[str, Any]
    fingerprint: str
    result: dict[str, Any]
    loan: dict[str, Any]
    audited: dict[str, Any]  # the audit log's entry: its actor, action and what it says


BORROWERS = itertools.count()


def make_loans(context: Context, count: int, sim: SimulatorControls | None) -> list[Loan]:
    """``count`` 24-period cash loans, each of a borrower with a bank card bound (funded on the
    gateway simulator when there is one, and on the in-database simulator)."""
    made = []
    for _ in range(count):
        number = next(BORROWERS)
        who = borrowers.create_borrower(context, "压测", f"1300{number:07d}", Money(10**12))
        card = borrowers.bind_method(context, who.id, "bank_card", f"6222020{number:012d}",
                                     sim_balance=Money(10**12))  # fmt: skip
        token = _token(context.engine, card.method.id)
        if sim is not None:
            sim.set_balance(token, Money(10**12))
        order = servicing.Order(who.id, f"B{os.getpid()}-{number}-{time.time_ns()}", "m",
                                Money(1_000_000), "cash", 24, START)  # fmt: skip
        loan = present(servicing.checkout(context, order))["id"]
        made.append(Loan(loan, 1, 2, 1, card.method.id, token))
    return made


def _token(engine: Engine, method_id: int) -> str:
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT token_ref FROM payment_methods WHERE id = :id"), {"id": method_id}
        ).scalar_one()
    return str(found)


def capture(context: Context, loan: Loan) -> Template:
    """Pays ``loan`` once by hand through the service layer and reads back what it wrote."""
    day = START + timedelta(days=1)
    servicing.pay(context, loan.id, AMOUNT, servicing.Source(manual=True), day,
                  idempotency_key="template")  # fmt: skip
    with context.engine.connect() as connection:
        event = connection.execute(
            select(LoanEventRow.kind, LoanEventRow.payload).where(LoanEventRow.loan_id == loan.id)
        ).one()
        entry = connection.execute(
            select(JournalEntryRow.entry_no, JournalEntryRow.memo).where(
                JournalEntryRow.loan_id == loan.id, JournalEntryRow.event_seq == 1
            )
        ).one()
        postings = connection.execute(
            select(PostingRow.account, PostingRow.debit, PostingRow.credit).where(
                PostingRow.loan_id == loan.id, PostingRow.entry_no == entry.entry_no
            )
        ).all()
        receipt = connection.execute(
            select(ReceiptRow.payload).where(ReceiptRow.loan_id == loan.id)
        ).scalar_one()
        key = connection.execute(
            select(IdempotencyKeyRow.fingerprint, IdempotencyKeyRow.result).where(
                IdempotencyKeyRow.key == "template"
            )
        ).one()
        audited = connection.execute(
            select(AuditLogRow.actor, AuditLogRow.action, AuditLogRow.after).where(
                AuditLogRow.target == f"loan:{loan.id}"
            )
        ).one()
        row = connection.execute(
            select(LoanRow.status, LoanRow.outstanding_principal, LoanRow.dpd,
                   LoanRow.booked_through, LoanRow.next_action_date).where(LoanRow.id == loan.id)
        ).one()  # fmt: skip
    with Session(context.engine) as session:
        checkpoint = load_loan(session, loan.id).checkpoint_on(day)
        assert checkpoint is not None, "a loan paid on its second day keeps a checkpoint"
        kept = {"checkpoint": checkpoint.document(), "checkpoint_seq": checkpoint.seq}
    return Template(event.kind, dict(event.payload), entry.memo,
                    [tuple(line) for line in postings], dict(receipt), key.fingerprint,
                    dict(key.result), {**row._asdict(), **kept}, audited._asdict())  # fmt: skip


# -- the raw floors ------------------------------------------------------------------------------


def psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


Statement = tuple[str, tuple[Any, ...]]


def reads(loan: Loan, key: str) -> list[Statement]:
    """The statements that read what a payment decides on: the loan row (locked), the events
    after its checkpoint, and the idempotency key."""
    return [
        ("SELECT version, booked_through, checkpoint_seq, checkpoint FROM loans WHERE id = %s"
         " FOR UPDATE", (loan.id,)),
        ("SELECT kind, seq, effective, payload FROM loan_events WHERE loan_id = %s AND seq >"
         " (SELECT coalesce(checkpoint_seq, 0) FROM loans WHERE id = %s) ORDER BY seq",
         (loan.id, loan.id)),
        ("SELECT fingerprint, result FROM idempotency_keys WHERE scope = %s AND key = %s",
         (f"loan:{loan.id}", key)),
    ]  # fmt: skip


def writes(template: Template, loan: Loan, key: str, day: date) -> list[Statement]:
    """The statements that store one payment, with their parameters."""
    at = datetime.now(UTC)
    payload = {**template.event, "amount": int(AMOUNT)}
    lines = template.postings
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(lines))
    posted = tuple(
        value
        for number, (account, debit, credit) in enumerate(lines, start=1)
        for value in (loan.id, loan.entry_no, number, account, debit, credit)
    )
    receipt = {**template.receipt, "id": f"R{loan.id}-{loan.seq}"}
    kept = template.loan
    return [
        ("INSERT INTO loan_events (loan_id, seq, kind, effective, booked_at, payload)"
         " VALUES (%s, %s, %s, %s, %s, %s)",
         (loan.id, loan.seq, template.kind, day, at, Json(payload))),
        ("INSERT INTO journal_entries (loan_id, entry_no, booked_date, event_seq, memo)"
         " VALUES (%s, %s, %s, %s, %s)", (loan.id, loan.entry_no, day, loan.seq, template.memo)),
        ("INSERT INTO postings (loan_id, entry_no, line_no, account, debit, credit)"
         f" VALUES {values}", posted),
        ("INSERT INTO receipts (loan_id, seq, receipt_no, payload) VALUES (%s, %s, %s, %s)",
         (loan.id, loan.seq, receipt["id"], Json(receipt))),
        ("INSERT INTO idempotency_keys (scope, key, fingerprint, result, created_at)"
         " VALUES (%s, %s, %s, %s, %s)",
         (f"loan:{loan.id}", key, template.fingerprint, Json(template.result), at)),
        ("INSERT INTO audit_log (at, actor, action, target, reason, after)"
         " VALUES (%s, %s, %s, %s, '', %s)",
         (at, template.audited["actor"], template.audited["action"], f"loan:{loan.id}",
          Json({**template.audited["after"], "payment_id": f"P{loan.id}-{loan.seq}",
                "receipt_id": receipt["id"]}))),
        ("UPDATE loans SET version = %s, status = %s, outstanding_principal = %s, dpd = %s,"
         " booked_through = %s, next_action_date = %s, checkpoint = %s, checkpoint_seq = %s"
         " WHERE id = %s AND version = %s",
         (loan.version + 1, kept["status"], kept["outstanding_principal"], kept["dpd"], day,
          kept["next_action_date"], Json(kept["checkpoint"]), loan.seq, loan.id, loan.version)),
    ]  # fmt: skip


def pay_raw(connection: psycopg.Connection[Any], template: Template, loan: Loan, key: str,
            day: date, *, pipelined: bool, also: Statement | None = None) -> None:  # fmt: skip
    """One payment's reads and writes, pipelined (two round trips) or each awaited on its own
    (one round trip a statement, and one for the commit). ``also`` is written with them."""
    statements = writes(template, loan, key, day) + ([also] if also else [])
    if pipelined:
        with connection.pipeline() as pipeline, connection.cursor() as cursor:
            for statement, values in reads(loan, key):
                cursor.execute(statement, values)
            pipeline.sync()  # the reads' answers come back: the first round trip
            for statement, values in statements:
                cursor.execute(statement, values)
            connection.commit()
        return
    with connection.cursor() as cursor:
        for statement, values in reads(loan, key):
            cursor.execute(statement, values)
            cursor.fetchall()
        for statement, values in statements:
            cursor.execute(statement, values)
    connection.commit()


def debit_request(loan: Loan, key: str, day: date) -> Statement:
    at = datetime.now(UTC)
    return (
        "INSERT INTO debit_requests (loan_id, order_id, kind, amount, channel, method_id,"
        " token_ref, idempotency_key, day, status, attempts, created_at, updated_at)"
        " VALUES (%s, %s, 'pay', %s, 'bank_card', %s, %s, %s, %s, 'pending', 0, %s, %s)",
        (loan.id, order_id(loan.id, key), int(AMOUNT), loan.method_id, loan.token, key, day, at,
         at),
    )  # fmt: skip


def settle_request(loan: Loan, key: str) -> Statement:
    return (
        "UPDATE debit_requests SET status = 'succeeded', attempts = 1, updated_at = %s,"
        " settled_at = %s WHERE loan_id = %s AND order_id = %s",
        (datetime.now(UTC), datetime.now(UTC), loan.id, order_id(loan.id, key)),
    )


# -- the workers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a worker needs: the database, its loans, how many payments, the captured rows and
    the gateway simulator's address."""

    url: str
    loans: list[Loan]
    payments: int
    worker: int
    template: Template
    sim_url: str


Work = Callable[[Run], Iterator[Callable[[int], None]]]


@contextmanager
def raw(run: Run, *, pipelined: bool, gateway: bool = False,
        three_phases: bool = False) -> Iterator[Callable[[int], None]]:  # fmt: skip
    """A worker paying with raw psycopg (and the gateway over HTTP)."""
    connection = psycopg.connect(psycopg_url(run.url))
    client = SignedClient(run.sim_url, Signer(settings.gateway_secret(simulating=True)))
    http = HttpGateway(client)
    loans = {loan.id: loan for loan in run.loans}

    def pay(number: int) -> None:
        loan = loans[run.loans[number % len(run.loans)].id]
        key, day = f"w{run.worker}-{number}", START + timedelta(days=2 + number // 50)
        also = None
        if three_phases:
            statement, values = debit_request(loan, key, day)
            with connection.pipeline():
                connection.execute(statement, values)
                connection.commit()
            also = settle_request(loan, key)
        if gateway:
            answer = http.request_debit(order_id(loan.id, key), loan.token, AMOUNT, NOWHERE)
            assert answer.outcome.value == "succeeded", answer
        pay_raw(connection, run.template, loan, key, day, pipelined=pipelined, also=also)
        loans[loan.id] = replace(loan, seq=loan.seq + 1, entry_no=loan.entry_no + 1,
                                 version=loan.version + 1)  # fmt: skip

    try:
        yield pay
    finally:
        client.close()
        connection.close()


@contextmanager
def service(run: Run, *, gateway: bool = False) -> Iterator[Callable[[int], None]]:
    """A worker paying through the service layer: by hand, or from the bank card through the
    gateway simulator."""
    engine = make_engine(run.url)
    client = SignedClient(run.sim_url, Signer(settings.gateway_secret(simulating=True)))
    gateways = Gateways({Channel.BANK_CARD: HttpGateway(client)}, NOWHERE)
    context = Context(engine, SimulatedChannel, operator("bench"), gateways=gateways)

    def pay(number: int) -> None:
        loan = run.loans[number % len(run.loans)]
        source = servicing.Source(method_id=loan.method_id, manual=not gateway)
        servicing.pay(context, loan.id, AMOUNT, source, START + timedelta(days=2 + number // 50),
                      idempotency_key=f"w{run.worker}-{number}")  # fmt: skip

    try:
        yield pay
    finally:
        client.close()
        engine.dispose()


def work(kind: str, run: Run, ready: Any, results: Any) -> None:
    """One process's share: connect and warm up, wait for the others, then pay and time it."""
    chosen = WORKS[kind]
    with chosen(run) as pay:
        pay(0)  # the first payment opens the connections
        ready.wait(timeout=300)
        began = time.perf_counter()
        for number in range(1, run.payments + 1):
            pay(number)
        results.put(time.perf_counter() - began)


WORKS: dict[str, Work] = {
    "floor": lambda run: raw(run, pipelined=True),
    "naive": lambda run: raw(run, pipelined=False),
    "service": service,
    "gateway floor": lambda run: raw(run, pipelined=True, gateway=True),
    "three-phase floor": lambda run: raw(run, pipelined=True, gateway=True, three_phases=True),
    "gateway service": lambda run: service(run, gateway=True),
}


def rate(kind: str, shares: list[list[Loan]], *, url: str, payments: int, template: Template,
         sim_url: str) -> float:  # fmt: skip
    """Payments/s of ``kind`` from one process per share of loans, all started together."""
    ready = multiprocessing.Barrier(len(shares))
    results: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=work,
            args=(kind, Run(url, share, payments, k, template, sim_url), ready, results),
        )
        for k, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    took: list[float] = []
    while len(took) < len(workers):
        try:
            took.append(results.get(timeout=1))
        except queue.Empty:
            if any(worker.exitcode for worker in workers):
                break
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise RuntimeError(f"a {kind} worker failed")
    return payments * len(shares) / max(took)


# -- the gateway simulator -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gateway_sim(folder: Path) -> Iterator[str]:
    """``fenqi gateway-sim`` in a process of its own, sending no notifications (the answer
    comes with the debit)."""
    port = free_port()
    command = [sys.executable, "-m", "fenqi", "gateway-sim", "--port", str(port),
               "--state", str(folder / "gateway-sim.sqlite3")]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    controls = SimulatorControls(SignedClient(url, Signer(settings.gateway_secret(True))))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                controls.switch("*", no_notify=True)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        controls.client.close()
        process.terminate()
        process.wait()


def through_the_gateway(context: Context, loan: Loan, sim: SimulatorControls) -> None:
    """Checks that a payment from a bound bank card goes through the gateway: the simulator
    took the money."""
    before = sim.account(loan.token)["debits"]
    servicing.pay(context, loan.id, AMOUNT, servicing.Source(method_id=loan.method_id),
                  START + timedelta(days=1), idempotency_key="probe")  # fmt: skip
    assert sim.account(loan.token)["debits"] == before + 1, "the gateway did not take it"


# -- PostgreSQL ------------------------------------------------------------------------------------


def postgres(url: str, payments: int, processes: int, folder: Path) -> None:
    with gateway_sim(folder) as sim_url:
        sim = SimulatorControls(SignedClient(sim_url, Signer(settings.gateway_secret(True))))
        engine = make_engine(url)
        upgrade(engine)
        client = SignedClient(sim_url, Signer(settings.gateway_secret(simulating=True)))
        gateways = Gateways({Channel.BANK_CARD: HttpGateway(client)}, NOWHERE)
        context = Context(engine, SimulatedChannel, operator("bench"), gateways=gateways)
        products.load_products(context)
        template = capture(context, make_loans(context, 1, sim)[0])
        probe = make_loans(context, 1, sim)[0]
        through_the_gateway(context, probe, sim)
        figures = {}
        for kind in WORKS:
            loans = make_loans(context, LOANS_PER_PROCESS * processes, sim)
            shares = [loans[k::processes] for k in range(processes)]
            figures[kind] = rate(kind, shares, url=url, payments=payments, template=template,
                                 sim_url=sim_url)  # fmt: skip
        client.close()
        sim.client.close()
        engine.dispose()
    floor = figures["floor"]
    print(f"PostgreSQL, {processes} processes, {payments} payments each:")
    described = {
        "floor": "raw floor: the writes, 2 round trips",
        "naive": "naive raw floor: 10 round trips",
        "service": "service layer, by hand",
        "gateway floor": "gateway floor: raw floor + 1 HTTP",
        "three-phase floor": "three-phase floor: +1 commit",
        "gateway service": "service layer, gateway debit",
    }
    for kind, label in described.items():
        print(f"  {label:<38} {figures[kind]:8,.0f}/s   {figures[kind] / floor:6.0%} of the floor")
    gateway_floor = figures["gateway floor"]
    print(f"  service by hand ÷ naive floor: {figures['service'] / figures['naive']:.0%}; "
          f"target ≥ {TARGET:.0%} of the floor")  # fmt: skip
    ratio = figures["gateway service"] / gateway_floor
    print(f"  service gateway ÷ gateway floor: {ratio:.0%}")


# -- SQLite ----------------------------------------------------------------------------------------


def sqlite(payments: int, folder: Path) -> None:
    """The service layer from one process, and the same writes in one transaction each through
    the ``sqlite3`` module (in process, so round trips cost nothing: one floor)."""
    url = f"sqlite:///{folder / 'bench.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    context = Context(engine, SimulatedChannel, operator("bench"), gateways=simulated(engine))
    products.load_products(context)
    template = capture(context, make_loans(context, 1, None)[0])
    loans = make_loans(context, LOANS_PER_PROCESS, None)
    began = time.perf_counter()
    by_hand = servicing.Source(manual=True)
    for number in range(payments):
        day = START + timedelta(days=2 + number // 50)
        loan = loans[number % len(loans)].id
        servicing.pay(context, loan, AMOUNT, by_hand, day, idempotency_key=f"s{number}")
    service_rate = payments / (time.perf_counter() - began)
    engine.dispose()
    floor_loans = make_loans(context, LOANS_PER_PROCESS, None)
    floor_rate = sqlite_floor(folder / "bench.sqlite3", template, floor_loans, payments)
    print(f"SQLite, 1 process, {payments} payments:")
    print(f"  {'raw floor: the writes, one transaction':<38} {floor_rate:8,.0f}/s")
    print(f"  {'service layer, by hand':<38} {service_rate:8,.0f}/s   "
          f"{service_rate / floor_rate:6.0%} of the floor")  # fmt: skip


def sqlite_floor(path: Path, template: Template, loans: list[Loan], payments: int) -> float:
    database = sqlite3.connect(path, isolation_level=None)
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
        database.execute(f"PRAGMA {pragma}")
    by_id = {loan.id: loan for loan in loans}
    began = time.perf_counter()
    for number in range(payments):
        loan = by_id[loans[number % len(loans)].id]
        key, day = f"q{number}", START + timedelta(days=2 + number // 50)
        database.execute("BEGIN IMMEDIATE")
        for statement, values in reads(loan, key):
            database.execute(_qmarks(statement.replace(" FOR UPDATE", "")), values)
        for statement, values in writes(template, loan, key, day):
            database.execute(_qmarks(statement), tuple(_sqlite(value) for value in values))
        database.execute("COMMIT")
        by_id[loan.id] = replace(loan, seq=loan.seq + 1, entry_no=loan.entry_no + 1,
                                 version=loan.version + 1)  # fmt: skip
    elapsed = time.perf_counter() - began
    database.close()
    return payments / elapsed


def _qmarks(statement: str) -> str:
    return statement.replace("%s", "?")


def _sqlite(value: Any) -> Any:
    if isinstance(value, Json):
        return json.dumps(value.obj)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=400, help="payments per process")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--postgres", default=POSTGRES, help="server URL ('' to skip)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    options = parser.parse_args()
    print(f"replay of a 1,000-event loan: {replay_time():.2f} ms (best of 7; target ≤ 10 ms)")
    with tempfile.TemporaryDirectory() as folder:
        if not options.no_sqlite:
            sqlite(options.payments, Path(folder))
        if options.postgres:
            with fresh_schema(options.postgres, "servicing") as url:
                postgres(url, options.payments, options.processes, Path(folder))


if __name__ == "__main__":
    main()
