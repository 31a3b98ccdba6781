"""What time adds to a loan: penalty interest on overdue amounts and the one-time late fee.

Penalty interest uses the accumulated-balance method (积数): each day the overdue base is added
to a running sum, and the penalty is that sum times the daily rate, rounded once per installment,
so that however many events split the days the penalty comes to the same fen.
"""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

from fenqi.domain.loan.working import Bill, WorkingLoan
from fenqi.domain.money import half_up_fen
from fenqi.domain.products import Component, LateFee, PenaltyMode, Product
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import DayCount, Terms

_DAY = timedelta(days=1)


def daily_penalty_rate(terms: Terms, policy: Product, cap: Rate | None) -> Fraction:
    """The daily penalty rate: the contract rate × multiplier over the year's days, or a flat
    daily rate (docs/domain.md#penalty-interest); never more than the product's APR cap over the
    year's days, so that what an overdue amount costs stays within the cap."""
    penalty = policy.penalty
    basis = 365 if terms.day_count is DayCount.ACT_365 else 360
    if penalty.mode is PenaltyMode.DAILY_RATE:
        rate = penalty.daily_rate
    else:
        rate = terms.annual_rate * penalty.multiplier / basis
    return rate if cap is None else min(rate, cap / basis)


def accrue(loan: WorkingLoan, day: date) -> None:
    """Adds each overdue installment's base for the days up to ``day`` to its running sum."""
    if loan.write_off is not None:  # written off: no more interest on it (non-accrual)
        return
    by_interest = loan.policy.penalty.mode is PenaltyMode.DAILY_RATE
    for bill in loan.bills[loan.oldest_open() :]:
        if bill.due >= day:
            break
        base = bill.principal - bill.paid_principal
        if by_interest:
            base += bill.interest - bill.paid_interest
        if day > bill.accrued_to:
            if base > 0:
                bill.penalty_days += base * (day - bill.accrued_to).days
            bill.accrued_to = day


def penalty_accrued(loan: WorkingLoan, bill: Bill, day: date) -> int:
    """Penalty interest on ``bill`` through ``day``: none inside the grace period, none if it
    was paid in full within it; otherwise from the day after the due date. The loan has accrued
    through ``day`` already (``fold.advance``)."""
    if day <= bill.due + loan.grace or loan.cancelled:
        return 0
    if bill.cleared_on is not None and bill.cleared_on <= bill.due + loan.grace:
        return 0
    rate_n, rate_d = loan.penalty_rate
    return half_up_fen(bill.penalty_days * rate_n, rate_d)


def owed(loan: WorkingLoan, bill: Bill, component: Component, day: date) -> int:
    """What ``bill`` still owes of ``component`` on ``day``, less what was paid and waived."""
    if component is Component.PENALTY:
        return penalty_accrued(loan, bill, day) - bill.paid_penalty - bill.waived_penalty
    return bill.unpaid(component)


def lateable(loan: WorkingLoan) -> list[Bill]:
    """The installments that will take a late fee if still unpaid when their grace ends."""
    return [bill for bill in loan.bills[loan.oldest_open() :]
            if not bill.late_assessed and bill.scheduled_unpaid() > 0]  # fmt: skip


def late_fee_days(loan: WorkingLoan) -> list[date]:
    """The days on which an installment still unpaid would take its late fee (none when the
    product charges none, or once the loan is written off)."""
    if loan.policy.late_fee is None or loan.write_off is not None:
        return []
    return [bill.due + loan.grace + _DAY for bill in lateable(loan)]


def assess_late_fees(loan: WorkingLoan, moment: date) -> None:
    """Charges the late fee of every installment whose grace ended the day before ``moment``
    with something still unpaid."""
    late_fee = loan.policy.late_fee
    if late_fee is None or loan.write_off is not None:
        return
    for bill in lateable(loan):
        if bill.due + loan.grace + _DAY == moment:
            bill.late_assessed = True
            bill.late_fee = _late_fee(late_fee, bill.scheduled_unpaid())


def _late_fee(fee: LateFee, overdue: int) -> int:
    """The one-time late fee on an overdue amount: its rate, within the floor and the cap."""
    amount = half_up_fen(overdue * fee.rate.numerator, fee.rate.denominator)
    amount = max(amount, int(fee.floor))
    return amount if fee.cap is None else min(amount, int(fee.cap))
