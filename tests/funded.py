"""A borrower with a funded card and a plan: what the money-rule and payout tests start from."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.services import borrowers, servicing
from fenqi.services.context import Context
from fenqi.store.schema import PaymentMethodRow, SimAccountRow
from fenqi.wire import present

START = date(2026, 1, 15)

# Paying ahead is not allowed by this product, so what a payment brings beyond the bill now
# due waits as a credit balance, to be paid back (by the method or methods that paid it in).
NO_PAYING_AHEAD = """
[[product]]
code = "no-advance"
name = "Pays the current bill only"
method = "equal-installment"
periods = [12]
annual_rate = "12%"
allocation = ["past-due:penalty", "past-due:fee", "past-due:interest", "past-due:principal",
              "due:penalty", "due:fee", "due:interest", "due:principal"]
"""


def funded_plan(context: Context, amount: str, product: str, periods: int) -> tuple[int, int]:
    """A borrower with a card holding 100,000.00 and a plan from 2026-01-15: (loan, card)."""
    who = borrowers.create_borrower(context, "张三", "13800138000", Money.parse("50000"))
    card = borrowers.bind_method(context, who.id, "bank_card", "6222020000001234567",
                                 sim_balance=Money.parse("100000"))  # fmt: skip
    order = servicing.Order(who.id, "JD-1", "华为商城", Money.parse(amount), product, periods,
                            START)  # fmt: skip
    return present(servicing.checkout(context, order))["id"], card.method.id


def balance(engine: Engine, method: int) -> Money:
    """What the simulator holds for a bound method."""
    with Session(engine) as session:
        row = session.get(PaymentMethodRow, method)
        assert row is not None
        query = select(SimAccountRow.balance).where(SimAccountRow.token_ref == row.token_ref)
        return Money(session.scalar(query) or 0)
