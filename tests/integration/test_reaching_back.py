"""A correction that reaches back, on SQLite and PostgreSQL: the April payoff of a settled plan
reversed in December. A replay never invents a write-off in the past: the loan is overdue as of
today, with its DPD and penalty, once the reversal is confirmed; the write-off is the batch's,
dated the day it runs and finds the DPD at or past the product's write-off DPD."""

from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.domain.events import PrepayMode
from fenqi.domain.money import Money
from fenqi.services import books, borrowers, products, servicing
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context, Document
from fenqi.services.errors import ConfirmationNeededError
from fenqi.store.schema import JournalEntryRow, LoanEventRow
from fenqi.wire import document, present
from tests.simulated import simulated_context

DECEMBER = date(2026, 12, 10)


@pytest.fixture
def shop(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("FENQI_TODAY", "2026-12-31")  # the batch closes no day that has not come
    context = simulated_context(engine, actor="admin")
    products.load_products(context)
    return context


def settled_in_april(shop: Context) -> tuple[int, str, int]:
    """10,000.00 over 12 months at 12%: three installments paid, then paid off on 30 April,
    by card (the loan, the payoff, the card)."""
    who = borrowers.create_borrower(shop, "赵敏", "13700137000", Money.parse("50000"))
    card = borrowers.bind_method(shop, who.id, "bank_card", "6222020000004444555",
                                 sim_balance=Money.parse("20000"))  # fmt: skip
    order = servicing.Order(who.id, "JD-77", "京东", Money.parse("10000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    loan = int(present(servicing.checkout(shop, order))["id"])
    for month in (2, 3, 4):
        servicing.pay(shop, loan, Money.parse("888.49"), servicing.Source(), date(2026, month, 15))
    payoff = present(servicing.prepay(shop, loan, None, mode=PrepayMode.REDUCE_INSTALLMENT,
                              source=servicing.Source(), day=date(2026, 4, 30)))  # fmt: skip
    assert payoff["loan"]["status"] == "settled"
    return loan, str(payoff["payment_id"]), int(card.method.id)


def kinds(engine: Engine, loan: int) -> list[tuple[str, date]]:
    with Session(engine) as session:
        query = select(LoanEventRow.kind, LoanEventRow.effective).where(
            LoanEventRow.loan_id == loan
        )
        return [(kind, day) for kind, day in session.execute(query.order_by(LoanEventRow.seq))]


def reverse_in(shop: Context, payment: str, day: date, *, confirm: bool) -> Document:
    return present(servicing.reverse(shop, payment, "the bank recalled it", day, confirm=confirm,
                             today=day))  # fmt: skip


def test_reversing_an_april_payoff_in_december_is_confirmed_then_written_off_by_the_batch(
    shop: Context, engine: Engine
) -> None:
    loan, payoff, card = settled_in_april(shop)
    before = (kinds(engine, loan), present(books.trial_balance(shop)))
    with pytest.raises(ConfirmationNeededError) as asked:
        reverse_in(shop, payoff, DECEMBER, confirm=False)
    assert asked.value.consequences == {
        "as_of": "2026-12-10", "status_before": "settled", "status_after": "overdue",
        "dpd": 209,  # installment 4 was due on 15 May
        "penalty": asked.value.consequences["penalty"],
        "amount_due": asked.value.consequences["amount_due"],
    }  # fmt: skip
    assert Money.parse(asked.value.consequences["penalty"]) > Money.parse("100")
    assert "reopens settled loan" in str(asked.value)
    assert (kinds(engine, loan), present(books.trial_balance(shop))) == before  # nothing changed

    reversed_ = reverse_in(shop, payoff, DECEMBER, confirm=True)
    borrowers.fund_method(shop, card, Money(0))  # the payoff went back to it, and was spent
    assert reversed_["consequences"] == asked.value.consequences
    for day in (DECEMBER, date(2027, 6, 1)):  # today, and a replay long after: no write-off
        shown = present(servicing.show_loan(shop, loan, day))
        assert (shown["status"], shown["written_off_on"]) == ("overdue", None), day
    today = present(servicing.show_loan(shop, loan, DECEMBER))
    effect = asked.value.consequences
    shown = (today["dpd"], today["outstanding_penalty"], today["amount_due"])
    assert shown == (209, effect["penalty"], effect["amount_due"])
    assert present(books.check_books(shop))["consistent"]

    closed = document(cob.close(shop, DECEMBER))  # the night's batch acts on the corrected state
    assert (closed["loans"], closed["write_offs"]) == (1, 1)
    assert kinds(engine, loan)[-1] == ("write_off", DECEMBER)
    written = present(servicing.show_loan(shop, loan, DECEMBER))
    assert (written["status"], written["written_off_on"]) == ("written_off", "2026-12-10")
    with Session(engine) as session:
        memos = session.scalars(select(JournalEntryRow.memo).where(JournalEntryRow.loan_id == loan))
        assert "write-off" in list(memos)
    assert present(books.check_books(shop))["consistent"]
    assert present(books.trial_balance(shop))["balanced"]


def test_short_of_the_write_off_dpd_the_batch_writes_off_only_on_the_night_it_is_reached(
    shop: Context, engine: Engine
) -> None:
    loan, payoff, card = settled_in_april(shop)
    october = date(2026, 10, 1)
    reverse_in(shop, payoff, october, confirm=True)
    borrowers.fund_method(shop, card, Money(0))  # the payoff went back to it, and was spent
    assert present(servicing.show_loan(shop, loan, october))["dpd"] == 139
    night = october
    while night < date(2026, 11, 11):  # 180 days after 15 May
        assert document(cob.close(shop, night))["write_offs"] == 0, night
        night += timedelta(days=1)
    assert document(cob.close(shop, night))["write_offs"] == 1
    assert kinds(engine, loan)[-1] == ("write_off", date(2026, 11, 11))
    assert present(books.check_books(shop))["consistent"]
