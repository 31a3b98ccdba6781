"""Terms for tests, written the way docs/domain.md#worked-numbers writes them, and Hypothesis
strategies."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

from hypothesis import strategies as st

from fenqi.domain.calendar import FirstPeriod
from fenqi.domain.money import ZERO, Money
from fenqi.domain.rates import parse_rate
from fenqi.domain.schedule import DayCount, Method, Terms

START = date(2026, 1, 15)


def plan(
    method: str,
    principal: str,
    periods: int,
    *,
    rate: str = "0%",
    fee: str = "0%",
    upfront: str = "0",
    start: date = START,
    day_count: str = "30/360",
    repayment_day: int | None = None,
    first_period: str = "short",
) -> Terms:
    """Terms in a worked example's words: plan("equal-installment", "10000", 12, rate="12%")."""
    return Terms(
        principal=Money.parse(principal),
        periods=periods,
        method=Method(method),
        start=start,
        annual_rate=parse_rate(rate),
        fee_rate=parse_rate(fee),
        upfront_fee=Money.parse(upfront),
        day_count=DayCount(day_count),
        repayment_day=repayment_day,
        first_period=FirstPeriod(first_period),
    )


amounts = st.integers(min_value=1, max_value=10**10).map(Money)  # up to 100 million yuan
rates_bp = st.integers(min_value=0, max_value=3_600)  # 0% to 36% in basis points


@st.composite
def any_terms(draw: st.DrawFn, method: Method | None = None) -> Terms:
    """Any valid terms: every method, day count, fixed repayment day and remainder placement."""
    chosen = draw(st.sampled_from(Method)) if method is None else method
    fee_based = chosen is Method.FLAT_FEE
    rate = draw(rates_bp)
    principal = draw(amounts)
    monthly = chosen is not Method.BULLET
    return Terms(
        principal=principal,
        periods=draw(st.integers(min_value=1, max_value=60)),
        method=chosen,
        start=draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))),
        annual_rate=Fraction(0 if fee_based else rate, 10_000),
        fee_rate=Fraction(rate if fee_based else 0, 120_000),
        upfront_fee=draw(st.sampled_from([ZERO, Money(principal // 100)])),
        day_count=draw(st.sampled_from(DayCount)),
        repayment_day=draw(st.one_of(st.none(), st.integers(1, 31))) if monthly else None,
        first_period=draw(st.sampled_from(FirstPeriod)),
        remainder_first=draw(st.booleans()),
    )
