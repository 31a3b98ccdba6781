"""The service under load and under a database that stops, on a PostgreSQL of the test's own
(``tests/private_postgres.py``), with ``fenqi serve`` in a process of its own, over loopback.

Sixteen clients pay, prepay and reverse on a few loans, sending some idempotency keys twice or
three times at once; the database is stopped under them and started again, and later frozen.
Afterwards: every key moved money exactly once, replays gave the first answer, the books
balance, no answer was a 500 (only the documented 503 while the database was away), the
service never dropped a connection, and its log holds no borrower's data.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.services import books, borrowers, credentials, payouts, products, servicing, withholding
from fenqi.services.policy import Role
from fenqi.store.database import make_engine, upgrade
from fenqi.store.schema import LoanEventRow, PaymentMethodRow, SimAccountRow
from fenqi.wire import present
from tests.e2e.serving import fenqi_serve
from tests.private_postgres import PrivatePostgres, private_postgres
from tests.simulated import simulated_context

TODAY = "2026-02-10"  # payments default to today: after the loans began, before a due date
CLIENTS = 16
LOANS = 4
BALANCE = Money.parse("100000")
NOT_READY = "urn:fenqi:problem:database-not-ready"
OUTAGE_SECONDS = 3.0
SETTLE_SECONDS = 10.0  # after the restart, the pool reconnects on the next request
DEADLINE_SECONDS = 90.0  # no request is retried past this: the test stays bounded
# Under pytest-xdist these run on one worker, one after another: each starts a PostgreSQL of its
# own and sixteen clients, and two at once would measure the machine, not the service.
pytestmark = pytest.mark.xdist_group("private-postgres")


@dataclass
class Shop:
    """The loans and everything the clients need to call the service about them."""

    url: str
    engine: Engine
    agent: str
    admin: str
    loans: list[int]
    methods: dict[int, int]  # each loan's borrower's card
    secrets: list[str]  # names, phones and account numbers that must never reach the log


def open_shop(server: PrivatePostgres) -> Shop:
    engine = make_engine(server.url)
    upgrade(engine)
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    credentials.create_user(context, "agent", "a long password", Role.AGENT)
    credentials.create_user(context, "admin", "a long password", Role.ADMIN)
    agent = str(credentials.create_api_key(context, "agent").api_key)
    admin = str(credentials.create_api_key(context, "admin").api_key)
    loans, methods, secrets = [], {}, []
    for number in range(LOANS):
        name, phone, account = f"韩梅梅{number}", f"1391234{number:04d}", f"62170031{number:011d}"
        who = borrowers.create_borrower(context, name, phone, Money.parse("50000"))
        card = borrowers.bind_method(context, who.id, "bank_card", account,
                                     sim_balance=BALANCE)  # fmt: skip
        order = servicing.Order(who.id, f"LF-{number}", "华为商城", Money.parse("10000"),
                                "cash", 12, date(2026, 1, 15))  # fmt: skip
        loans.append(present(servicing.checkout(context, order))["id"])
        methods[loans[-1]] = card.method.id
        secrets += [name, phone, account]
    return Shop(server.url, engine, agent, admin, loans, methods, secrets)


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivatePostgres]:
    monkeypatch.setenv("FENQI_TODAY", TODAY)
    with private_postgres() as server:
        yield server


# -- the workload ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One request a client sends until it is answered for good, with its idempotency key."""

    kind: str  # pay, prepay, reverse, view
    loan: int
    key: str
    amount: str = "1.00"
    payment_id: str = ""

    def path(self) -> str:
        if self.kind == "reverse":
            return f"/api/payments/{self.payment_id}/reversal"
        return f"/api/loans/{self.loan}" + {"pay": "/payments", "prepay": "/prepayments",
                                             "view": ""}[self.kind]  # fmt: skip

    def body(self) -> dict[str, Any]:
        if self.kind == "reverse":
            return {"reason": "load test reversal"}
        if self.kind == "prepay":
            return {"amount": self.amount, "mode": "reduce-installment"}
        return {"amount": self.amount}


@dataclass
class Answer:
    operation: Operation
    at: float
    status: int  # 0: no HTTP answer (the connection failed)
    body: Any = None
    request_id: str = ""
    retry_after: str | None = None
    replayed: bool = False


@dataclass
class Record:
    """Every answer every client got, in a thread-safe list."""

    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)


def workload(shop: Shop, prefix: str, count: int, reversible: list[str]) -> list[Operation]:
    """``count`` operations spread over the loans: payments, prepayments, bill views and
    reversals of earlier payments (``reversible``), every fourth sent three times at once."""
    operations: list[Operation] = []
    for number in range(count):
        loan = shop.loans[number % len(shop.loans)]
        key = f"{prefix}-{number}"
        if number % 8 == 5 and reversible:
            payment = reversible.pop()
            kind = Operation("reverse", int(payment[1:].split("-")[0]), key, payment_id=payment)
        elif number % 8 == 3:
            kind = Operation("prepay", loan, key, amount="3.00")
        elif number % 8 == 7:
            kind = Operation("view", loan, key)
        else:
            kind = Operation("pay", loan, key, amount=f"1.{number % 90 + 10:02d}")
        copies = 3 if number % 4 == 0 and kind.kind != "view" else 1
        operations += [kind] * copies  # next to each other: different clients take them at once
    return operations


def drive(shop: Shop, base: str, operations: list[Operation], record: Record) -> None:
    """Sixteen clients, each on one keep-alive connection, take operations off a shared queue
    and send each until it is answered for good (a 409 or 503 is sent again after a pause)."""
    work: queue.Queue[Operation] = queue.Queue()
    for operation in operations:
        work.put(operation)
    stop = time.monotonic() + DEADLINE_SECONDS

    def client() -> None:
        with httpx.Client(base_url=base, timeout=30.0) as http:
            while True:
                try:
                    operation = work.get_nowait()
                except queue.Empty:
                    return
                while not settled(http, operation) and time.monotonic() < stop:
                    time.sleep(0.2)

    def settled(http: httpx.Client, operation: Operation) -> bool:
        credential = shop.admin if operation.kind == "reverse" else shop.agent
        headers = {"X-API-Key": credential, "Idempotency-Key": operation.key}
        try:
            if operation.kind == "view":
                answer = http.get(operation.path(), headers=headers)
            else:
                answer = http.post(operation.path(), json=operation.body(), headers=headers)
        except httpx.TransportError:
            record.add(Answer(operation, time.monotonic(), 0))
            return False
        problem = answer.headers.get("content-type", "").endswith("json")
        body = answer.json() if problem else answer.text
        record.add(Answer(operation, time.monotonic(), answer.status_code, body,
                          answer.headers.get("X-Request-ID", ""),
                          answer.headers.get("Retry-After"),
                          answer.headers.get("Idempotent-Replayed") == "true"))  # fmt: skip
        return answer.status_code not in (409, 503)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def acknowledged(record: Record, kind: str) -> dict[str, list[Answer]]:
    """The 2xx answers of each key of ``kind``."""
    found: dict[str, list[Answer]] = defaultdict(list)
    for answer in record.answers:
        if answer.operation.kind == kind and 200 <= answer.status < 300:
            found[answer.operation.key].append(answer)
    return found


def payment_ids(record: Record) -> list[str]:
    """The payments acknowledged so far, oldest key first."""
    return sorted(answers[0].body["payment_id"] for answers in acknowledged(record, "pay").values())


# -- the tests ------------------------------------------------------------------------------------


def test_load_with_repeated_keys_and_a_database_restart_loses_and_doubles_nothing(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    shop = open_shop(postgres)
    record = Record()
    began = time.monotonic()
    log = tmp_path / "serve.log"
    with fenqi_serve(shop.url, log, FENQI_TODAY=TODAY) as base:
        drive(shop, base, workload(shop, "a", 96, []), record)
        outage = workload(shop, "b", 64, payment_ids(record)[:8])
        clients = threading.Thread(target=drive, args=(shop, base, outage, record))
        clients.start()
        time.sleep(0.5)
        stopped = time.monotonic()
        postgres.stop("immediate")
        time.sleep(OUTAGE_SECONDS)
        postgres.start()
        restarted = time.monotonic()
        clients.join()
        drive(shop, base, workload(shop, "c", 64, payment_ids(record)[8:16]), record)
    logged = log.read_text()
    assert time.monotonic() - began < 120

    statuses = Counter(answer.status for answer in record.answers)
    assert set(statuses) <= {200, 201, 409, 503}, statuses  # no 500, no refusal, no lost line
    assert statuses[503] > 0, "the outage was not seen: nothing was tested"
    for answer in record.answers:
        if answer.status in (409, 503):
            assert answer.retry_after, answer.body
        if answer.status == 409:
            assert answer.body["type"].endswith(("in-flight", "conflict")), answer.body
        if answer.status == 503:
            assert answer.body["type"] == NOT_READY, answer.body
            assert stopped <= answer.at <= restarted + SETTLE_SECONDS
            assert sum(answer.request_id in line for line in logged.splitlines()) == 1  # once
    payments, reversals = check_answers(record)
    check_store(shop, payments, reversals)
    assert "Traceback" not in logged
    for secret in shop.secrets:
        assert secret not in logged
    shop.engine.dispose()


def check_answers(record: Record) -> tuple[dict[str, Answer], set[str]]:
    """Every key was answered for good in the end, each replay as the first answer; returns the
    payments (and prepayments) by id, and the ids of the payments reversed."""
    every_key = {answer.operation.key for answer in record.answers}
    settled_keys = {answer.operation.key for answer in record.answers
                    if 200 <= answer.status < 300}  # fmt: skip
    assert every_key == settled_keys  # each was answered for good once the database was back
    money_in = {**acknowledged(record, "pay"), **acknowledged(record, "prepay")}
    reversed_ = acknowledged(record, "reverse")
    for answers in (*money_in.values(), *reversed_.values()):
        assert all(answer.body == answers[0].body for answer in answers)  # a replay is the same
    payments = {answers[0].body["payment_id"]: answers[0] for answers in money_in.values()}
    assert len(payments) == len(money_in)  # no two keys got the same payment
    reversals = {answers[0].body["payment_id"] for answers in reversed_.values()}
    assert len(reversals) == len(reversed_)
    return payments, reversals


def check_store(shop: Shop, payments: dict[str, Answer], reversals: set[str]) -> None:
    """The database holds exactly the payments and reversals acknowledged, each card was
    debited once per payment, and the books balance. A reversal answered as the database went
    away may have left its payout between its phases: the operator's round after an outage
    (the reconciler, then sending again what it found never sent) pays each back once."""
    context = simulated_context(shop.engine, actor="load")
    withholding.reconcile(context, older_than=timedelta(0))
    for payout in payouts.unpaid(context):
        if payout.status == "failed":
            payouts.retry(context, payout.id)
    assert payouts.unpaid(context) == []
    with Session(shop.engine) as session:
        events = session.execute(select(LoanEventRow.loan_id, LoanEventRow.seq,
                                        LoanEventRow.kind)).all()  # fmt: skip
        stored = {f"P{loan}-{seq}" for loan, seq, kind in events
                  if kind in ("payment", "prepayment")}  # fmt: skip
        assert stored == set(payments)  # 0 lost, 0 doubled
        assert sum(kind == "reversal" for _, _, kind in events) == len(reversals)
        for loan in shop.loans:
            method = session.get_one(PaymentMethodRow, shop.methods[loan])
            held = session.scalars(select(SimAccountRow.balance)
                                   .where(SimAccountRow.token_ref == method.token_ref)).one()  # fmt: skip
            taken = sum(Money.parse(answer.body["amount"]) for id_, answer in payments.items()
                        if id_.startswith(f"P{loan}-") and id_ not in reversals)  # fmt: skip
            assert Money(held) == BALANCE - taken
    assert present(books.trial_balance(context))["balanced"]
    assert present(books.check_books(context))["consistent"]


def test_a_frozen_database_is_a_503_in_seconds_and_readyz_answers_within_one(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    shop = open_shop(postgres)
    served = fenqi_serve(shop.url, tmp_path / "serve.log", FENQI_TODAY=TODAY)
    with served as base, httpx.Client(base_url=base) as http:
        agent = {"X-API-Key": shop.agent}
        for loan in shop.loans * 2:  # the pool holds connections that were fine a moment ago
            assert http.get(f"/api/loans/{loan}", headers=agent).status_code == 200
        with postgres.frozen():
            for loan in shop.loans[:3]:
                began = time.monotonic()
                answer = http.get(f"/api/loans/{loan}", headers=agent, timeout=30)
                took = time.monotonic() - began
                assert answer.status_code == 503, answer.text
                assert answer.json()["type"] == NOT_READY
                assert answer.headers["Retry-After"]
                assert took < 5.0, f"a request waited {took:.1f} s on a frozen database"
            for _ in range(3):
                began = time.monotonic()
                ready = http.get("/readyz", timeout=30)
                took = time.monotonic() - began
                assert ready.status_code == 503
                assert took < 1.5, f"/readyz took {took:.1f} s"
            metrics = http.get("/metrics", timeout=30)
            assert metrics.status_code == 200
            assert 'status="503"' in metrics.text
        deadline = time.monotonic() + 20
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready again 20 s after the thaw"
            time.sleep(0.2)
        assert http.get(f"/api/loans/{shop.loans[0]}", headers=agent).status_code == 200
    shop.engine.dispose()


WAITING = 100  # requests held by a frozen database at once: more than the thread pool's 40


def test_healthz_and_metrics_answer_at_once_while_requests_wait_on_a_frozen_database(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """A hundred requests waiting on a frozen database hold every thread of the pool and queue
    behind it: /healthz answers from the event loop, and /metrics leaves out the latest batch
    run it cannot read in time rather than wait."""
    shop = open_shop(postgres)
    served = fenqi_serve(shop.url, tmp_path / "serve.log", FENQI_TODAY=TODAY)
    limits = httpx.Limits(max_connections=WAITING + 10)
    with served as base, httpx.Client(base_url=base, limits=limits, timeout=60) as http:
        agent = {"X-API-Key": shop.agent}
        for loan in shop.loans * 2:
            assert http.get(f"/api/loans/{loan}", headers=agent).status_code == 200
        with postgres.frozen(), ThreadPoolExecutor(WAITING) as clients:
            waiting = [clients.submit(http.get, f"/api/loans/{shop.loans[n % LOANS]}",
                                      headers=agent) for n in range(WAITING)]  # fmt: skip
            time.sleep(1.0)  # every thread of the pool is waiting on the database now
            assert sum(not answer.done() for answer in waiting) > WAITING // 2
            for _ in range(3):
                began = time.monotonic()
                assert http.get("/healthz").status_code == 200
                took = time.monotonic() - began
                assert took < 0.5, f"/healthz took {took:.2f} s"
            began = time.monotonic()
            metrics = http.get("/metrics")
            took = time.monotonic() - began
            assert metrics.status_code == 200
            assert "fenqi_http_requests_total" in metrics.text
            assert took < 1.5, f"/metrics took {took:.2f} s"
            assert sum(not answer.done() for answer in waiting) > 0  # measured while held
            statuses = Counter(answer.result().status_code for answer in waiting)
        assert set(statuses) <= {200, 503}, statuses
    shop.engine.dispose()
