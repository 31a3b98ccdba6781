"""Eight clients paying the same loans at once on PostgreSQL, with distinct and with repeated
idempotency keys: no payment is applied twice, none is lost, and the books balance."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.money import Money
from fenqi.services import books, borrowers, products, servicing
from fenqi.services.context import Context
from fenqi.services.errors import InFlightError
from fenqi.store.schema import LoanEventRow

CLIENTS = 8
LOANS = 3
KEYS_PER_LOAN = 12  # each key is sent by two clients


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_payments_apply_each_key_exactly_once(engine: Engine) -> None:
    context = Context(engine, SimulatedChannel, actor="load")
    products.load_products(context)
    borrower = borrowers.create_borrower(context, "赵六", "13600136000", Money.parse("100000"))
    orders = [
        servicing.Order(
            borrower["id"], f"C-{n}", "m", Money.parse("10000"), "cash", 12, date(2026, 1, 15)
        )
        for n in range(LOANS)
    ]
    loans = [servicing.checkout(context, order)["id"] for order in orders]
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
        paid = servicing.pay(context, loan, Money.parse("100"), servicing.Source(manual=True),
                             date(2026, 2, 15), idempotency_key=key)  # fmt: skip
        return str(paid["payment_id"])

    with ThreadPoolExecutor(CLIENTS) as clients:
        payment_ids = list(clients.map(send, requests))

    assert len(set(payment_ids)) == LOANS * KEYS_PER_LOAN  # a repeated key got the same payment
    with Session(engine) as session:
        stored = session.scalar(select(func.count()).select_from(LoanEventRow))
    assert stored == LOANS * KEYS_PER_LOAN
    for loan in loans:
        shown = servicing.show_loan(context, loan, date(2026, 2, 15))
        assert Money.parse(shown["outstanding_principal"]) < Money.parse("10000")
        paid = sum(Money.parse(row["paid"]) for row in shown["installments"])
        assert paid + Money.parse(shown["credit_balance"]) == Money.parse("100") * KEYS_PER_LOAN
    assert books.trial_balance(context)["balanced"]
    assert books.check_books(context)["consistent"]
