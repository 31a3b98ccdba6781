"""Schedules per second for 12-period plans of each method, pure Python on one core.

fenqi's ``schedule`` (integer fen, exact integer ratios, cached calendars) is measured next to a
naive implementation of the same methods with ``Decimal`` (the way such code is usually first
written) in the same run, on the same terms, and the ratio is printed. Run by hand:

    .venv/bin/python bench/quote.py [--seconds 1.0]

Target (issue 2): at least 100,000 twelve-period equal-installment schedules per second.
"""

from __future__ import annotations

import argparse
import calendar
import time
from collections.abc import Callable
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import partial

from fenqi.domain.apr import apr
from fenqi.domain.money import Money
from fenqi.domain.schedule import Method, Terms, schedule

PERIODS = 12
START = date(2026, 1, 15)
CENT = Decimal("0.01")


def terms_for(method: Method, count: int) -> list[Terms]:
    """``count`` distinct plans: principals from 1,000.00 up, the start day spread over a month."""
    fee_based = method is Method.FLAT_FEE
    return [
        Terms(
            principal=Money(100_000 + 137 * k),
            periods=3 if method is Method.BULLET else PERIODS,
            method=method,
            start=date(2026, 1, 1 + k % 28),
            annual_rate=Fraction(0) if fee_based else Fraction(12, 100),
            fee_rate=Fraction(6, 1000) if fee_based else Fraction(0),
        )
        for k in range(count)
    ]


# --- the naive baseline: Decimal arithmetic, a dict per row, dates recomputed every time ---


def naive_add_months(start: date, months: int) -> date:
    month = start.month - 1 + months
    year = start.year + month // 12
    month = month % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def naive_schedule(terms: Terms) -> list[dict[str, object]]:
    principal = Decimal(int(terms.principal)) / 100
    n = terms.periods
    rate = Decimal(terms.annual_rate.numerator) / Decimal(terms.annual_rate.denominator)
    monthly = rate / 12
    fee_rate = Decimal(terms.fee_rate.numerator) / Decimal(terms.fee_rate.denominator)
    rows: list[dict[str, object]] = []
    balance = principal
    if terms.method is Method.BULLET:
        due = naive_add_months(terms.start, n)
        days = (due - terms.start).days
        interest = (principal * rate * days / 360).quantize(CENT, ROUND_HALF_UP)
        return [{"period": 1, "due_date": due, "principal": principal, "interest": interest}]
    payment = (
        (principal * monthly * (1 + monthly) ** n / ((1 + monthly) ** n - 1)).quantize(
            CENT, ROUND_HALF_UP
        )
        if monthly
        else principal / n
    )
    even = (principal / n).quantize(CENT, ROUND_DOWN)
    for k in range(1, n + 1):
        interest = (balance * monthly).quantize(CENT, ROUND_HALF_UP)
        fee = Decimal(0)
        if terms.method is Method.EQUAL_INSTALLMENT:
            part = payment - interest
        elif terms.method is Method.INTEREST_ONLY:
            part = Decimal(0)
        else:
            part = even
            if terms.method is Method.FLAT_FEE:
                fee = (principal * fee_rate).quantize(CENT, ROUND_HALF_UP)
        if k == n:
            part = balance
        balance -= part
        rows.append(
            {
                "period": k,
                "due_date": naive_add_months(terms.start, k),
                "principal": part,
                "interest": interest,
                "fee": fee,
                "payment": part + interest + fee,
                "balance": balance,
            }
        )
    return rows


# --- measurement ---


def rate_per_second(work: Callable[[Terms], object], plans: list[Terms], seconds: float) -> float:
    done, began = 0, time.perf_counter()
    while True:
        for terms in plans:
            work(terms)
        done += len(plans)
        elapsed = time.perf_counter() - began
        if elapsed >= seconds:
            return done / elapsed


def best_of(rounds: int, work: Callable[[], float]) -> float:
    """The best of several measurements: a shared machine only ever makes code look slower."""
    return max(work() for _ in range(rounds))


def quote_apr(terms: Terms) -> object:
    return apr(schedule(terms))


def with_rows(terms: Terms) -> object:
    """A schedule and its row view (Installment objects), as a bill page would show it."""
    return schedule(terms).installments


def check_agreement(plans: list[Terms]) -> None:
    """The baseline must compute the same payments, or the comparison means nothing."""
    for terms in plans[:50]:
        ours = [int(row.payment) for row in schedule(terms).installments]
        theirs = [
            int(Decimal(str(row.get("payment", row["principal"] + row["interest"]))) * 100)  # type: ignore[operator]
            for row in naive_schedule(terms)
        ]
        assert ours == theirs, (terms, ours, theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per figure (best kept)")
    options = parser.parse_args()
    seconds, rounds = options.seconds, options.rounds
    print(f"12-period schedules per second, one core (best of {rounds} x {seconds:.1f} s)")
    print(f"{'method':<19}{'fenqi':>10}{'+ rows':>10}{'naive Decimal':>15}{'ratio':>7}{'+ APR':>9}")
    for method in Method:
        plans = terms_for(method, 1_000)
        check_agreement(plans)
        ours, rows, naive, quoted = (
            best_of(rounds, partial(rate_per_second, work, plans, seconds))
            for work in (schedule, with_rows, naive_schedule, quote_apr)
        )
        print(
            f"{method.value:<19}{ours:>10,.0f}{rows:>10,.0f}{naive:>15,.0f}"
            f"{ours / naive:>6.1f}x{quoted:>9,.0f}"
        )
    print("fenqi: amounts per period in fen; + rows: also the Installment row view; ratio: fenqi")
    print("over naive Decimal; + APR: schedule and its IRR. Bullet plans have one installment.")


if __name__ == "__main__":
    main()
