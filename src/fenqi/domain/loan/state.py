"""What a replay hands out: the loan as of a day, as immutable values.

The fold works on mutable installments (``working``); nothing mutable ever leaves it. These are
the values the services, the books, the batch and the pages read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

from fenqi.domain.events import Channel
from fenqi.domain.money import ZERO, Money
from fenqi.domain.products import Component

# docs/domain.md#dpd-and-buckets: M0 current, M1 1-30 days past due, … M7 over 180.
BUCKET_DAYS = 30
LAST_BUCKET = 7


class InstallmentStatus(StrEnum):
    PAID = "paid"
    DUE = "due"  # fallen due, inside the grace period
    OVERDUE = "overdue"  # unpaid after the grace period: DPD count from the day after the due date
    FUTURE = "future"


class LoanStatus(StrEnum):
    ACTIVE = "active"
    OVERDUE = "overdue"
    SETTLED = "settled"
    CANCELLED = "cancelled"
    WRITTEN_OFF = "written_off"  # 核销: off the books at the write-off DPD; payments are recoveries


def bucket(dpd: int) -> str:
    """The delinquency bucket of a number of days past due: M0 … M7."""
    if dpd <= 0:
        return "M0"
    return f"M{min((dpd - 1) // BUCKET_DAYS + 1, LAST_BUCKET)}"


def fen(amount: int) -> Money:
    """An int the fold computed exactly, typed as Money without re-checking it."""
    return int.__new__(Money, amount)


class Applied(NamedTuple):
    """Part of a money movement that went to one component of one installment."""

    period: int
    component: Component
    amount: Money


class Allocation(NamedTuple):
    """How one payment was applied, net: to installments, and what was left as credit."""

    applied: tuple[Applied, ...]
    to_credit: Money

    def total(self, component: Component) -> Money:
        return Money(sum(part.amount for part in self.applied if part.component is component))


class PayoffBreakdown(NamedTuple):
    """What paying the whole plan off on a day takes (docs/domain.md#payoff)."""

    principal: Money  # all unpaid principal, past due or not
    interest: Money  # past-due interest, and interest to the day (or the whole current period)
    fee: Money  # past-due fees, and unbilled fees when the product charges them
    penalty: Money  # penalty interest accrued and unpaid
    prepayment_fee: Money  # the early-repayment fee (提前还款手续费) on the prepaid principal
    credit_applied: Money  # the borrower's credit balance (and money paid ahead), used first

    @property
    def gross(self) -> Money:
        parts = (self.principal, self.interest, self.fee, self.penalty, self.prepayment_fee)
        return Money(sum(parts))

    @property
    def amount(self) -> Money:
        """What the borrower pays: everything, less what she already has with us."""
        return Money(max(self.gross - self.credit_applied, 0))


# A prepayment that settled nothing beyond what was past due (or a quote with nothing to settle).
NO_PAYOFF = PayoffBreakdown(Money(0), Money(0), Money(0), Money(0), Money(0), Money(0))


class InstallmentState(NamedTuple):
    """One installment as of a day: what it asks for, what has been paid and forgiven, status."""

    period: int
    due_date: date
    principal: Money
    interest: Money
    fee: Money
    late_fee: (
        Money  # the one-time fee (滞纳金) charged when it fell overdue, if the product has one
    )
    penalty: Money  # accrued to the day (0 inside the grace period, or when paid within it)
    paid_principal: Money
    paid_interest: Money
    paid_fee: Money
    paid_penalty: Money
    waived_fee: Money
    waived_penalty: Money
    status: InstallmentStatus
    dpd: int

    outstanding: Money  # charged (payment, late fee, penalty) less paid and waived

    @property
    def payment(self) -> Money:
        """The scheduled payment: principal + interest + fee."""
        return fen(sum((self.principal, self.interest, self.fee)))  # an int sum: no checks

    @property
    def paid(self) -> Money:
        return fen(sum((self.paid_principal, self.paid_interest, self.paid_fee, self.paid_penalty)))

    @property
    def charged_fee(self) -> Money:
        """The installment's fee and the late fee (滞纳金) charged when it fell overdue."""
        return fen(self.fee + self.late_fee)

    # What is still owed of each part: charged, less paid and waived. The four add up to
    # ``outstanding``, and a plan's summary is their sum over its rows (``LoanState``).
    @property
    def outstanding_principal(self) -> Money:
        return fen(self.principal - self.paid_principal)

    @property
    def outstanding_interest(self) -> Money:
        return fen(self.interest - self.paid_interest)

    @property
    def outstanding_fee(self) -> Money:
        """The installment's fee and its late fee (滞纳金), less what was paid and waived."""
        return fen(self.charged_fee - self.paid_fee - self.waived_fee)

    @property
    def outstanding_penalty(self) -> Money:
        return fen(self.penalty - self.paid_penalty - self.waived_penalty)

    @property
    def billed(self) -> bool:
        """Whether its interest and fee are receivable yet (its due date has come)."""
        return self.status is not InstallmentStatus.FUTURE


class WrittenOff(NamedTuple):
    """The day a loan was written off (a recorded ``WriteOff`` event) and its state at that
    moment, whose receivables left the books."""

    day: date
    state: LoanState


@dataclass(frozen=True)
class LoanState:
    """A loan as of a day, derived from its terms and events."""

    as_of: date
    installments: tuple[InstallmentState, ...]
    status: LoanStatus
    credit_balance: Money
    cash_in: Mapping[Channel, Money]  # received from the borrower, net of reversals
    cash_out: Mapping[Channel, Money]  # paid back to the borrower (refunds)
    merchant_refunds: Money
    allocations: Mapping[int, Allocation]  # by the seq of each payment and prepayment
    payoffs: Mapping[int, PayoffBreakdown]  # by the seq of each prepayment, what it settled
    failed_debits: Mapping[date, int] = field(default_factory=dict)  # due date -> attempts
    write_off: WrittenOff | None = None
    recovered: Money = ZERO  # applied to the loan after it was written off
    # By the seq of each credit refund, what it paid back as the loan now stands: once the
    # payment behind it is reversed, less than it was written for (nothing, or only part).
    credit_refunds: Mapping[int, Money] = field(default_factory=dict)

    # Cached: the batch, the books and the pages ask these of one state many times.
    @cached_property
    def dpd(self) -> int:
        return max((row.dpd for row in self.installments), default=0)

    @property
    def bucket(self) -> str:
        return bucket(self.dpd)

    # The summary is the sum of the rows (what a page shows of each adds up to what it shows of
    # the plan): principal over every row, the rest over the rows fallen due.
    @cached_property
    def outstanding_principal(self) -> Money:
        """All principal not yet repaid, due or not."""
        return fen(sum(row.outstanding_principal for row in self.installments))

    @cached_property
    def outstanding_interest(self) -> Money:
        """Interest fallen due and unpaid."""
        return fen(sum(row.outstanding_interest for row in self.installments if row.billed))

    @cached_property
    def outstanding_fee(self) -> Money:
        """Fees (late fees included) fallen due and unpaid."""
        return fen(sum(row.outstanding_fee for row in self.installments if row.billed))

    @cached_property
    def outstanding_penalty(self) -> Money:
        """Penalty interest charged and neither paid nor waived."""
        return fen(sum(row.outstanding_penalty for row in self.installments if row.billed))

    # What was paid to the plan, part by part: the sums of its rows (the fee part holds late and
    # early-repayment fees), which a settled plan shows as what it really cost.
    @cached_property
    def paid_principal(self) -> Money:
        return fen(sum(row.paid_principal for row in self.installments))

    @cached_property
    def paid_interest(self) -> Money:
        return fen(sum(row.paid_interest for row in self.installments))

    @cached_property
    def paid_fee(self) -> Money:
        return fen(sum(row.paid_fee for row in self.installments))

    @cached_property
    def paid_penalty(self) -> Money:
        return fen(sum(row.paid_penalty for row in self.installments))

    @property
    def paid(self) -> Money:
        return fen(self.paid_principal + self.paid_interest + self.paid_fee + self.paid_penalty)

    @cached_property
    def amount_due(self) -> Money:
        """What is owed now: every installment that has fallen due, less any credit balance."""
        owed = sum(row.outstanding for row in self.installments if row.billed)
        return fen(max(owed - self.credit_balance, 0))
