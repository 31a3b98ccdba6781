"""Schedules against docs/domain.md#worked-numbers, and the invariants every schedule keeps."""

from datetime import date
from itertools import pairwise

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fenqi.domain.money import Money
from fenqi.domain.schedule import (
    Method,
    Remaining,
    Terms,
    TermsError,
    annuity_payment,
    reamortise,
    schedule,
)
from tests.plans import any_terms, plan
from tests.worked import WORKED, Worked


def payments(terms: Terms) -> list[Money]:
    return [row.payment for row in schedule(terms).installments]


@pytest.mark.parametrize("example", WORKED, ids=lambda example: example.name)
def test_worked_numbers(example: Worked) -> None:
    terms = example.terms()
    plan_ = schedule(terms)
    assert [str(payment) for payment in payments(terms)] == list(example.payments)
    assert plan_.total_interest + plan_.total_fee == Money.parse(example.cost)
    assert plan_.total_payment == terms.principal + Money.parse(example.cost)


def test_equal_installment_first_three_periods_and_balance() -> None:
    rows = schedule(plan("equal-installment", "10000", 12, rate="12%")).installments
    split = [(str(row.interest), str(row.principal)) for row in rows[:3]]
    assert split == [("100.00", "788.49"), ("92.12", "796.37"), ("84.15", "804.34")]
    assert rows[2].balance == Money.parse("7610.80")
    assert rows[0].due_date == date(2026, 2, 15)
    assert rows[0].balance == Money.parse("9211.51")


def test_equal_principal_falls_by_ten_yuan_a_period() -> None:
    amounts = payments(plan("equal-principal", "12000", 12, rate="12%"))
    assert amounts[0] == Money.parse("1120.00")
    assert amounts[-1] == Money.parse("1010.00")


def test_bullet_charges_actual_days_and_is_due_at_maturity() -> None:
    (row,) = schedule(plan("bullet", "10000", 3, rate="12%", start=date(2026, 1, 15))).installments
    assert row.due_date == date(2026, 4, 15)
    assert row.interest == Money.parse("300.00")
    (row365,) = schedule(plan("bullet", "10000", 3, rate="12%", day_count="act/365")).installments
    assert row365.interest == Money.parse("295.89")  # 10,000 × 12% × 90 / 365 = 295.890…


def test_actual_day_counts_charge_each_period_for_its_days() -> None:
    rows = schedule(
        plan("equal-installment", "10000", 3, rate="12%", day_count="act/360")
    ).installments
    # Jan 15 → Feb 15 is 31 days: 10,000 × 12% × 31 / 360 = 103.33; payment stays level.
    assert rows[0].interest == Money.parse("103.33")
    assert rows[0].payment == rows[1].payment
    assert rows[-1].balance == 0
    rows365 = schedule(
        plan("equal-principal", "12000", 2, rate="12%", day_count="act/365")
    ).installments
    assert rows365[0].interest == Money.parse("122.30")  # 12,000 × 12% × 31 / 365 = 122.30


def test_a_short_first_period_charges_its_30_360_days() -> None:
    terms = plan("interest-only", "10000", 3, rate="12%", start=date(2026, 1, 20), repayment_day=5)
    rows = schedule(terms).installments
    assert rows[0].due_date == date(2026, 2, 5)
    assert rows[0].interest == Money.parse("50.00")  # 15 days of 30/360 at 12%
    assert rows[1].interest == Money.parse("100.00")


def test_a_long_first_period_charges_its_extra_days() -> None:
    terms = plan(
        "interest-only",
        "10000",
        3,
        rate="12%",
        start=date(2026, 1, 20),
        repayment_day=5,
        first_period="long",
    )
    rows = schedule(terms).installments
    assert rows[0].due_date == date(2026, 3, 5)
    assert rows[0].interest == Money.parse("150.00")  # 45 days of 30/360


def test_whole_plan_fee_rate_is_split_evenly_remainder_last() -> None:
    terms = Terms(
        principal=Money.parse("1000"),
        periods=3,
        method=Method.FLAT_FEE,
        start=date(2026, 1, 15),
        fee_total_rate=plan("flat-fee", "1", 1, fee="2.3%").fee_rate,
    )
    fees = [row.fee for row in schedule(terms).installments]
    assert [str(fee) for fee in fees] == ["7.66", "7.66", "7.68"]  # 2.3% of 1,000 = 23.00


def test_upfront_fee_is_deducted_from_what_the_borrower_receives() -> None:
    terms = plan("equal-installment", "100000", 12, rate="10%", upfront="1000")
    assert terms.net_received == Money.parse("99000")
    assert schedule(terms).total_payment > terms.principal


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"principal": Money(0)}, "principal 0.00 must be more than 0"),
        ({"periods": 0}, "between 1 and 360"),
        ({"upfront_fee": Money.parse("10000")}, "less than the principal"),
        ({"fee_rate": plan("flat-fee", "1", 1, fee="1%").fee_rate}, "not a fee rate"),
        ({"method": Method.FLAT_FEE}, "fee rate, not interest"),
        ({"method": Method.BULLET, "repayment_day": 5}, "does not apply"),
    ],
)
def test_invalid_terms_are_refused_with_the_reason(change: dict[str, object], says: str) -> None:
    base = {
        "principal": Money.parse("10000"),
        "periods": 12,
        "method": Method.EQUAL_INSTALLMENT,
        "start": date(2026, 1, 15),
        "annual_rate": plan("equal-installment", "1", 1, rate="12%").annual_rate,
    }
    with pytest.raises(TermsError, match=says):
        Terms(**{**base, **change})  # type: ignore[arg-type]


@given(any_terms())
def test_principal_parts_sum_exactly_to_the_principal(terms: Terms) -> None:
    rows = schedule(terms).installments
    assert sum(row.principal for row in rows) == terms.principal


@given(any_terms())
def test_every_amount_is_zero_or_more(terms: Terms) -> None:
    for row in schedule(terms).installments:
        assert min(row.principal, row.interest, row.fee, row.balance) >= 0


@given(any_terms())
def test_balance_falls_to_exactly_zero_and_never_rises(terms: Terms) -> None:
    rows = schedule(terms).installments
    balances = [terms.principal, *(row.balance for row in rows)]
    assert balances[-1] == 0
    assert all(later <= earlier for earlier, later in pairwise(balances))


@given(any_terms())
def test_due_dates_rise_month_by_month(terms: Terms) -> None:
    rows = schedule(terms).installments
    dates = [terms.start, *(row.due_date for row in rows)]
    assert all(earlier < later for earlier, later in pairwise(dates))
    assert [row.period for row in rows] == list(range(1, len(rows) + 1))


@given(any_terms(), st.booleans())
def test_a_plan_reamortised_from_its_first_day_is_its_schedule(terms: Terms, shorten: bool) -> None:
    """Each method lays out a plan and the rest of a prepaid one alike: the whole principal,
    re-amortised from the start over every due date, in either mode, gives back the schedule
    (less any empty periods at the end, which a re-amortised plan drops)."""
    assume(not terms.remainder_first)  # a prepaid plan's remainder always goes last
    plan_ = schedule(terms)
    whole = Remaining(
        start=terms.start,
        dues=plan_.due_dates,
        balance=int(terms.principal),
        shorten=shorten,
        first_interest_paid=False,
        level=int(annuity_payment(terms.principal, terms.annual_rate, terms.periods)),
        regular_part=int(terms.principal) // terms.periods,
    )
    rest = reamortise(terms, whole)
    kept = len(rest.principals)
    assert rest.principals == plan_.principals[:kept]
    assert rest.interests == plan_.interests[:kept]
    assert not any(plan_.principals[kept:])
