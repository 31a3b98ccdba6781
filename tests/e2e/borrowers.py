"""What the borrower-page tests share: a borrower with a funded card and a cash plan whose bills
have fallen due (dates counted from today, since the pages show today), and the sign-in code the
SMS simulator texted her."""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.clock import today
from fenqi.domain.calendar import add_months
from fenqi.domain.money import Money
from fenqi.services import borrowers, servicing
from fenqi.services.context import Context
from fenqi.store.schema import SimAccountRow, SmsSentRow
from fenqi.wire import present

CARD = "6222020000001234567"
MASKED_CARD = "622202*********4567"


@dataclass(frozen=True)
class Plan:
    borrower_id: int
    method_id: int
    loan_id: int
    order_id: str
    consent: dict[str, Any]  # the offer she consented to at checkout


def open_plan(context: Context, phone: str, order: str, *, due_days_ago: int = 10,
              balance: str = "20000") -> Plan:  # fmt: skip
    """A borrower with a bank card holding ``balance`` and a cash 10,000 / 12 plan whose third
    bill fell due ``due_days_ago`` days ago (the first two before it, all unpaid)."""
    third_due = today() - timedelta(days=due_days_ago)
    who = borrowers.create_borrower(context, "王芳", phone, Money.parse("50000"))
    card = borrowers.bind_method(context, who.id, "bank_card", CARD,
                                 sim_balance=Money.parse(balance))  # fmt: skip
    order_ = servicing.Order(who.id, order, "华为商城", Money.parse("10000"), "cash", 12,
                             add_months(third_due, -3), item="华为 Mate 70")  # fmt: skip
    made = present(servicing.checkout(context, order_))
    return Plan(who.id, card.method.id, made["id"], order, made["consent"])


def pay_on_time(context: Context, plan: Plan, periods: int) -> None:
    """Pays the first ``periods`` bills in full on their due dates, from her card."""
    bills = present(servicing.show_loan(context, plan.loan_id, today()))["installments"]
    for bill in bills[:periods]:
        servicing.pay(context, plan.loan_id, Money.parse(bill["payment"]), servicing.Source(),
                      date.fromisoformat(bill["due_date"]))  # fmt: skip


def sign_in_code(engine: Engine, phone: str) -> str:
    """The code in the last sign-in text to ``phone`` (the SMS simulator's log)."""
    with Session(engine) as session:
        query = select(SmsSentRow.text).where(SmsSentRow.phone == phone).order_by(SmsSentRow.id)
        text = session.scalars(query).all()[-1]
    return "".join(char for char in text if char.isdigit())[:6]


def money_held(engine: Engine) -> int:
    """Fen held on every simulated method: what a payment would take from."""
    with Session(engine) as session:
        return sum(session.scalars(select(SimAccountRow.balance)))
