"""The annualised rate a borrower must be shown (docs/domain.md#apr-and-total-cost), by IRR.

The cash flows are the borrower's: + what she actually receives at the start (principal less any
upfront fee), − each payment. A regular monthly plan uses the monthly IRR r: ``apr_simple`` = 12·r
and ``apr_compound`` = (1+r)^12 − 1. A plan whose periods are not whole months (a fixed repayment
day with a short or long first period, a bullet loan) uses an XIRR on actual days, and its simple
rate is that compound rate de-compounded to the plan's own payment frequency (monthly, or once
over a bullet loan's days, which gives the textbook interest / principal × 365 / days).

The IRR is a root of a polynomial, not an amount of money: it is found in binary floating point to
about 1e-15 and then held as an exact ``Fraction`` of that float, so that it compares and formats
deterministically.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from fractions import Fraction
from typing import NamedTuple

from fenqi.domain.calendar import actual_days
from fenqi.domain.errors import InputError
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import Method, Schedule

_TOLERANCE = 1e-15
_MAX_STEPS = 200
_HIGHEST_RATE = 1e9  # per period; a bracket that has not closed by then has no root


class AprError(InputError):
    """Cash flows that have no rate of return (they are not shaped like a loan)."""


class Apr(NamedTuple):
    """A plan's annualised rate, simple (单利) and compounded (复利)."""

    simple: Rate
    compound: Rate


def irr(amounts: Sequence[int], times: Sequence[float] | None = None) -> float:
    """The rate r per unit of time at which Σ amount_k · (1+r)^−t_k = 0.

    ``amounts`` are the borrower's flows: the first positive (received), the rest 0 or negative
    (paid). ``times`` default to 0, 1, 2, … periods. The root is bracketed and refined by Newton
    steps that fall back to bisection whenever a step would leave the bracket, so it always
    converges; for such flows there is exactly one root.
    """
    times = tuple(range(len(amounts))) if times is None else tuple(times)
    _check_loan_shaped(amounts, times)
    total = sum(amounts)
    if total == 0:
        return 0.0  # nothing is paid beyond what was received: the rate is exactly zero
    low, high = _bracket(amounts, times, total)
    rate = 0.0 if total > 0 else min(0.01, high / 2)
    rate = rate if low < rate < high else (low + high) / 2
    for _ in range(_MAX_STEPS):
        value, slope = _npv_and_slope(amounts, times, rate)
        if value == 0:
            return rate
        low, high = (rate, high) if value < 0 else (low, rate)
        newton = rate - value / slope if slope else low
        following = newton if low < newton < high else (low + high) / 2
        if abs(following - rate) <= _TOLERANCE * max(1.0, abs(rate)):
            return following
        rate = following
    return rate  # pragma: no cover - bisection halves the bracket 200 times before this


def _check_loan_shaped(amounts: Sequence[int], times: Sequence[float]) -> None:
    if len(amounts) != len(times) or len(amounts) < 2:
        raise AprError("a rate needs the amount received and at least one payment, each dated")
    if amounts[0] <= 0 or any(amount > 0 for amount in amounts[1:]):
        raise AprError("cash flows must be one amount received, then payments")
    if not any(amounts[1:]):
        raise AprError("nothing is ever repaid, so there is no rate")


def _bracket(amounts: Sequence[int], times: Sequence[float], total: int) -> tuple[float, float]:
    """Rates with the NPV negative at the low end and positive at the high end.

    NPV(0) is the plain sum of the flows: paying back more than was received puts the root above
    zero, less below it. The NPV rises with the rate, towards what was received.
    """
    if total < 0:
        high = 1.0
        while _npv_and_slope(amounts, times, high)[0] < 0:
            high *= 2
            if high > _HIGHEST_RATE:
                raise AprError("the cost of these payments is beyond any annual rate")
        return 0.0, high
    low = -0.5
    while _npv_and_slope(amounts, times, low)[0] > 0:
        low = (low - 1) / 2  # halve the distance to -100%
        if low <= -1 + 1e-12:
            raise AprError("these payments return almost nothing of what was received")
    return low, 0.0


def _npv_and_slope(
    amounts: Sequence[int], times: Sequence[float], rate: float
) -> tuple[float, float]:
    base = 1.0 + rate
    value = slope = 0.0
    for amount, time in zip(amounts, times, strict=True):
        discounted = amount * base**-time
        value += discounted
        slope -= time * discounted / base
    return value, slope


def xirr(flows: Sequence[tuple[date, int]]) -> float:
    """The annual effective rate of dated flows, on actual days over a 365-day year."""
    if not flows:
        raise AprError("a rate needs dated cash flows")
    first = flows[0][0]
    times = [actual_days(first, day) / 365 for day, _ in flows]
    return irr([amount for _, amount in flows], times)


def apr(plan: Schedule) -> Apr:
    """The annualised rate of a plan, from what the borrower receives and each payment."""
    terms = plan.terms
    payments = [-payment for payment in plan.payments]
    if plan.regular:
        monthly = irr([int(terms.net_received), *payments])
        return Apr(Fraction(12 * monthly), Fraction((1 + monthly) ** 12 - 1))
    dated = [(terms.start, int(terms.net_received))]
    dated += zip(plan.due_dates, payments, strict=True)
    annual = xirr(dated)
    # De-compound to how often the plan pays: monthly, or once over the bullet's actual days.
    days = actual_days(terms.start, plan.due_dates[-1])
    per_year = 365 / days if terms.method is Method.BULLET else 12
    simple = per_year * ((1 + annual) ** (1 / per_year) - 1)
    return Apr(Fraction(simple), Fraction(annual))
