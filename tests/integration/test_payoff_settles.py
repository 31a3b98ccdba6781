"""The payoff quote and the plan agree, through the services on SQLite and PostgreSQL: paying
what the quote says on a day settles the plan, by ``pay`` as by ``prepay``, after paying ahead
and after backdated payments; a plan paid ahead so far that the quote is 0.00 is paid off with
nothing to pay, and no channel is asked for money. A borrower can always get out by paying the
quote."""

from datetime import date, timedelta
from decimal import Decimal
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from fenqi.channels.gateways import DEBITED
from fenqi.channels.simulator import SimulatedChannel, SimulatedGateway
from fenqi.domain.events import PrepayMode
from fenqi.domain.money import Money
from fenqi.ports import GatewayAnswer, Gateways
from fenqi.services import books, borrowers, products, servicing
from fenqi.services.context import Context, Document
from fenqi.services.errors import RefusedError
from fenqi.services.policy import operator
from fenqi.services.servicing import OverpaymentError, Source
from fenqi.wire import present

START = date(2026, 3, 1)  # cash 1,000.00 at 12% in 3 installments: 340.02 due 04-01, 05-01, 06-01
AFTER = timedelta(days=120)  # past the last due date: a plan still open would be overdue


class CountingGateway(SimulatedGateway):
    """The gateway simulator, noting every amount it is asked to debit."""

    asked: ClassVar[list[Money]] = []

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # fmt: skip
        CountingGateway.asked.append(amount)
        return super().request_debit(order_id, token_ref, amount, notify_url)


@pytest.fixture
def context(engine: Engine) -> Context:
    counting = CountingGateway(engine)
    gateways = Gateways(dict.fromkeys(DEBITED, counting), "http://127.0.0.1:9/notify")
    shop = Context(engine, SimulatedChannel, operator("desk"), gateways=gateways)
    products.load_products(shop)
    CountingGateway.asked = []
    return shop


_phones = iter(range(13_800_000_000, 13_900_000_000))


def plan(context: Context, start: date = START) -> tuple[int, int]:
    """A borrower with a card holding 100,000.00 and a cash plan of 1,000.00 in 3 from
    ``start``: (loan, card)."""
    who = borrowers.create_borrower(context, "张三", str(next(_phones)), Money.parse("50000"))
    card = borrowers.bind_method(context, who.id, "bank_card", "6222020000001234567",
                                 sim_balance=Money.parse("100000"))  # fmt: skip
    order = servicing.Order(who.id, f"O-{who.id}", "m", Money.parse("1000"), "cash", 3,
                            start)  # fmt: skip
    return present(servicing.checkout(context, order))["id"], card.method.id


def quote(context: Context, loan: int, day: date) -> Money:
    return Money.parse(present(servicing.quote_payoff(context, loan, day))["amount"])


def pay_the_quote(context: Context, loan: int, day: date, way: str) -> Document:
    """Pays what the payoff quote says on ``day``: by ``pay`` (nothing to pay is the payoff
    button's), ``prepay`` of that amount, or ``prepay --full``."""
    amount = quote(context, loan, day)
    if way == "pay" and amount > 0:
        return present(servicing.pay(context, loan, amount, Source(), day))
    if way == "prepay" and amount > 0:
        return present(servicing.prepay(context, loan, amount, mode=PrepayMode.SHORTEN_TERM,
                                source=Source(), day=day))  # fmt: skip
    return present(servicing.prepay(context, loan, None, mode=PrepayMode.REDUCE_INSTALLMENT,
                            source=Source(), day=day))  # fmt: skip


def assert_settled(context: Context, loan: int, day: date) -> None:
    """Settled with nothing owed on ``day`` and after the last due date, and the books follow."""
    for on in (day, day + AFTER):
        shown = present(servicing.show_loan(context, loan, on))
        owed = ("outstanding_principal", "outstanding_interest", "outstanding_fee",
                "outstanding_penalty", "amount_due")  # fmt: skip
        assert (shown["status"], shown["dpd"]) == ("settled", 0), shown
        assert {key: shown[key] for key in owed} == dict.fromkeys(owed, "0.00")
    assert present(books.trial_balance(context))["balanced"]
    assert present(books.check_books(context))["consistent"]


def receipt_adds_up(paid: Document) -> None:
    """Where each yuan of a payment went, and what it left as credit, sum to what was paid."""
    parts = sum(Decimal(part["amount"]) for part in paid["allocation"])  # some are taken back
    assert parts + Decimal(paid["to_credit"]) == Decimal(paid["amount"]), paid


@pytest.mark.parametrize("way", ["pay", "prepay", "full"])
def test_paying_exactly_the_payoff_quote_settles_the_plan(context: Context, way: str) -> None:
    """The review's case: 1,000.00 paid on the first day is the payoff. Paid as an ordinary
    payment it went to the installments' scheduled interest ahead, left 20.07 owed that the
    quote (0.00) no longer counted, and the borrower went overdue."""
    loan, _ = plan(context)
    assert quote(context, loan, START) == Money.parse("1000")
    paid = pay_the_quote(context, loan, START, way)
    assert (paid["kind"], paid["amount"], paid["interest"]) == ("prepayment", "1000.00", "0.00")
    receipt_adds_up(paid)
    assert_settled(context, loan, START)


@pytest.mark.parametrize("way", ["pay", "prepay", "full"])
def test_after_paying_ahead_the_quote_still_settles_and_charges_no_interest_to_come(
    context: Context, way: str
) -> None:
    """500.00 paid ahead on 03-01 paid the scheduled interest of three periods; the payoff nine
    days later takes it back and charges the nine days' interest only: 1,003.00 in all."""
    loan, _ = plan(context)
    servicing.pay(context, loan, Money.parse("500"), Source(), START)
    day = START + timedelta(days=9)
    assert quote(context, loan, day) == Money.parse("503")
    paid = pay_the_quote(context, loan, day, way)
    assert (paid["kind"], paid["amount"], paid["to_credit"]) == ("prepayment", "503.00", "0.00")
    receipt_adds_up(paid)  # what was paid ahead and taken back is on it too
    assert_settled(context, loan, day)


def test_after_a_backdated_payment_paying_the_quote_settles_the_plan(context: Context) -> None:
    """600.00 on 03-01, then 401.00 recorded as paid on 02-25: the quote on 03-01 is 2.00 (the
    nine days' interest, 3.00, on 1,000.00, less the 1,001.00 paid), and paying it settles."""
    loan, _ = plan(context, date(2026, 2, 20))
    servicing.pay(context, loan, Money.parse("600"), Source(), START)
    late = present(servicing.pay(context, loan, Money.parse("401"), Source(), date(2026, 2, 25)))
    assert late["kind"] == "payment"  # not the payoff of its day (1,001.67)
    assert quote(context, loan, START) == Money.parse("2")
    paid = present(servicing.pay(context, loan, Money.parse("2"), Source(), START))
    assert paid["kind"] == "prepayment"
    assert_settled(context, loan, START)


def test_a_plan_paid_ahead_to_a_quote_of_nothing_is_paid_off_with_nothing_to_pay(
    context: Context, engine: Engine
) -> None:
    """600.00 on 03-01 and 403.00 recorded as paid on 02-25 cover the payoff (1,003.00): the
    quote is 0.00 while the plan still shows principal owed. A payment of more is refused, and
    says how she gets out; the payoff settles it, and no channel is asked for money."""
    loan, card = plan(context, date(2026, 2, 20))
    servicing.pay(context, loan, Money.parse("600"), Source(), START)
    servicing.pay(context, loan, Money.parse("403"), Source(), date(2026, 2, 25))
    shown = present(servicing.show_loan(context, loan, START))
    assert (shown["status"], shown["outstanding_principal"]) == ("active", "17.07")
    assert quote(context, loan, START) == 0
    with pytest.raises(OverpaymentError, match="a full payoff settles it with nothing to pay"):
        servicing.pay(context, loan, Money.parse("0.01"), Source(), START)

    asked = len(CountingGateway.asked)
    paid = present(servicing.prepay(context, loan, None, mode=PrepayMode.REDUCE_INSTALLMENT,
                                    source=Source(method_id=card), day=START))  # fmt: skip
    assert (paid["kind"], paid["amount"], paid["to_credit"]) == ("prepayment", "0.00", "0.00")
    assert len(CountingGateway.asked) == asked  # nothing to take: the channel was not asked
    receipt_adds_up(paid)
    assert_settled(context, loan, START)
    with pytest.raises(RefusedError, match="settled; nothing is owed"):
        servicing.prepay(context, loan, None, mode=PrepayMode.REDUCE_INSTALLMENT,
                         source=Source(), day=START)  # fmt: skip


# -- the rule in general -------------------------------------------------------------------------

Step = tuple[str, int, int]  # what (pay, backdated pay, prepay), days after the last, fen
STEPS = st.tuples(st.sampled_from(["pay", "backdated", "prepay"]), st.integers(0, 40),
                  st.integers(1, 700_00))  # fmt: skip


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(
    steps=st.lists(STEPS, max_size=6),
    after=st.integers(0, 40),
    way=st.sampled_from(["pay", "prepay", "full"]),
)
def test_whatever_was_paid_before_paying_the_quote_settles_the_plan(
    context: Context, steps: list[Step], after: int, way: str
) -> None:
    """Payments in advance, backdated payments and prepayments in part, in any order (each
    refused only where the rules refuse it), then the payoff quote paid on a day after them:
    the plan is settled with nothing owed, on that day and after."""
    loan, _ = plan(context)
    today = START
    for what, days, fen in steps:
        today += timedelta(days=days)
        day = max(START, today - timedelta(days=days + 10)) if what == "backdated" else today
        try:
            if what == "prepay":
                servicing.prepay(context, loan, Money(fen), mode=PrepayMode.REDUCE_INSTALLMENT,
                                 source=Source(), day=day)  # fmt: skip
            else:
                servicing.pay(context, loan, Money(fen), Source(), day)
        except RefusedError as refused:  # beyond the payoff, or paid off already
            if not isinstance(refused, OverpaymentError) and "settled" not in str(refused):
                raise
        note(f"{what} {Money(fen)} on {day}: {present(servicing.show_loan(context, loan, today))}")
    day = today + timedelta(days=after)
    if present(servicing.show_loan(context, loan, day))["status"] == "settled":
        return
    paid = pay_the_quote(context, loan, day, way)
    receipt_adds_up(paid)
    assert_settled(context, loan, day)
