"""What the nightly batch owes a loan on a business day (docs/design.md#the-business-day-batch,
docs/domain.md#close-of-business): whether to write it off, whether to debit it and how much,
and the next day it has any work at all.

Both read a replayed ``LoanState``; neither reads a clock or moves money.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import NamedTuple

from fenqi.domain.events import WriteOff
from fenqi.domain.loan import InstallmentStatus, LoanState, LoanStatus
from fenqi.domain.money import Money
from fenqi.domain.products import Product

CLOSED = (LoanStatus.SETTLED, LoanStatus.CANCELLED, LoanStatus.WRITTEN_OFF)
_DAY = timedelta(days=1)


class DebitPlan(NamedTuple):
    """An auto-debit to try: attempt ``attempt`` for the installment due on ``due_date`` (1 on
    the due date, then the product's retries), for everything due now."""

    due_date: date
    attempt: int
    amount: Money


def debit_due(state: LoanState, policy: Product, day: date) -> DebitPlan | None:
    """The debit the batch tries on ``day``, if any: on an installment's due date, and on each
    retry day after a failed attempt (a retry missed because the batch did not run is tried on
    the next day it does). Nothing is tried once all attempts failed, until the next due date."""
    if state.status in CLOSED or state.amount_due <= 0:
        return None
    offsets = (0, *policy.debit_retry_days)
    for row in state.installments:
        if row.due_date > day or row.outstanding <= 0:
            continue
        tried = state.failed_debits.get(row.due_date, 0)
        if tried < len(offsets) and row.due_date + timedelta(days=offsets[tried]) <= day:
            return DebitPlan(row.due_date, tried + 1, state.amount_due)
    return None


def write_off_due(state: LoanState, policy: Product, seq: int) -> WriteOff | None:
    """The write-off (numbered ``seq``) the batch records on the day of ``state``, the day it
    runs, if the loan is still open and its DPD has reached the product's write-off DPD. A
    correction that reaches back can put it past that DPD at once; the write-off is still dated
    the day the batch finds it so, never a day in the past."""
    if state.status in CLOSED or state.dpd < policy.write_off_dpd:
        return None
    reason = f"{state.dpd} days past due (write-off at {policy.write_off_dpd})"
    return WriteOff(seq, state.as_of, reason)


def next_action_date(state: LoanState, policy: Product, day: date) -> date | None:
    """The first day after ``day`` on which the batch has work on the loan, or None if it never
    will (settled, cancelled, written off: money that comes later is booked when it comes).

    While an installment is due and unpaid, every day has work (a retry, the end of grace, a
    late fee, penalty interest to book, a dunning stage, the write-off day); before that, the
    reminder day and the due date of the next unpaid installment."""
    if state.status in CLOSED:
        return None
    ahead: list[date] = []
    for row in state.installments:
        if row.status is InstallmentStatus.PAID:
            continue
        if row.due_date <= day:
            return day + _DAY
        reminder = row.due_date - timedelta(days=policy.reminder_days)
        ahead += [moment for moment in (reminder, row.due_date) if moment > day]
    return min(ahead, default=None)
