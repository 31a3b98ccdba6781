"""The crash windows of a debit, end to end: ``fenqi pay`` from a bound card, and ``fenqi cob``'s
auto-debit, killed (SIGKILL) after the request was committed and while the gateway, slow to
answer, was taking the money; ``fenqi gateway reconcile``, run afterwards as an operator runs
it, asks the gateway and books the payment exactly once, and a rerun of the batch books nothing
more for it. A request committed but never sent is found failed, and nothing moves. A payout
(``fenqi reverse``) killed the same way, after its refund was committed with the reversal and
while the gateway was paying it, is settled by the reconciler: paid back exactly once."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from fenqi.domain.events import Channel
from fenqi.domain.money import Money
from fenqi.domain.withholding import DebitRequest, Kind
from fenqi.services import borrowers, products, servicing, withholding
from fenqi.services import close_of_business as cob
from fenqi.store.schema import DebitRequestRow, LoanEventRow, PaymentMethodRow
from fenqi.wire import present
from tests.e2e.cli import fenqi
from tests.gateway_sim import Sim, gateway_sim
from tests.simulated import simulated_context

DAY = date(2026, 2, 15)  # the plan's first due date


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Sim]]:
    """One gateway simulator per kind of database, started when first wanted. Every test's
    database is fresh, so the batch's merchant order ids (its loan, due date and attempt) come
    again in each: a simulator that kept the other database's order would refuse the same id
    as another debit."""
    with ExitStack() as stack:
        running: dict[str, Sim] = {}

        def for_database(dialect: str) -> Sim:
            if dialect not in running:
                where = tmp_path_factory.mktemp(f"sim-{dialect}")
                running[dialect] = stack.enter_context(gateway_sim(where))
            return running[dialect]

        yield for_database


@pytest.fixture
def sim(sims: Callable[[str], Sim], engine: Engine) -> Sim:
    return sims(engine.dialect.name)


def _plan(engine: Engine, sim: Sim) -> tuple[int, int, str]:
    """A cash plan of 6,000.00 from 2026-01-15, closed through the day before its due date, on
    a card the gateway simulator holds 100,000.00 for: (loan, card, token)."""
    shop = simulated_context(engine, "setup")
    products.load_products(shop)
    who = borrowers.create_borrower(shop, "王小明", "13500135000", Money.parse("50000"))
    card = borrowers.bind_method(shop, who.id, "bank_card", "6222020000009876543")
    order = servicing.Order(who.id, "JD-1", "京东", Money.parse("6000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    loan = int(present(servicing.checkout(shop, order))["id"])
    cob.close(shop, DAY - timedelta(days=1), today=DAY)
    with Session(engine) as session:
        token = session.get(PaymentMethodRow, card.method.id).token_ref
    sim.controls.set_balance(token, Money(100_000_00))
    return loan, int(card.method.id), token


def _environment(sim: Sim) -> dict[str, str]:
    return {"FENQI_GATEWAY_URL": sim.url, "FENQI_SIMULATION": "1", "FENQI_TODAY": DAY.isoformat()}


def _killed_once_asked(command: list[str], engine: Engine, sim: Sim, token: str) -> None:
    """Runs ``fenqi`` with ``command`` and kills it once its debit request is committed and the
    gateway, switched to answer late (after the adapter gives up, so within the window), has
    taken the money."""
    environment = {**os.environ, **_environment(sim)}
    environment.pop("FENQI_GATEWAY_SECRET", None)
    process = subprocess.Popen([sys.executable, "-m", "fenqi", *command], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while _requests(engine) == 0 or sim.controls.account(token)["debits"] == 0:
        assert process.poll() is None, "it ended before the gateway took the money"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def _requests(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(DebitRequestRow)) or 0)


def _payments(engine: Engine, loan: int) -> int:
    with Session(engine) as session:
        query = select(func.count()).where(LoanEventRow.loan_id == loan,
                                           LoanEventRow.kind == "payment")  # fmt: skip
        return int(session.scalar(query) or 0)


def _reconcile(database_url: str, sim: Sim) -> dict[str, int]:
    return fenqi("gateway", "reconcile", "--older-than", "0", "--db", database_url, "--json",
                 env=_environment(sim)).json()  # fmt: skip


@pytest.mark.parametrize("batch", [False, True], ids=["pay", "cob"])
def test_a_debit_killed_between_its_phases_is_booked_by_the_reconciler_once(
        database_url: str, engine: Engine, sim: Sim, batch: bool):  # fmt: skip
    loan, card, token = _plan(engine, sim)
    sim.controls.switch(token, timeout=True, timeout_seconds=5)  # takes it, answers late
    command = (["cob", "--date", DAY.isoformat(), "--db", database_url] if batch else
               ["pay", str(loan), "--amount", "600", "--method", str(card), "--date",
                DAY.isoformat(), "--db", database_url])  # fmt: skip
    _killed_once_asked(command, engine, sim, token)
    assert _payments(engine, loan) == 0

    report = _reconcile(database_url, sim)
    assert (report["examined"], report["succeeded"]) == (1, 1)
    assert _payments(engine, loan) == 1
    assert _reconcile(database_url, sim)["examined"] == 0
    if batch:  # the day closed again: its debit is booked already, and is not sent again
        sim.controls.switch(token)
        again = fenqi("cob", "--date", DAY.isoformat(), "--db", database_url, "--json",
                      env=_environment(sim))  # fmt: skip
        assert again.code == 0, again.err
        assert _payments(engine, loan) == 1
    account = sim.controls.account(token)
    assert account["debits"] == 1
    ledger = fenqi("ledger", "check", "--db", database_url, "--json", env=_environment(sim))
    assert ledger.code == 0, ledger.err


def test_a_request_never_sent_is_found_failed_and_nothing_moves(
        database_url: str, engine: Engine, sim: Sim):  # fmt: skip
    loan, card, token = _plan(engine, sim)
    context = simulated_context(engine)
    key = f"pay:{loan}:{uuid.uuid4().hex}"
    withholding.open_request(context, DebitRequest(
        loan, withholding.order_id(loan, key), Kind.PAY, Money(25_000), Channel.BANK_CARD, card,
        token, key, DAY,
    ))  # fmt: skip
    report = _reconcile(database_url, sim)
    assert (report["examined"], report["failed"]) == (1, 1)
    assert _payments(engine, loan) == 0
    assert sim.controls.account(token)["debits"] == 0


def _refunds(engine: Engine) -> list[str]:
    """The statuses of the refund requests, oldest first."""
    with Session(engine) as session:
        query = select(DebitRequestRow.status).where(DebitRequestRow.kind == Kind.REFUND.value)
        return list(session.scalars(query.order_by(DebitRequestRow.created_at)))


def test_a_payout_killed_between_its_phases_is_settled_by_the_reconciler_once(
        database_url: str, engine: Engine, sim: Sim):  # fmt: skip
    loan, card, token = _plan(engine, sim)
    paid = fenqi("pay", str(loan), "--amount", "600", "--method", str(card), "--date",
                 DAY.isoformat(), "--db", database_url, "--json", env=_environment(sim)).json()  # fmt: skip
    held = sim.controls.account(token)["balance"]
    sim.controls.switch(token, timeout=True, timeout_seconds=5)  # pays it back, answers late
    environment = {**os.environ, **_environment(sim)}
    environment.pop("FENQI_GATEWAY_SECRET", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "fenqi", "reverse", paid["payment_id"], "--reason", "mistake",
         "--yes", "--db", database_url], env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while not _refunds(engine) or sim.controls.account(token)["refunds"] == 0:
        assert process.poll() is None, "it ended before the gateway paid the money back"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert _refunds(engine) == ["pending"]  # the reversal and its refund committed, no answer
    listed = fenqi("gateway", "payouts", "--db", database_url, "--json",
                   env=_environment(sim)).json()  # fmt: skip
    assert [(p["loan_id"], p["amount"], p["status"]) for p in listed] == [
        (loan, "600.00", "pending")
    ]

    sim.controls.switch(token)
    report = _reconcile(database_url, sim)
    assert (report["examined"], report["succeeded"]) == (1, 1)
    assert _refunds(engine) == ["succeeded"]
    assert _reconcile(database_url, sim)["examined"] == 0
    account = sim.controls.account(token)
    assert (account["refunds"], account["balance"]) == (1, held + 600_00)
    assert fenqi("gateway", "payouts", "--db", database_url, "--json",
                 env=_environment(sim)).json() == []  # fmt: skip
    ledger = fenqi("ledger", "check", "--db", database_url, "--json", env=_environment(sim))
    assert ledger.code == 0, ledger.err
