"""Clients paying the same loans at once on PostgreSQL: eight with distinct and with repeated
idempotency keys (no payment is applied twice, none is lost, and the books balance), and a
hundred at once whose payments add up to twice the payoff (together they never pay more than
it: the loan's version serialises them, and each is checked against the payoff it sees)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.services import books, borrowers, products, servicing
from fenqi.services.errors import ConflictError, InFlightError, RefusedError
from fenqi.services.servicing import OverpaymentError
from fenqi.store.schema import LoanEventRow
from fenqi.wire import present
from tests.simulated import simulated_context

CLIENTS = 8
LOANS = 3
KEYS_PER_LOAN = 12  # each key is sent by two clients


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_payments_apply_each_key_exactly_once(engine: Engine) -> None:
    context = simulated_context(engine, actor="load")
    products.load_products(context)
    borrower = borrowers.create_borrower(context, "赵六", "13600136000", Money.parse("100000"))
    orders = [
        servicing.Order(
            borrower.id, f"C-{n}", "m", Money.parse("10000"), "cash", 12, date(2026, 1, 15)
        )
        for n in range(LOANS)
    ]
    loans = [present(servicing.checkout(context, order))["id"] for order in orders]
    requests = [(loan, f"key-{loan}-{k}") for loan in loans for k in range(KEYS_PER_LOAN)] * 2

    def send(request: tuple[int, str]) -> str:
        """One client's request, retried while its twin with the same key is in flight (409)."""
        loan, key = request
        while True:
            try:
                return attempt(loan, key)
            except InFlightError:
                time.sleep(0.01)

    def attempt(loan: int, key: str) -> str:
        paid = present(servicing.pay(context, loan, Money.parse("100"), servicing.Source(manual=True),
                             date(2026, 2, 15), idempotency_key=key))  # fmt: skip
        return str(paid["payment_id"])

    with ThreadPoolExecutor(CLIENTS) as clients:
        payment_ids = list(clients.map(send, requests))

    assert len(set(payment_ids)) == LOANS * KEYS_PER_LOAN  # a repeated key got the same payment
    with Session(engine) as session:
        stored = session.scalar(select(func.count()).select_from(LoanEventRow))
    assert stored == LOANS * KEYS_PER_LOAN
    for loan in loans:
        shown = present(servicing.show_loan(context, loan, date(2026, 2, 15)))
        assert Money.parse(shown["outstanding_principal"]) < Money.parse("10000")
        paid = sum(Money.parse(row["paid"]) for row in shown["installments"])
        assert paid + Money.parse(shown["credit_balance"]) == Money.parse("100") * KEYS_PER_LOAN
    assert present(books.trial_balance(context))["balanced"]
    assert present(books.check_books(context))["consistent"]


ATTACKERS = 100


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_hundred_payments_at_once_never_pay_more_than_the_payoff(
    engine: Engine, database_url: str
) -> None:
    setup = simulated_context(engine, actor="setup")
    products.load_products(setup)
    borrower = borrowers.create_borrower(setup, "钱七", "13500135000", Money.parse("100000"))
    order = servicing.Order(borrower.id, "RACE-1", "m", Money.parse("10000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    loan = present(servicing.checkout(setup, order))["id"]
    day = date(2026, 2, 15)
    payoff = Money.parse(present(servicing.quote_payoff(setup, loan, day))["amount"])
    each = Money(-(-2 * payoff // ATTACKERS))  # together: twice what pays the plan off
    # Ten transactions truly at once (the server is shared: its connections are not all ours).
    crowd = create_engine(database_url, pool_size=10, max_overflow=0, pool_timeout=300)
    context = simulated_context(crowd, actor="attacker")
    start = threading.Barrier(ATTACKERS)

    def attack(n: int) -> Money | None:
        """One attacker's payment, sent again while it loses the race (409): taken, or
        refused over the cap (once the payments reach the payoff, the plan is settled)."""
        start.wait()
        while True:
            try:
                servicing.pay(context, loan, each, servicing.Source(manual=True), day,
                              idempotency_key=f"race-{n}")  # fmt: skip
            except ConflictError:
                continue
            except RefusedError as refused:  # over the cap, or paid off already (settled)
                if not isinstance(refused, OverpaymentError) and "settled" not in str(refused):
                    raise
                return None
            return each

    try:
        with ThreadPoolExecutor(ATTACKERS) as clients:
            outcomes = list(clients.map(attack, range(ATTACKERS)))
    finally:
        crowd.dispose()

    taken = sum(outcome for outcome in outcomes if outcome is not None)
    assert None in outcomes  # the cap was reached, and held
    assert 0 < taken <= payoff
    left = Money.parse(present(servicing.quote_payoff(setup, loan, day))["amount"])
    assert taken + left == payoff  # every yuan taken paid down what was owed, none beyond it
    shown = present(servicing.show_loan(setup, loan, day))
    assert shown["credit_balance"] == "0.00"
    with Session(engine) as session:
        stored = session.scalar(select(func.count()).select_from(LoanEventRow))
    assert stored == sum(outcome is not None for outcome in outcomes)
    assert present(books.trial_balance(setup))["balanced"]
    assert present(books.check_books(setup))["consistent"]
