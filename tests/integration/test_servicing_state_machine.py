"""Any sequence of checkouts, payments (backdated too), reversals, refunds and prepayments,
through the real services and database: the ledger stays balanced, every loan's books equal its
replayed state, no receivable goes negative, and each borrower's available limit is her credit
limit less the principal her plans hold — or nothing, when reversing a payment whose principal
was lent again has put her over the limit."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import select
from sqlalchemy.orm import Session

from fenqi.domain.events import PrepayMode
from fenqi.domain.ledger import RECEIVABLES
from fenqi.domain.money import Money
from fenqi.services import books, borrowers, products, servicing
from fenqi.services.errors import RefusedError
from fenqi.store.database import make_engine, upgrade
from fenqi.store.loans import book_balances
from fenqi.store.schema import LoanRow
from fenqi.wire import present
from tests.simulated import simulated_context

LIMIT = Money.parse("30000")
START = date(2026, 1, 10)


@contextmanager
def refused_only_because(*reasons: str) -> Iterator[None]:
    """A refusal is fine when the rules say so (over the limit, nothing owed, …); any other
    refusal, or any other error, fails the run."""
    try:
        yield
    except RefusedError as refused:
        if not any(reason in str(refused) for reason in reasons):
            raise


class Servicing(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.engine = make_engine(f"sqlite:///{Path(self.folder.name) / 'fenqi.sqlite3'}")
        upgrade(self.engine)
        self.context = simulated_context(self.engine, actor="machine")
        self.today = START
        self.loans: list[int] = []
        self.payments: list[str] = []
        self.borrower = 0

    def teardown(self) -> None:
        self.engine.dispose()
        self.folder.cleanup()

    @initialize()
    def open_the_shop(self) -> None:
        products.load_products(self.context)
        made = borrowers.create_borrower(self.context, "王五", "13700137000", LIMIT)
        self.borrower = made.id

    @rule(days=st.integers(0, 40))
    def time_passes(self, days: int) -> None:
        self.today += timedelta(days=days)

    @rule(
        amount=st.integers(100_00, 20_000_00), plan=st.sampled_from(["cash", "mall-3", "mall-12"])
    )
    def checkout(self, amount: int, plan: str) -> None:
        periods = 12 if plan == "cash" else None
        order = servicing.Order(self.borrower, f"O{len(self.loans) + 1}-{amount}", "m",
                                Money(amount), plan, periods, self.today)  # fmt: skip
        with refused_only_because("available limit"):
            self.loans.append(present(servicing.checkout(self.context, order))["id"])

    @precondition(lambda self: self.loans)
    @rule(data=st.data(), amount=st.integers(1, 5_000_00), back=st.integers(0, 20),
          approved=st.booleans())  # fmt: skip
    def pay(self, data: st.DataObject, amount: int, back: int, approved: bool) -> None:
        loan = data.draw(st.sampled_from(self.loans))
        day = max(self.today - timedelta(days=back), self._start(loan))
        with refused_only_because("nothing is owed", "the most that can be taken"):
            source = servicing.Source(manual=True)
            paid = present(servicing.pay(self.context, loan, Money(amount), source, day,
                                         allow_overpayment=approved))  # fmt: skip
            self.payments.append(paid["payment_id"])

    @precondition(lambda self: self.payments)
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        with refused_only_because("already reversed"):
            servicing.reverse(self.context, payment, "mistake", self.today, confirm=True)

    @precondition(lambda self: self.loans)
    @rule(data=st.data(), share=st.integers(1, 100))
    def refund(self, data: st.DataObject, share: int) -> None:
        loan = data.draw(st.sampled_from(self.loans))
        shown = present(servicing.show_loan(self.context, loan, self.today))
        amount = Money(max(Money.parse(shown["principal"]) * share // 100, 1))
        with refused_only_because("left to refund", "cannot be re-priced"):
            servicing.refund(self.context, loan, amount, max(self.today, self._start(loan)))

    @precondition(lambda self: self.loans)
    @rule(data=st.data(), amount=st.one_of(st.none(), st.integers(1, 8_000_00)),
          mode=st.sampled_from(PrepayMode), approved=st.booleans())  # fmt: skip
    def prepay(self, data: st.DataObject, amount: int | None, mode: PrepayMode,
               approved: bool) -> None:  # fmt: skip
        loan = data.draw(st.sampled_from(self.loans))
        money = None if amount is None else Money(amount)
        with refused_only_because("nothing", "repays its principal at the end",
                                  "the most that can be taken"):  # fmt: skip
            paid = present(servicing.prepay(self.context, loan, money, mode=mode,
                                    source=servicing.Source(manual=True), day=self.today,
                                    allow_overpayment=approved))  # fmt: skip
            self.payments.append(paid["payment_id"])

    @precondition(lambda self: self.loans)
    @rule(data=st.data())
    def refund_credit(self, data: st.DataObject) -> None:
        loan = data.draw(st.sampled_from(self.loans))
        day = max(self.today, self._start(loan))
        with refused_only_because("holds a credit balance of 0.00"):
            paid = present(servicing.refund_credit(self.context, loan, None, day))
            assert [payee["channel"] for payee in paid["paid_to"]] == ["manual"]  # as paid in

    def _start(self, loan: int) -> date:
        return date.fromisoformat(
            present(servicing.show_loan(self.context, loan, self.today))["start"]
        )

    @invariant()
    def the_books_balance_and_follow_every_loan(self) -> None:
        assert present(books.trial_balance(self.context))["balanced"]
        check = present(books.check_books(self.context))
        assert check["consistent"], check["differences"]

    @invariant()
    def no_receivable_is_negative_and_the_limit_adds_up(self) -> None:
        with Session(self.engine) as session:
            held = 0
            for loan in session.scalars(select(LoanRow)):
                booked = book_balances(session, loan.id)
                assert all(booked.get(account, 0) >= 0 for account in RECEIVABLES), booked
                held += loan.outstanding_principal
        available = present(borrowers.show_borrower(self.context, self.borrower))["available_limit"]
        assert Money.parse(available) == max(LIMIT - held, 0)


Servicing.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
class TestServicing(Servicing.TestCase):  # type: ignore[name-defined,misc]
    pass
