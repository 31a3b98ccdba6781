"""What a correction that reaches back does, as of a day: a reversal may reopen a settled plan or
make a current one overdue, and then needs confirming; a merchant refund or a waiver never does
either, so they are done without asking."""

from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fenqi.domain.corrections import consequences
from fenqi.domain.events import (
    Channel,
    Event,
    Payment,
    Prepayment,
    PrepayMode,
    Refund,
    Reversal,
    Waiver,
    WaiverKind,
)
from fenqi.domain.loan import LoanStatus, replay
from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.schedule import Terms
from tests.unit.test_loan import CASH, LOAN
from tests.unit.test_loan_properties import histories

PAID: list[Event] = [
    Payment(1, date(2026, 2, 15), Money.parse("888.49"), Channel.MANUAL),
    Payment(2, date(2026, 3, 15), Money.parse("888.49"), Channel.MANUAL),
    Payment(3, date(2026, 4, 15), Money.parse("888.49"), Channel.MANUAL),
    Prepayment(4, date(2026, 4, 30), Money.parse("7648.85"), Channel.MANUAL,
               PrepayMode.REDUCE_INSTALLMENT, True),
]  # fmt: skip


def reversing(seq: int, on: date, today: date) -> tuple[LoanStatus, LoanStatus, int, bool]:
    before = replay(LOAN, CASH, PAID, today)
    after = replay(LOAN, CASH, [*PAID, Reversal(5, on, seq, "recalled")], today)
    effect = consequences(before, after)
    assert effect.amount_due == after.amount_due
    assert effect.penalty == after.outstanding_penalty
    return effect.status_before, effect.status_after, effect.dpd, effect.needs_confirmation


def test_reversing_the_april_payoff_in_december_reopens_the_plan_209_days_past_due() -> None:
    december = date(2026, 12, 10)
    assert reversing(4, december, december) == (
        LoanStatus.SETTLED, LoanStatus.OVERDUE, 209, True  # installment 4 was due 15 May
    )  # fmt: skip


def test_a_reversal_that_leaves_a_settled_plan_owing_nothing_past_due_still_reopens_it() -> None:
    assert reversing(4, date(2026, 5, 1), date(2026, 5, 1)) == (
        LoanStatus.SETTLED, LoanStatus.ACTIVE, 0, True
    )  # fmt: skip


def test_making_a_current_plan_overdue_needs_confirming_and_one_already_overdue_does_not() -> None:
    current = [*PAID[:2]]  # installment 3 is due on 15 April
    before = replay(LOAN, CASH, current, date(2026, 3, 20))
    after = replay(LOAN, CASH, [*current, Reversal(3, date(2026, 3, 20), 2, "x")],
                   date(2026, 3, 20))  # fmt: skip
    assert consequences(before, after).makes_overdue  # installment 2 is 5 days past due
    overdue = replay(LOAN, CASH, PAID[:1], date(2026, 3, 20))
    later = replay(LOAN, CASH, [PAID[0], Reversal(2, date(2026, 3, 20), 1, "x")],
                   date(2026, 3, 20))  # fmt: skip
    assert not consequences(overdue, later).needs_confirmation


def test_states_of_two_days_are_not_compared() -> None:
    with pytest.raises(ValueError, match="one day"):
        consequences(replay(LOAN, CASH, [], date(2026, 3, 1)),
                     replay(LOAN, CASH, [], date(2026, 3, 2)))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 900), st.integers(0, 200), st.integers(1, 10**6),
       st.sampled_from(["refund", *WaiverKind]))  # fmt: skip
def test_a_merchant_refund_or_a_waiver_never_reopens_a_plan_or_makes_it_overdue(
    history: tuple[Terms, Product, list[Event]], offset: int, later: int, amount: int, kind: str
) -> None:
    terms, policy, events = history
    on = terms.start + timedelta(days=offset)
    today = on + timedelta(days=later)
    seq = max((event.seq for event in events), default=0) + 1
    correction: Event
    if kind == "refund":
        priced = terms.principal - sum(e.amount for e in events if isinstance(e, Refund))
        if priced <= 0:
            return
        correction = Refund(seq, on, Money(min(amount, priced)), Channel.MANUAL)
    else:
        correction = Waiver(seq, on, WaiverKind(kind), Money(amount), "goodwill")
    cap = Fraction(24, 100)
    before = replay(terms, policy, events, today, cap)
    after = replay(terms, policy, [*events, correction], today, cap)
    assert not consequences(before, after).needs_confirmation
