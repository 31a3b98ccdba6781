"""Repayment schedules for the five methods of docs/domain.md#repayment-methods.

``schedule(terms)`` is a pure function of immutable terms. Interest and fees are rounded half up
once per period; principal parts are cut to the fen and one period absorbs the remainder, so the
principal parts always sum exactly to the principal and the balance falls to exactly zero.
``reamortise(terms, rest)`` lays out, by the same method, what is left of a plan after part of
its principal was repaid early.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from fractions import Fraction
from functools import cached_property, lru_cache
from typing import NamedTuple

from fenqi.domain.calendar import (
    CalendarError,
    FirstPeriod,
    actual_days,
    add_months,
    days_30e_360,
    due_dates,
    is_regular,
)
from fenqi.domain.errors import InputError
from fenqi.domain.money import ZERO, Money, at_rate, half_up, half_up_fen, split
from fenqi.domain.rates import Rate, format_percent

MAX_PERIODS = 360


class Method(StrEnum):
    """Repayment methods (还款方式), by their CLI names."""

    EQUAL_INSTALLMENT = "equal-installment"  # 等额本息
    EQUAL_PRINCIPAL = "equal-principal"  # 等额本金
    INTEREST_ONLY = "interest-only"  # 先息后本
    BULLET = "bullet"  # 一次性还本付息
    FLAT_FEE = "flat-fee"  # 分期手续费


class DayCount(StrEnum):
    """How a period's interest is counted: by months (30/360) or by actual days."""

    THIRTY_360 = "30/360"
    ACT_360 = "act/360"
    ACT_365 = "act/365"


class TermsError(InputError):
    """Terms that cannot make a schedule; the message says what is wrong and what is accepted."""


def _choices(kind: type[StrEnum]) -> str:
    return ", ".join(member.value for member in kind)


def parse_method(text: str) -> Method:
    try:
        return Method(text)
    except ValueError:
        raise TermsError(f'unknown method "{text}"; choose one of: {_choices(Method)}') from None


def parse_day_count(text: str) -> DayCount:
    try:
        return DayCount(text)
    except ValueError:
        raise TermsError(
            f'unknown day count "{text}"; choose one of: {_choices(DayCount)}'
        ) from None


@dataclass(frozen=True, slots=True)
class Terms:
    """What a plan is: everything its schedule is derived from.

    Attributes:
      principal: the amount lent, in fen (the price of the goods for a mall plan).
      periods: number of monthly periods; for ``bullet``, months to maturity.
      method: how principal, interest and fees fall over the periods.
      start: the day the money is disbursed.
      annual_rate: nominal annual interest rate; monthly is /12, daily /360 or /365.
      fee_rate: fee per period on the original principal (``flat-fee`` only).
      fee_total_rate: fee for the whole plan, split evenly (``flat-fee``, Huabei style).
      upfront_fee: deducted from what the borrower receives.
      day_count: 30/360 counts months; act/360 and act/365 count actual days.
      repayment_day: a fixed day of month for due dates, with a short or long first period.
      remainder_first: put the principal remainder in the first period instead of the last.
    """

    principal: Money
    periods: int
    method: Method
    start: date
    annual_rate: Rate = field(default=Fraction(0))
    fee_rate: Rate = field(default=Fraction(0))
    fee_total_rate: Rate | None = None
    upfront_fee: Money = ZERO
    day_count: DayCount = DayCount.THIRTY_360
    repayment_day: int | None = None
    first_period: FirstPeriod = FirstPeriod.SHORT
    remainder_first: bool = False

    def __post_init__(self) -> None:
        problem = next(_terms_problems(self), None)
        if problem:
            raise TermsError(problem)

    @property
    def net_received(self) -> Money:
        """What the borrower actually holds at the start: principal less any upfront fee."""
        return self.principal - self.upfront_fee


def _terms_problems(terms: Terms) -> Iterator[str]:
    method = terms.method
    if terms.principal <= 0:
        yield f"principal {terms.principal} must be more than 0"
    if not 1 <= terms.periods <= MAX_PERIODS:
        yield f"periods {terms.periods} must be between 1 and {MAX_PERIODS}"
    if not 0 <= terms.upfront_fee < terms.principal:
        yield f"upfront fee {terms.upfront_fee} must be 0 or more and less than the principal"
    if min(terms.annual_rate, terms.fee_rate, terms.fee_total_rate or 0) < 0:
        yield "rates must be 0 or more"
    if method is not Method.FLAT_FEE and (terms.fee_rate or terms.fee_total_rate is not None):
        yield f"{method} takes an annual interest rate, not a fee rate; fees are for flat-fee plans"
    if method is Method.FLAT_FEE and terms.annual_rate:
        rate = format_percent(terms.annual_rate)
        yield f"flat-fee charges a fee rate, not interest ({rate} given); give the fee rate"
    if terms.fee_rate and terms.fee_total_rate is not None:
        yield "give a per-period fee rate or a whole-plan fee rate, not both"
    if method is Method.BULLET and terms.repayment_day is not None:
        yield "bullet repays once at maturity; a fixed repayment day does not apply"


class Installment(NamedTuple):
    """One period's bill. Amounts are Money (fen); ``balance`` is the principal left after it."""

    period: int
    due_date: date
    principal: Money
    interest: Money
    fee: Money
    balance: Money

    @property
    def payment(self) -> Money:
        return Money(self.principal + self.interest + self.fee)


@dataclass(frozen=True)
class Schedule:
    """A plan's amounts per period, derived from its terms.

    The amounts are kept as columns of integer fen (what the batch and the APR read, and cheap
    to build for millions of loans); ``installments`` is the row view, built once when asked.

    Attributes:
      terms: what the schedule is derived from.
      due_dates: each period's due date.
      principals, interests, fees: each period's parts, in fen.
    """

    terms: Terms
    due_dates: tuple[date, ...]
    principals: tuple[int, ...]
    interests: tuple[int, ...]
    fees: tuple[int, ...]

    @cached_property
    def installments(self) -> tuple[Installment, ...]:
        money = int.__new__  # the parts are exact ints already; this only gives them their type
        balance = int(self.terms.principal)
        rows = []
        for period, (due, principal, interest, fee) in enumerate(
            zip(self.due_dates, self.principals, self.interests, self.fees, strict=True), start=1
        ):
            balance -= principal
            parts = (money(Money, principal), money(Money, interest), money(Money, fee))
            rows.append(Installment(period, due, *parts, money(Money, balance)))
        return tuple(rows)

    @property
    def payments(self) -> tuple[int, ...]:
        """Each period's payment in fen."""
        return tuple(map(sum, zip(self.principals, self.interests, self.fees, strict=True)))

    @property
    def total_interest(self) -> Money:
        return Money(sum(self.interests))

    @property
    def total_fee(self) -> Money:
        return Money(sum(self.fees))

    @property
    def total_payment(self) -> Money:
        return Money(sum(self.payments))

    @property
    def regular(self) -> bool:
        """Whether every period is one whole month, so the monthly IRR applies."""
        if self.terms.method is Method.BULLET:
            return False
        return is_regular(self.terms.start, self.due_dates)


# A period's length as a fraction of a year, kept as an integer ratio (numerator, denominator).
YearFraction = tuple[int, int]
_ONE_MONTH: YearFraction = (1, 12)


def schedule(terms: Terms) -> Schedule:
    """The repayment schedule of ``terms``."""
    try:
        return _METHODS[terms.method].schedule(terms)
    except CalendarError as error:
        raise TermsError(str(error)) from None


def period_fractions(
    start: date, dues: Sequence[date], day_count: DayCount
) -> tuple[YearFraction, ...]:
    """Each period's length as a fraction of a year, for the interest on it.

    On 30/360 a whole month is 1/12 and a short or long first period counts its 30E/360 days;
    on act/360 and act/365 every period counts its actual days.
    """
    if not dues:
        return ()
    if day_count is DayCount.THIRTY_360:
        regular = dues[0] == add_months(start, 1)
        first: YearFraction = _ONE_MONTH if regular else (days_30e_360(start, dues[0]), 360)
        return (first, *(_ONE_MONTH,) * (len(dues) - 1))
    basis = 365 if day_count is DayCount.ACT_365 else 360
    starts = (start, *dues[:-1])
    return tuple((actual_days(a, b), basis) for a, b in zip(starts, dues, strict=True))


@lru_cache(maxsize=4096)
def _periods(
    start: date,
    periods: int,
    day_count: DayCount,
    repayment_day: int | None,
    first_period: FirstPeriod,
) -> tuple[tuple[date, ...], tuple[YearFraction, ...]]:
    """Due dates and year fractions of a plan; plans share them, so they are computed once."""
    dues = due_dates(start, periods, repayment_day, first_period)
    return dues, period_fractions(start, dues, day_count)


def _plan_periods(terms: Terms) -> tuple[tuple[date, ...], tuple[YearFraction, ...]]:
    return _periods(
        terms.start, terms.periods, terms.day_count, terms.repayment_day, terms.first_period
    )


def _nothing(terms: Terms) -> tuple[int, ...]:
    return (0,) * terms.periods


def _equal_installment(terms: Terms) -> Schedule:
    dues, fractions = _plan_periods(terms)
    payment = annuity_payment(terms.principal, terms.annual_rate, terms.periods)
    principals, interests = level_parts(terms.principal, terms.annual_rate, fractions, payment)
    return Schedule(terms, dues, principals, interests, _nothing(terms))


def level_parts(
    principal: int, annual_rate: Rate, fractions: Sequence[YearFraction], payment: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Principal and interest parts, in fen, of a level ``payment`` over periods of the given
    year fractions. What is not interest repays principal, never below 0 nor above the balance;
    the last period clears what is left (so it may be smaller, or larger)."""
    rate_n, rate_d = annual_rate.as_integer_ratio()
    balance, payment = int(principal), int(payment)
    principals: list[int] = []
    interests: list[int] = []
    for frac_n, frac_d in fractions:
        interest = half_up_fen(balance * rate_n * frac_n, rate_d * frac_d)
        part = payment - interest
        if part > balance:
            part = balance
        elif part < 0:
            part = 0
        balance -= part
        principals.append(part)
        interests.append(interest)
    principals[-1] += balance
    return tuple(principals), tuple(interests)


def interest_parts(
    principal: int, annual_rate: Rate, fractions: Sequence[YearFraction], principals: Sequence[int]
) -> tuple[int, ...]:
    """Each period's interest, in fen, on the balance before that period's principal part."""
    rate_n, rate_d = annual_rate.as_integer_ratio()
    balance = int(principal)
    interests = []
    for part, (frac_n, frac_d) in zip(principals, fractions, strict=True):
        interests.append(half_up_fen(balance * rate_n * frac_n, rate_d * frac_d))
        balance -= part
    return tuple(interests)


def annuity_payment(principal: int, annual_rate: Rate, periods: int) -> Money:
    """The level payment P·i·(1+i)^n / ((1+i)^n − 1) at i = annual_rate / 12, rounded half up;
    P/n when the rate is 0."""
    rate_n, rate_d = annual_rate.as_integer_ratio()
    if not rate_n:
        return half_up(int(principal), periods)
    i_d = rate_d * 12  # i = rate_n / i_d, kept as two integers so that the payment is exact
    growth, base = (i_d + rate_n) ** periods, i_d**periods
    return half_up(int(principal) * rate_n * growth, i_d * (growth - base))


def _on_balances(terms: Terms, principals: tuple[int, ...]) -> Schedule:
    """A schedule whose principal parts are set in advance; interest is on the balance."""
    dues, fractions = _plan_periods(terms)
    interests = interest_parts(terms.principal, terms.annual_rate, fractions, principals)
    return Schedule(terms, dues, principals, interests, _nothing(terms))


def _equal_principal(terms: Terms) -> Schedule:
    parts = split(terms.principal, terms.periods, remainder_first=terms.remainder_first)
    return _on_balances(terms, tuple(map(int, parts)))


def _interest_only(terms: Terms) -> Schedule:
    return _on_balances(terms, (0,) * (terms.periods - 1) + (int(terms.principal),))


def _bullet(terms: Terms) -> Schedule:
    # Interest runs on the actual days to maturity (/360 unless the product counts /365).
    maturity = add_months(terms.start, terms.periods)
    basis = 365 if terms.day_count is DayCount.ACT_365 else 360
    rate_n, rate_d = terms.annual_rate.as_integer_ratio()
    days = actual_days(terms.start, maturity)
    interest = half_up_fen(int(terms.principal) * rate_n * days, rate_d * basis)
    return Schedule(terms, (maturity,), (int(terms.principal),), (interest,), (0,))


def _flat_fee(terms: Terms) -> Schedule:
    dues, _ = _plan_periods(terms)
    principal, periods, first = terms.principal, terms.periods, terms.remainder_first
    if terms.fee_total_rate is not None:
        fees = split(at_rate(principal, terms.fee_total_rate), periods, remainder_first=first)
    else:
        fees = (at_rate(principal, terms.fee_rate),) * periods
    principals = split(principal, periods, remainder_first=first)
    return Schedule(
        terms, dues, tuple(map(int, principals)), _nothing(terms), tuple(map(int, fees))
    )


class Remaining(NamedTuple):
    """What is left of a plan once part of its principal is repaid early: ``balance`` to repay
    from ``start`` over the periods ending on ``dues``.

    Attributes:
      shorten: keep the regular amount and end sooner (shorten-term); else keep the periods and
        pay less in each (reduce-installment).
      first_interest_paid: the first period's whole interest is paid already, so it charges none.
      level: the level payment so far (equal-installment).
      regular_part: the regular principal part (equal-principal, flat-fee).
    """

    start: date
    dues: tuple[date, ...]
    balance: int
    shorten: bool
    first_interest_paid: bool
    level: int
    regular_part: int


class Reamortised(NamedTuple):
    """New principal and interest parts, in fen, one per period still needed (fewer than the
    remaining periods when the term shortens), and the level payment from now on."""

    principals: tuple[int, ...]
    interests: tuple[int, ...]
    level: int


def reamortise(terms: Terms, rest: Remaining) -> Reamortised:
    """The rest of a plan after a partial prepayment, laid out by its repayment method."""
    return _METHODS[terms.method].reamortise(terms, rest)


def _rest_fractions(rest: Remaining, day_count: DayCount) -> tuple[YearFraction, ...]:
    fractions = period_fractions(rest.start, rest.dues, day_count)
    if rest.first_interest_paid:
        return ((0, 1), *fractions[1:])
    return fractions


def _equal_installment_rest(terms: Terms, rest: Remaining) -> Reamortised:
    """The level payment is kept (shorten-term) or worked out again on the balance."""
    fractions = _rest_fractions(rest, terms.day_count)
    periods = len(rest.dues)
    level = (
        rest.level
        if rest.shorten
        else int(annuity_payment(rest.balance, terms.annual_rate, periods))
    )
    principals, interests = level_parts(rest.balance, terms.annual_rate, fractions, level)
    keep = len(principals)  # a kept payment repays the balance sooner: drop the empty periods
    while keep > 1 and principals[keep - 1] == 0:
        keep -= 1
    return Reamortised(principals[:keep], interests[:keep], level)


def _even_rest(terms: Terms, rest: Remaining) -> Reamortised:
    """Equal principal parts: the regular part kept, over fewer periods (shorten-term), or the
    balance split evenly over the same periods."""
    balance, periods, part = rest.balance, len(rest.dues), rest.regular_part
    if rest.shorten and part:
        count = min(max(-(-balance // part), 1), periods)
        principals = (part,) * (count - 1) + (balance - part * (count - 1),)
    else:
        principals = tuple(balance // periods for _ in range(periods - 1))
        principals += (balance - sum(principals),)
    return _rest_on_balances(terms, rest, principals, terms.day_count)


def _interest_only_rest(terms: Terms, rest: Remaining) -> Reamortised:
    return _rest_at_maturity(terms, rest, terms.day_count)


def _bullet_rest(terms: Terms, rest: Remaining) -> Reamortised:
    # A bullet's interest runs on actual days (see _bullet), even on a 30/360 product.
    actual = DayCount.ACT_360 if terms.day_count is DayCount.THIRTY_360 else terms.day_count
    return _rest_at_maturity(terms, rest, actual)


def _rest_at_maturity(terms: Terms, rest: Remaining, day_count: DayCount) -> Reamortised:
    """All the balance at maturity, whatever the mode: there is no regular part to keep."""
    principals = (0,) * (len(rest.dues) - 1) + (rest.balance,)
    return _rest_on_balances(terms, rest, principals, day_count)


def _rest_on_balances(
    terms: Terms, rest: Remaining, principals: tuple[int, ...], day_count: DayCount
) -> Reamortised:
    """Principal parts set in advance, interest on the balance."""
    fractions = _rest_fractions(rest, day_count)[: len(principals)]
    interests = interest_parts(rest.balance, terms.annual_rate, fractions, principals)
    return Reamortised(principals, interests, rest.level)


class _Repayment(NamedTuple):
    """One repayment method: how it lays out a plan, and the rest of one after a prepayment."""

    schedule: Callable[[Terms], Schedule]
    reamortise: Callable[[Terms, Remaining], Reamortised]


_METHODS: dict[Method, _Repayment] = {
    Method.EQUAL_INSTALLMENT: _Repayment(_equal_installment, _equal_installment_rest),
    Method.EQUAL_PRINCIPAL: _Repayment(_equal_principal, _even_rest),
    Method.INTEREST_ONLY: _Repayment(_interest_only, _interest_only_rest),
    Method.BULLET: _Repayment(_bullet, _bullet_rest),
    Method.FLAT_FEE: _Repayment(_flat_fee, _even_rest),
}
