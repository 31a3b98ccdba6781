"""A loan as a pure fold over its dated events (docs/design.md#the-fold).

``replay(terms, policy, events, as_of)`` starts from the schedule of the terms and applies every
event effective on or before ``as_of`` in date order, letting time pass between them: penalty
interest accrues on overdue amounts (accumulated-balance method, rounded once per installment) and
a credit balance is applied whenever an installment falls due. A backdated payment or a reversal is
just another event: replaying gives the corrected state.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum
from fractions import Fraction
from functools import cached_property, lru_cache
from operator import attrgetter
from typing import Any, NamedTuple, assert_never

from fenqi.domain.calendar import actual_days
from fenqi.domain.events import (
    Channel,
    CreditRefund,
    DebitFailed,
    Event,
    Payment,
    Prepayment,
    PrepayMode,
    Refund,
    Reversal,
    Waiver,
    WaiverKind,
    WriteOff,
)
from fenqi.domain.money import ZERO, Money, cut, half_up_fen
from fenqi.domain.products import (
    AllocationRule,
    Component,
    LateFee,
    PenaltyMode,
    PrepaymentInterest,
    Product,
    Stage,
    UnbilledFees,
)
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import (
    DayCount,
    Method,
    Terms,
    YearFraction,
    annuity_payment,
    interest_parts,
    level_parts,
    period_fractions,
    schedule,
)

# docs/domain.md#dpd-and-buckets: M0 current, M1 1-30 days past due, … M7 over 180.
BUCKET_DAYS = 30
LAST_BUCKET = 7
VALID_DAYS_AT_MOST = 31  # a payoff quote is never said to hold longer than a month
_DAY = timedelta(days=1)


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
        return _fen(sum((self.principal, self.interest, self.fee)))  # an int sum: no checks

    @property
    def paid(self) -> Money:
        return _fen(
            sum((self.paid_principal, self.paid_interest, self.paid_fee, self.paid_penalty))
        )

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

    # Cached: the batch, the books and the pages ask these of one state many times.
    @cached_property
    def dpd(self) -> int:
        return max((row.dpd for row in self.installments), default=0)

    @property
    def bucket(self) -> str:
        return bucket(self.dpd)

    @cached_property
    def outstanding_principal(self) -> Money:
        """All principal not yet repaid, due or not."""
        rows = self.installments
        return _fen(sum(row.principal for row in rows) - sum(row.paid_principal for row in rows))

    @cached_property
    def outstanding_interest(self) -> Money:
        """Interest fallen due and unpaid."""
        rows = [row for row in self.installments if row.billed]
        return _fen(sum(row.interest for row in rows) - sum(row.paid_interest for row in rows))

    @cached_property
    def outstanding_fee(self) -> Money:
        """Fees (late fees included) fallen due and unpaid."""
        rows = [row for row in self.installments if row.billed]
        charged = sum(row.fee for row in rows) + sum(row.late_fee for row in rows)
        return _fen(charged - sum(row.paid_fee for row in rows) - sum(r.waived_fee for r in rows))

    @cached_property
    def outstanding_penalty(self) -> Money:
        rows = self.installments
        paid = sum(row.paid_penalty for row in rows) + sum(row.waived_penalty for row in rows)
        return _fen(sum(row.penalty for row in rows) - paid)

    @cached_property
    def amount_due(self) -> Money:
        """What is owed now: every installment that has fallen due, less any credit balance."""
        owed = sum(row.outstanding for row in self.installments if row.billed)
        return _fen(max(owed - self.credit_balance, 0))


class LoanError(ValueError):
    """An event that cannot apply to the loan (the service refuses it before it is stored)."""


# ---------------------------------------------------------------------------------------------
# The fold. Working installments are mutable inside one replay only; what leaves is immutable.


class _Bill:
    __slots__ = (
        "accrued_to",
        "cleared_on",
        "done",
        "due",
        "fee",
        "interest",
        "late_assessed",
        "late_fee",
        "paid_fee",
        "paid_interest",
        "paid_penalty",
        "paid_principal",
        "penalty_days",
        "period",
        "principal",
        "waived_fee",
        "waived_penalty",
    )

    def __init__(self, period: int, due: date, principal: int, interest: int, fee: int) -> None:
        self.period, self.due = period, due
        self.principal, self.interest, self.fee = principal, interest, fee
        self.paid_principal = self.paid_interest = self.paid_fee = self.paid_penalty = 0
        self.waived_fee = self.waived_penalty = 0
        self.late_fee = 0
        self.late_assessed = False
        self.penalty_days = 0  # Σ overdue base × days: the accumulated balance (积数)
        self.accrued_to = due
        self.cleared_on: date | None = None
        self.done = False  # nothing more can ever be owed on it: allocation passes it by

    @staticmethod
    def restored(values: Sequence[Any]) -> _Bill:
        """The installment ``_bill_values`` saved (in the order of ``_BILL_FIELDS``)."""
        bill = _Bill.__new__(_Bill)
        (accrued_to, cleared_on, bill.done, due, bill.fee, bill.interest,
         bill.late_assessed, bill.late_fee, bill.paid_fee, bill.paid_interest, bill.paid_penalty,
         bill.paid_principal, bill.penalty_days, bill.period, bill.principal, bill.waived_fee,
         bill.waived_penalty) = values  # fmt: skip
        bill.due, bill.accrued_to = date.fromordinal(due), date.fromordinal(accrued_to)
        bill.cleared_on = None if cleared_on is None else date.fromordinal(cleared_on)
        return bill

    def unpaid(self, component: Component) -> int:
        """Unpaid principal, interest or fee (penalty needs a day: see _Fold.penalty_owed)."""
        if component is Component.PRINCIPAL:
            return self.principal - self.paid_principal
        if component is Component.INTEREST:
            return self.interest - self.paid_interest
        return self.fee + self.late_fee - self.paid_fee - self.waived_fee

    def pay(self, component: Component, amount: int) -> None:
        if component is Component.PRINCIPAL:
            self.paid_principal += amount
        elif component is Component.INTEREST:
            self.paid_interest += amount
        elif component is Component.FEE:
            self.paid_fee += amount
        else:
            self.paid_penalty += amount

    def scheduled_unpaid(self) -> int:
        """Unpaid principal, interest and fee together (the hottest question a replay asks)."""
        return (
            self.principal - self.paid_principal + self.interest - self.paid_interest
            + self.fee + self.late_fee - self.paid_fee - self.waived_fee
        )  # fmt: skip

    def unapply(self) -> int:
        """Takes back what was paid on principal, interest and fee; returns the amount."""
        taken = self.paid_principal + self.paid_interest + self.paid_fee
        self.paid_principal = self.paid_interest = self.paid_fee = 0
        self.cleared_on = None
        self.done = False
        return taken


_SCHEDULED = (Component.PRINCIPAL, Component.INTEREST, Component.FEE)
_PAID = {
    Component.PRINCIPAL: "paid_principal",
    Component.INTEREST: "paid_interest",
    Component.FEE: "paid_fee",
    Component.PENALTY: "paid_penalty",
}


_BILL_FIELDS = tuple(sorted(_Bill.__slots__))
_BILL_DATES = frozenset({"due", "accrued_to", "cleared_on"})
_bill_fields = attrgetter(*_BILL_FIELDS)
_DATE_AT = tuple(index for index, name in enumerate(_BILL_FIELDS) if name in _BILL_DATES)


def _bill_values(bill: _Bill) -> list[object]:
    """A working installment as JSON values, in ``_BILL_FIELDS`` order (dates as ordinals)."""
    values: list[object] = list(_bill_fields(bill))
    for index in _DATE_AT:
        if values[index] is not None:
            values[index] = values[index].toordinal()  # type: ignore[attr-defined]
    return values


class _Fold:
    """One replay's working state."""

    def __init__(self, terms: Terms, policy: Product, cap: Rate | None,
                 saved: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        """The fold at the start of the terms, or where a checkpoint ``saved`` it."""
        self.terms, self.policy = terms, policy
        self.allocations: dict[int, Allocation] = {}
        self.applied: list[Applied] | None = None  # what the payment being applied took
        self.payoffs: dict[int, PayoffBreakdown] = {}
        rate = _penalty_rate(terms, policy, cap)
        self.penalty_rate = rate.as_integer_ratio()
        self.grace = timedelta(days=policy.grace_days)
        self.past_due_rules = tuple(r for r in policy.allocation if r.stage is Stage.PAST_DUE)
        self.write_off: WrittenOff | None = None
        if saved is not None:
            self._restore(saved)
            return
        plan = schedule(terms)
        self.bills = [
            _Bill(k, due, principal, interest, fee)
            for k, (due, principal, interest, fee) in enumerate(
                zip(plan.due_dates, plan.principals, plan.interests, plan.fees, strict=True),
                start=1,
            )
        ]
        self.now = terms.start
        self.credit = 0
        self.cash_in: dict[Channel, int] = {}
        self.cash_out: dict[Channel, int] = {}
        self.merchant_refunds = 0
        self.priced_principal = int(terms.principal)
        self.level = int(annuity_payment(terms.principal, terms.annual_rate, terms.periods))
        self.regular_part = int(terms.principal) // terms.periods
        self.reamortised = False
        self.cancelled = False
        self.first_open = 0  # see _first_open
        self.failed_debits: dict[date, int] = {}
        self.recovered = 0

    # -- checkpoints ---------------------------------------------------------------------

    def saved(self) -> dict[str, object]:
        """The working state as plain JSON values (dates as ordinals). A payment's allocation
        and a payoff's breakdown are history, not working state: they are left out."""
        return {
            "now": self.now.toordinal(),
            "bills": [_bill_values(bill) for bill in self.bills],
            "credit": self.credit,
            "cash_in": {str(channel): amount for channel, amount in self.cash_in.items()},
            "cash_out": {str(channel): amount for channel, amount in self.cash_out.items()},
            "merchant_refunds": self.merchant_refunds,
            "priced_principal": self.priced_principal,
            "level": self.level,
            "regular_part": self.regular_part,
            "reamortised": self.reamortised,
            "cancelled": self.cancelled,
            "first_open": self.first_open,
            "failed_debits": [[due.toordinal(), n] for due, n in self.failed_debits.items()],
            "recovered": self.recovered,
        }

    def _restore(self, saved: Mapping[str, Any]) -> None:
        """Takes up the working state ``saved`` left (the inverse of ``saved``)."""
        self.bills = [_Bill.restored(values) for values in saved["bills"]]
        self.now = date.fromordinal(saved["now"])
        self.credit = saved["credit"]
        self.cash_in = {Channel(channel): amount for channel, amount in saved["cash_in"].items()}
        self.cash_out = {Channel(channel): amount for channel, amount in saved["cash_out"].items()}
        self.merchant_refunds = saved["merchant_refunds"]
        self.priced_principal = saved["priced_principal"]
        self.level, self.regular_part = saved["level"], saved["regular_part"]
        self.reamortised, self.cancelled = saved["reamortised"], saved["cancelled"]
        self.first_open = saved["first_open"]
        self.failed_debits = {date.fromordinal(due): n for due, n in saved["failed_debits"]}
        self.recovered = saved["recovered"]

    def state(self, as_of: date) -> LoanState:
        rows = tuple(self._installment(bill, as_of) for bill in self.bills)
        if self.cancelled:
            status = LoanStatus.CANCELLED
        elif all(row.status is InstallmentStatus.PAID for row in rows):
            status = LoanStatus.SETTLED
        elif self.write_off is not None:
            status = LoanStatus.WRITTEN_OFF
        elif any(row.dpd for row in rows):
            status = LoanStatus.OVERDUE
        else:
            status = LoanStatus.ACTIVE
        return LoanState(
            as_of=as_of,
            installments=rows,
            status=status,
            credit_balance=Money(self.credit),
            cash_in={channel: Money(amount) for channel, amount in self.cash_in.items()},
            cash_out={channel: Money(amount) for channel, amount in self.cash_out.items()},
            merchant_refunds=Money(self.merchant_refunds),
            allocations=dict(self.allocations),
            payoffs=dict(self.payoffs),
            failed_debits=dict(self.failed_debits),
            write_off=self.write_off,
            recovered=_fen(self.recovered),
        )

    def _installment(self, bill: _Bill, as_of: date) -> InstallmentState:
        penalty = self.penalty_accrued(bill, as_of)
        owed = bill.scheduled_unpaid() + penalty - bill.paid_penalty - bill.waived_penalty
        if owed <= 0:
            status, dpd = InstallmentStatus.PAID, 0
        elif bill.due > as_of:
            status, dpd = InstallmentStatus.FUTURE, 0
        elif as_of <= bill.due + self.grace:
            status, dpd = InstallmentStatus.DUE, 0
        else:
            status, dpd = InstallmentStatus.OVERDUE, (as_of - bill.due).days
        money = int.__new__
        return InstallmentState._make((  # positionally, in field order: the hottest constructor
            bill.period, bill.due, money(Money, bill.principal), money(Money, bill.interest),
            money(Money, bill.fee), money(Money, bill.late_fee), money(Money, penalty),
            money(Money, bill.paid_principal), money(Money, bill.paid_interest),
            money(Money, bill.paid_fee), money(Money, bill.paid_penalty),
            money(Money, bill.waived_fee), money(Money, bill.waived_penalty), status, dpd,
            money(Money, owed),
        ))  # fmt: skip

    # -- time ------------------------------------------------------------------------------

    def advance(self, day: date) -> None:
        """Lets time pass to ``day``: penalties accrue; on the way, a credit balance pays what
        falls due and an installment still unpaid when its grace ends takes its late fee. Time
        alone never writes a loan off: only a recorded ``WriteOff`` does."""
        if day <= self.now:
            return
        while (moment := self._next_moment(day)) is not None:
            self._accrue(moment)
            self.now = moment
            self._at(moment)
        self._accrue(day)
        self.now = day

    def _next_moment(self, day: date) -> date | None:
        """The first day after ``now`` and by ``day`` on which something happens besides
        accrual, or None."""
        moments = []
        if self.credit > 0:
            moments += [bill.due for bill in self.bills if self.now < bill.due <= day]
        if self.policy.late_fee is not None and self.write_off is None:
            moments += [bill.due + self.grace + _DAY for bill in self._lateable()]
        moments = [moment for moment in moments if self.now < moment <= day]
        return min(moments, default=None)

    def _lateable(self) -> list[_Bill]:
        return [bill for bill in self.bills[self._first_open() :]
                if not bill.late_assessed and bill.scheduled_unpaid() > 0]  # fmt: skip

    def _at(self, moment: date) -> None:
        """What happens on ``moment`` itself, before any event of that day."""
        late_fee = self.policy.late_fee
        if late_fee is not None and self.write_off is None:
            for bill in self._lateable():
                if bill.due + self.grace + _DAY == moment:
                    bill.late_assessed = True
                    bill.late_fee = _late_fee(late_fee, bill.scheduled_unpaid())
        if self.credit > 0 and any(bill.due == moment for bill in self.bills):
            self._apply(moment, 0)

    def _first_open(self) -> int:
        """Index of the oldest installment that may still be owed something: the ones before it
        are done, and a long history need not walk past them again."""
        index = self.first_open
        while index < len(self.bills) and self.bills[index].done:
            index += 1
        self.first_open = index
        return index

    def _accrue(self, day: date) -> None:
        if self.write_off is not None:  # written off: no more interest on it (non-accrual)
            return
        by_interest = self.policy.penalty.mode is PenaltyMode.DAILY_RATE
        for bill in self.bills[self._first_open() :]:
            if bill.due >= day:
                break
            base = bill.principal - bill.paid_principal
            if by_interest:
                base += bill.interest - bill.paid_interest
            if day > bill.accrued_to:
                if base > 0:
                    bill.penalty_days += base * (day - bill.accrued_to).days
                bill.accrued_to = day

    def penalty_accrued(self, bill: _Bill, day: date) -> int:
        """Penalty interest on ``bill`` through ``day``: none inside the grace period, none if
        it was paid in full within it; otherwise from the day after the due date. The fold has
        accrued through ``day`` already (``advance``)."""
        if day <= bill.due + self.grace or self.cancelled:
            return 0
        if bill.cleared_on is not None and bill.cleared_on <= bill.due + self.grace:
            return 0
        rate_n, rate_d = self.penalty_rate
        return half_up_fen(bill.penalty_days * rate_n, rate_d)

    def owed(self, bill: _Bill, component: Component, day: date) -> int:
        if component is Component.PENALTY:
            return self.penalty_accrued(bill, day) - bill.paid_penalty - bill.waived_penalty
        return bill.unpaid(component)

    def _mark_cleared(self, day: date) -> None:
        for bill in self.bills:
            if bill.cleared_on is None and bill.scheduled_unpaid() == 0:
                bill.cleared_on = day

    # -- allocation --------------------------------------------------------------------------

    def _current(self, day: date) -> int:
        """Index of the installment a payment on ``day`` is due for (the first due on or after
        it: on its due date an installment is due, not past due); len(bills) after maturity."""
        return bisect_left(self.bills, day, key=_due)

    def _accruing(self, day: date) -> int:
        """Index of the installment whose period's interest runs on ``day`` (the first due
        after it): interest of the period ending on due date D runs up to D, and from D on it is
        the next period's. len(bills) after maturity."""
        return bisect_right(self.bills, day, key=_due)

    def _allocate(self, day: date, amount: int, rules: Sequence[AllocationRule],
                  current: int | None = None) -> int:  # fmt: skip
        """Applies ``amount`` by ``rules``; returns what no rule took. Installments before
        ``current`` (default: the one due on ``day``) are past due.

        Past-due and due rules take their component from every installment of their stage,
        oldest first. In advance, installments are filled one at a time, oldest first, each by the
        advance rules' component order: paying ahead pays the next installment.
        """
        if amount <= 0:
            return amount
        if current is None:
            current = self._current(day)
        for stage, components in _stages(tuple(rules)):
            if stage is Stage.ADVANCE:
                amount = self._pay_ahead(day, amount, current, components)
            else:
                start, end = (
                    (self._first_open(), current)
                    if stage is Stage.PAST_DUE
                    else (current, current + 1)
                )
                bills = [bill for bill in self.bills[start:end] if not bill.done]
                for component in components:
                    for bill in bills:
                        amount = self._take(bill, component, day, amount)
                    if amount <= 0:
                        return amount
        return amount

    def _pay_ahead(self, day: date, amount: int, current: int,
                   components: tuple[Component, ...]) -> int:  # fmt: skip
        for bill in self.bills[current + 1 :]:
            if bill.done:
                continue
            for component in components:
                amount = self._take(bill, component, day, amount)
            if amount <= 0:
                break
        return amount

    def _take(self, bill: _Bill, component: Component, day: date, amount: int) -> int:
        if amount <= 0:
            return amount
        share = min(self.owed(bill, component, day), amount)
        if share > 0:
            bill.pay(component, share)
            amount -= share
            if self.applied is not None:
                self.applied.append(Applied(bill.period, component, _fen(share)))
            if self.write_off is not None:
                self.recovered += share
            if bill.cleared_on is None and bill.scheduled_unpaid() == 0:
                bill.cleared_on = day
            if bill.cleared_on is not None:
                # Cleared, its principal no longer accrues penalty: once that is paid too, done.
                bill.done = self.owed(bill, Component.PENALTY, day) == 0
        return amount

    def _apply(self, day: date, amount: int) -> None:
        """Applies new money and any credit balance by the product's rules."""
        self.credit = self._allocate(day, self.credit + amount, self.policy.allocation)

    # -- events ------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Lets time pass to the event's day and applies it; every kind of event is handled
        here, so a new one cannot be passed by without a word."""
        self.advance(event.effective)
        if isinstance(event, Payment):
            self._payment(event)
        elif isinstance(event, Prepayment):
            self._prepayment(event)
        elif isinstance(event, Refund):
            self._refund(event)
        elif isinstance(event, Waiver):
            self._waiver(event)
        elif isinstance(event, DebitFailed):
            self.failed_debits[event.due_date] = max(
                self.failed_debits.get(event.due_date, 0), event.attempt
            )
        elif isinstance(event, CreditRefund):
            paid_back = min(int(event.amount), self.credit)
            self.credit -= paid_back
            self.cash_out[event.channel] = self.cash_out.get(event.channel, 0) + paid_back
        elif isinstance(event, WriteOff):
            self._write_off(event.effective)
        elif isinstance(event, Reversal):
            # A reversal voids its payment before the fold starts (``_run``): by its day the
            # payment was never applied, and there is nothing left to do.
            pass
        else:
            assert_never(event)

    def _write_off(self, day: date) -> None:
        """Takes the loan off the books as it stands: once only, and only while it owes
        something (a correction may since have settled or cancelled it before this day)."""
        if self.write_off is not None or self.cancelled:
            return
        state = self.state(day)
        if state.status is not LoanStatus.SETTLED:
            self.write_off = WrittenOff(day, state)

    def _receive(self, event: Prepayment) -> dict[tuple[int, Component], int]:
        # A prepayment rebuilds installments, so what it took is the difference it made.
        self.cash_in[event.channel] = self.cash_in.get(event.channel, 0) + event.amount
        return self._paid_snapshot()

    def _paid_snapshot(self) -> dict[tuple[int, Component], int]:
        return {
            (bill.period, part): getattr(bill, attribute)
            for bill in self.bills
            for part, attribute in _PAID.items()
        }

    def _record(self, event: Prepayment, before: dict[tuple[int, Component], int],
                credit_before: int) -> None:  # fmt: skip
        after = self._paid_snapshot()
        # Installments a payoff or a shorter term removed count too: what was paid ahead on
        # them and taken back is part of what the prepayment did, so the parts sum to it.
        changes = {key: after.get(key, 0) - before.get(key, 0) for key in [*before, *after]}
        applied = tuple(Applied(period, part, Money(change))
                        for (period, part), change in changes.items() if change)  # fmt: skip
        self.allocations[event.seq] = Allocation(applied, Money(self.credit - credit_before))

    def _payment(self, event: Payment) -> None:
        self.cash_in[event.channel] = self.cash_in.get(event.channel, 0) + event.amount
        credit_before, self.applied = self.credit, []
        self.credit = self._allocate(event.effective, self.credit + event.amount,
                                     self.policy.allocation)  # fmt: skip
        self.allocations[event.seq] = Allocation(
            tuple(self.applied), _fen(self.credit - credit_before)
        )
        self.applied = None

    def _waiver(self, event: Waiver) -> None:
        component = Component.PENALTY if event.kind is WaiverKind.PENALTY else Component.FEE
        left = int(event.amount)
        for bill in self.bills:
            share = min(self.owed(bill, component, event.effective), left)
            if share <= 0:
                continue
            if component is Component.PENALTY:
                bill.waived_penalty += share
            else:
                bill.waived_fee += share
            left -= share
        self._mark_cleared(event.effective)

    def _refund(self, event: Refund) -> None:
        self.first_open = 0  # installments are re-priced: look at all of them again
        day, amount = event.effective, int(event.amount)
        self.merchant_refunds += amount
        remaining = max(self.priced_principal - amount, 0)
        if self.write_off is not None:
            # Off the books the plan is not re-priced: the principal the returned goods stood
            # for is no longer owed, which the merchant's money recovers.
            self.recovered += self._reduce_principal(self.priced_principal - remaining)
        elif remaining == 0:
            self._cancel()
        elif self.reamortised:
            self._reduce_principal(self.priced_principal - remaining)
        else:
            self._reprice(remaining)
        self.priced_principal = remaining
        # What was overpaid first pays anything overdue; the rest goes back to the borrower.
        payout = self._allocate(day, self.credit, self.past_due_rules)
        if event.to_credit:
            self.credit = payout
        else:
            self.credit = 0
            self.cash_out[event.channel] = self.cash_out.get(event.channel, 0) + payout
        self._mark_cleared(day)

    def _cancel(self) -> None:
        """A full return: nothing is owed any more and everything paid goes back
        (docs/domain.md#merchant-refunds)."""
        for bill in self.bills:
            self.credit += bill.unapply() + bill.paid_penalty
            bill.principal = bill.interest = bill.fee = bill.late_fee = 0
            bill.paid_penalty = bill.waived_fee = bill.waived_penalty = bill.penalty_days = 0
        self.cancelled = True

    def _reprice(self, principal: int) -> None:
        """The plan as if the goods had cost ``principal``: fees and interest on the returned
        part go back with it (docs/domain.md#merchant-refunds); paid beyond the new amounts
        becomes credit."""
        plan = schedule(replace(self.terms, principal=Money(principal), upfront_fee=Money(0)))
        parts = zip(plan.principals, plan.interests, plan.fees, strict=True)
        for bill, (principal_k, interest_k, fee_k) in zip(self.bills, parts, strict=True):
            bill.principal, bill.interest, bill.fee = principal_k, interest_k, fee_k
            charged = (principal_k, interest_k, fee_k + bill.late_fee)
            for component, due in zip(_SCHEDULED, charged, strict=True):
                paid = getattr(bill, _PAID[component])
                if paid > due:
                    self.credit += paid - due
                    setattr(bill, _PAID[component], due)
            bill.waived_fee = min(bill.waived_fee, max(fee_k + bill.late_fee - bill.paid_fee, 0))

    def _reduce_principal(self, amount: int) -> int:
        """A refund once the plan was re-amortised or paid off, so that it can no longer be
        re-priced from its terms: the returned amount comes off the latest installments' unpaid
        principal, then off principal already paid, which goes back to the borrower. (Services
        refuse a partial refund of a partly prepaid plan that still owes principal: its future
        interest would not follow.) Returns how much unpaid principal it cancelled."""
        cancelled = 0
        for bill in reversed(self.bills):
            taken = min(bill.unpaid(Component.PRINCIPAL), amount)
            bill.principal -= taken
            amount -= taken
            cancelled += taken
        for bill in reversed(self.bills):
            back = min(bill.paid_principal, amount)
            bill.principal -= back
            bill.paid_principal -= back
            self.credit += back
            amount -= back
        return cancelled

    # -- early repayment -------------------------------------------------------------------

    def _prepayment(self, event: Prepayment) -> None:
        if self.write_off is not None:
            self._recovery(event)
            return
        self.first_open = 0  # installments are rebuilt: look at all of them again
        before, credit_before = self._receive(event), self.credit
        day = event.effective
        # What has fallen due by the day (on a due date, that day's installment too) is paid
        # first; what is prepaid starts the period the day's interest belongs to, so a
        # prepayment on a due date leaves the installment due that day paid and charges no
        # interest for a period of which no day has run.
        current = self._accruing(day)
        past_due = self._past_due(day, current)
        pool = self._allocate(day, self.credit + event.amount, self.past_due_rules, current)
        self.credit = 0
        # Paid in full when money is left, or when it was just enough (nothing past due left).
        settled_past_due = pool > 0 or not any(self._past_due(day, current).values())
        if not settled_past_due or current == len(self.bills):
            self.credit = self._allocate(day, pool, self.policy.allocation)
            if settled_past_due:
                self.payoffs[event.seq] = _breakdown(_NOTHING, past_due, credit_before)
            self._record(event, before, credit_before)
            return
        needs = self._payoff_needs(day, current)
        ahead = sum(bill.paid_principal + bill.paid_interest + bill.paid_fee
                    for bill in self.bills[current:])  # fmt: skip
        if pool + ahead >= needs.amount:  # a payoff: what was paid ahead goes towards it
            taken_back = sum(bill.unapply() for bill in self.bills[current:])
            self._settle(current, needs)
            self.credit = pool + taken_back - needs.amount
            self.payoffs[event.seq] = _breakdown(needs, past_due, credit_before + taken_back)
        else:
            # Installments paid in full ahead stay paid (she paid them; a prepayment never
            # reopens one): the principal prepaid comes off after them, as on their due date.
            start = self._first_owing(current)
            pool += sum(bill.unapply() for bill in self.bills[start:])
            if start == len(self.bills):
                self.credit = pool
            else:
                needs = self._payoff_needs(day, start)
                self.credit = self._partial(day, start, pool, event.mode, needs)
        self._mark_cleared(day)
        self.credit = self._allocate(day, self.credit, self.policy.allocation)
        self._record(event, before, credit_before)

    def _first_owing(self, current: int) -> int:
        """Index of the first installment from ``current`` on not yet paid in full."""
        index = current
        while index < len(self.bills) and self.bills[index].scheduled_unpaid() <= 0:
            index += 1
        return index

    def _past_due(self, day: date, end: int) -> dict[Component, int]:
        return {
            part: sum(max(self.owed(bill, part, day), 0) for bill in self.bills[:end])
            for part in Component
        }

    def _recovery(self, event: Prepayment) -> None:
        """In collection money pays the debt as it stands. Enough for all of it settles the
        plan: what has come due, and the principal not yet due without its interest or fees
        (nothing accrues on a written-off loan, as in a payoff nothing accrues past the day)."""
        day = event.effective
        due = bisect_right(self.bills, day, key=_due)
        owed = self._past_due(day, due)
        ahead = sum(bill.unpaid(Component.PRINCIPAL) for bill in self.bills[due:])
        if self.credit + event.amount < sum(owed.values()) + ahead:
            self._payment(Payment(event.seq, day, event.amount, event.channel))
            return
        before, credit_before = self._receive(event), self.credit
        pool = self.credit + event.amount
        for index, bill in enumerate(self.bills):
            if index >= due:
                bill.interest, bill.fee = bill.paid_interest, bill.paid_fee + bill.waived_fee
            for part in Component:
                pool = self._take(bill, part, day, pool)
        self.credit = pool
        settles = _NOTHING._replace(principal=Money(ahead))
        self.payoffs[event.seq] = _breakdown(settles, owed, credit_before)
        self._record(event, before, credit_before)

    def _period_start(self, current: int) -> date:
        return self.bills[current - 1].due if current else self.terms.start

    def _whole_period(self, day: date, current: int) -> bool:
        """Whether a prepayment on ``day`` pays the whole current period's interest: when the
        product says so, once a day of the period has run (on its first day, none has)."""
        return (
            self.policy.prepayment_interest is PrepaymentInterest.PERIOD
            and day > self._period_start(current)
        )

    def _interest_to(self, day: date, current: int, balance: int) -> int:
        """Interest for the current period up to ``day``, or the whole period, by policy."""
        if self._whole_period(day, current):
            return self.bills[current].interest
        rate_n, rate_d = self.terms.annual_rate.as_integer_ratio()
        basis = 365 if self.terms.day_count is DayCount.ACT_365 else 360
        days = max(actual_days(self._period_start(current), day), 0)  # none before it starts
        return half_up_fen(balance * rate_n * days, rate_d * basis)

    def _payoff_needs(self, day: date, current: int) -> PayoffBreakdown:
        """What settles the installments from ``current`` on, once past-due ones are paid and
        anything paid on them in advance has been taken back into the pool."""
        rest = self.bills[current:]
        balance = sum(bill.principal for bill in rest)
        charge = self.policy.unbilled_fees_on_payoff is UnbilledFees.CHARGE
        fees = sum(bill.fee - bill.waived_fee for bill in rest) if charge else 0
        rate_n, rate_d = self.policy.prepayment_fee_rate.as_integer_ratio()
        return PayoffBreakdown(
            principal=Money(balance),
            interest=Money(self._interest_to(day, current, balance)),
            fee=Money(fees),
            penalty=Money(0),
            prepayment_fee=Money(half_up_fen(balance * rate_n, rate_d)),
            credit_applied=Money(0),
        )

    def _settle(self, current: int, needs: PayoffBreakdown) -> None:
        """Pays everything off on ``day``: the current installment takes all that is left."""
        bill = self.bills[current]
        bill.principal = needs.principal
        bill.interest = needs.interest
        bill.fee = needs.fee + needs.prepayment_fee
        bill.waived_fee = 0
        bill.paid_principal, bill.paid_interest = bill.principal, bill.interest
        bill.paid_fee = bill.fee
        del self.bills[current + 1 :]
        self.reamortised = True

    def _partial(self, day: date, current: int, pool: int, mode: PrepayMode,
                 needs: PayoffBreakdown) -> int:  # fmt: skip
        """Repays part of the principal early and re-amortises the rest; returns what is left."""
        interest = int(needs.interest)
        if pool <= interest:  # not even the interest to date: an ordinary payment
            return pool
        rate = self.policy.prepayment_fee_rate
        # What is left after the interest pays the principal and its fee: X + X·rate.
        affordable = cut((pool - interest) * rate.denominator, rate.denominator + rate.numerator)
        prepaid = min(int(affordable), int(needs.principal))
        fee = half_up_fen(prepaid * rate.numerator, rate.denominator)
        self._reamortise(day, current, int(needs.principal) - prepaid, mode, interest)
        bill = self.bills[current]
        bill.principal += prepaid
        bill.fee += fee
        bill.paid_principal += prepaid
        bill.paid_interest += interest
        bill.paid_fee += fee
        self.reamortised = True
        return pool - prepaid - interest - fee

    def _reamortise(self, day: date, current: int, balance: int, mode: PrepayMode,
                    interest_paid: int) -> None:  # fmt: skip
        """New principal and interest parts for the installments from ``current`` on, for
        ``balance`` still to repay from ``day``; the current one keeps ``interest_paid``."""
        rest = self.bills[current:]
        dues = [bill.due for bill in rest]
        start = max(day, self._period_start(current))  # after installments paid ahead in full
        fractions = list(period_fractions(start, dues, self._accrual_day_count()))
        if self._whole_period(day, current):
            fractions[0] = (0, 1)  # the whole current period's interest is paid already
        principals, interests = self._parts(balance, fractions, mode, len(rest))
        for bill, principal, interest in zip(rest, principals, interests, strict=False):
            bill.principal, bill.interest = principal, interest
        rest[0].interest += interest_paid
        shortened = len(principals)
        if shortened < len(rest):
            self._drop_fees(rest[shortened:], rest[shortened - 1])
            del self.bills[current + shortened :]

    def _accrual_day_count(self) -> DayCount:
        if self.terms.method is Method.BULLET and self.terms.day_count is DayCount.THIRTY_360:
            return DayCount.ACT_360
        return self.terms.day_count

    def _parts(self, balance: int, fractions: list[YearFraction], mode: PrepayMode,
               periods: int) -> tuple[tuple[int, ...], tuple[int, ...]]:  # fmt: skip
        rate, method = self.terms.annual_rate, self.terms.method
        shorten = mode is PrepayMode.SHORTEN_TERM
        if method is Method.EQUAL_INSTALLMENT:
            if not shorten:
                self.level = int(annuity_payment(balance, rate, periods))
            principals, interests = level_parts(balance, rate, fractions, self.level)
            return _trim(principals, interests)
        if method in (Method.INTEREST_ONLY, Method.BULLET):
            principals = (0,) * (periods - 1) + (balance,)
        elif shorten and self.regular_part:
            count = min(max(-(-balance // self.regular_part), 1), periods)
            principals = (self.regular_part,) * (count - 1)
            principals += (balance - self.regular_part * (count - 1),)
        else:
            principals = tuple(balance // periods for _ in range(periods - 1))
            principals += (balance - sum(principals),)
        return principals, interest_parts(balance, rate, fractions[: len(principals)], principals)

    def _drop_fees(self, dropped: list[_Bill], last: _Bill) -> None:
        """Installments a shorter term no longer needs: their fees are waived, or moved to the
        new last installment, by policy."""
        if self.policy.unbilled_fees_on_payoff is UnbilledFees.CHARGE:
            last.fee += sum(bill.fee - bill.waived_fee for bill in dropped)


_NOTHING = PayoffBreakdown(Money(0), Money(0), Money(0), Money(0), Money(0), Money(0))


def _breakdown(
    needs: PayoffBreakdown, past_due: Mapping[Component, int], credit: int
) -> PayoffBreakdown:
    """The whole payoff: the past-due amounts by component, then what settles the rest."""
    return PayoffBreakdown(
        principal=Money(needs.principal + past_due[Component.PRINCIPAL]),
        interest=Money(needs.interest + past_due[Component.INTEREST]),
        fee=Money(needs.fee + past_due[Component.FEE]),
        penalty=Money(past_due[Component.PENALTY]),
        prepayment_fee=needs.prepayment_fee,
        credit_applied=Money(credit),
    )


def _trim(principals: tuple[int, ...], interests: tuple[int, ...]) -> tuple[
    tuple[int, ...], tuple[int, ...]
]:  # fmt: skip
    """Drops the periods a shorter term no longer needs (nothing left to repay in them)."""
    keep = len(principals)
    while keep > 1 and principals[keep - 1] == 0:
        keep -= 1
    return principals[:keep], interests[:keep]


@lru_cache(maxsize=64)
def _stages(rules: tuple[AllocationRule, ...]) -> tuple[tuple[Stage, tuple[Component, ...]], ...]:
    """The rules as runs of one stage each, in order: (past-due, (penalty, fee, …)), …; each
    stage's installments are found once per run instead of once per rule."""
    runs: list[tuple[Stage, list[Component]]] = []
    for rule in rules:
        if runs and runs[-1][0] is rule.stage:
            runs[-1][1].append(rule.component)
        else:
            runs.append((rule.stage, [rule.component]))
    return tuple((stage, tuple(components)) for stage, components in runs)


def _due(bill: _Bill) -> date:
    return bill.due


def _fen(amount: int) -> Money:
    """An int the fold computed exactly, typed as Money without re-checking it."""
    return int.__new__(Money, amount)


def _penalty_rate(terms: Terms, policy: Product, cap: Rate | None) -> Fraction:
    """The daily penalty rate: the contract rate × multiplier over the year's days, or a flat
    daily rate (docs/domain.md#penalty-interest); never more than the product's APR cap over
    the year's days, so that what an overdue amount costs stays within the cap."""
    penalty = policy.penalty
    basis = 365 if terms.day_count is DayCount.ACT_365 else 360
    if penalty.mode is PenaltyMode.DAILY_RATE:
        rate = penalty.daily_rate
    else:
        rate = terms.annual_rate * penalty.multiplier / basis
    return rate if cap is None else min(rate, cap / basis)


def _late_fee(fee: LateFee, overdue: int) -> int:
    """The one-time late fee on an overdue amount: its rate, within the floor and the cap."""
    amount = half_up_fen(overdue * fee.rate.numerator, fee.rate.denominator)
    amount = max(amount, int(fee.floor))
    return amount if fee.cap is None else min(amount, int(fee.cap))


# ---------------------------------------------------------------------------------------------
# The public functions.


def replay(
    terms: Terms, policy: Product, events: Iterable[Event], as_of: date, cap: Rate | None = None
) -> LoanState:
    """The loan as of ``as_of``: its terms, with every event effective by then applied.
    ``cap`` is the product's APR cap on the contract date, which penalty interest stays under.
    (``replay_to_checkpoint`` replays from a checkpoint, and keeps one.)"""
    return _run(terms, policy, events, as_of, cap).state(as_of)


def _run(
    terms: Terms,
    policy: Product,
    events: Iterable[Event],
    as_of: date,
    cap: Rate | None = None,
    *,
    since: Checkpoint | None = None,
) -> _Fold:
    known = [event for event in events if event.effective <= as_of]
    if since is not None and not resumable(since, known, as_of):
        raise ValueError(f"a replay cannot resume at {since.day} with these events")
    fold = _Fold(terms, policy, cap, None if since is None else since.fold)
    voided = {event.payment_seq for event in known if isinstance(event, Reversal)}
    live = sorted(
        (e for e in known if not isinstance(e, Reversal) and e.seq not in voided),
        key=lambda event: (event.effective, event.seq),
    )
    for event in live:
        fold.apply(event)
    fold.advance(as_of)
    return fold


# ---------------------------------------------------------------------------------------------
# Checkpoints: a long history need not be replayed from the start every night.

CHECKPOINT_VERSION = 2  # bumped whenever the fold's working state or its rules change


@dataclass(frozen=True)
class Checkpoint:
    """The fold's working state on ``day`` with every event up to ``seq`` applied (and none
    after it). A replay that starts here, given only the later events, comes to the same state
    as one from the start (a payment's allocation is kept only for the later events)."""

    day: date
    seq: int
    fold: Mapping[str, Any]

    def document(self) -> dict[str, object]:
        return {"version": CHECKPOINT_VERSION, "day": self.day.toordinal(), "seq": self.seq,
                "fold": dict(self.fold)}  # fmt: skip

    @staticmethod
    def from_document(document: Mapping[str, Any] | None) -> Checkpoint | None:
        """The checkpoint a document holds; None for none, or one an older fold wrote."""
        if not document or document.get("version") != CHECKPOINT_VERSION:
            return None
        return Checkpoint(date.fromordinal(document["day"]), document["seq"], document["fold"])


def resumable(since: Checkpoint, later: Iterable[Event], as_of: date) -> bool:
    """Whether a replay to ``as_of`` may start at ``since`` with ``later`` (the events recorded
    after it): not if it would have to go back, to an earlier day or to undo a payment."""
    return as_of >= since.day and all(
        event.effective >= since.day and not isinstance(event, Reversal) for event in later
    )


def replay_to_checkpoint(
    terms: Terms,
    policy: Product,
    events: Sequence[Event],
    as_of: date,
    cap: Rate | None = None,
    *,
    since: Checkpoint | None = None,
) -> tuple[LoanState, Checkpoint | None]:
    """``replay`` (from ``since``, if given, with the events after it), and a checkpoint of the
    result for the next replay to start from. None when one would not serve: an event is dated
    after ``as_of``, or the loan is written off (its state that day is history, kept whole)."""
    fold = _run(terms, policy, events, as_of, cap, since=since)
    last = max([event.seq for event in events] + [0 if since is None else since.seq])
    if fold.write_off is not None or any(event.effective > as_of for event in events):
        return fold.state(as_of), None
    return fold.state(as_of), Checkpoint(as_of, last, fold.saved())


class PayoffQuote(NamedTuple):
    """What paying the plan off on ``day`` costs, and through which day that amount holds."""

    day: date
    breakdown: PayoffBreakdown
    valid_through: date

    @property
    def amount(self) -> Money:
        return self.breakdown.amount


_UNLIMITED = Money(10**15)  # more than any plan can owe: the probe's surplus is discarded


def payoff_on(
    terms: Terms, policy: Product, events: Sequence[Event], day: date, cap: Rate | None = None
) -> PayoffBreakdown:
    """What a full prepayment on ``day`` would settle.

    It is worked out by the very fold that applies a real payoff (a probe prepayment of more than
    any plan can owe), so the quote and the payoff agree to the fen.
    """
    seq = max((event.seq for event in events), default=0) + 1
    probe = Prepayment(seq, day, _UNLIMITED, Channel.MANUAL, PrepayMode.REDUCE_INSTALLMENT, True)
    return _run(terms, policy, [*events, probe], day, cap).payoffs.get(seq, _NOTHING)


def payoff_quote(
    terms: Terms, policy: Product, events: Sequence[Event], day: date, cap: Rate | None = None
) -> PayoffQuote:
    """A payoff quote: its amount and breakdown on ``day``, valid through the last day before the
    amount changes (interest accrues daily, or the period turns), at most a month."""
    breakdown = payoff_on(terms, policy, events, day, cap)
    valid_through = day
    for days in range(1, VALID_DAYS_AT_MOST):
        later = day + timedelta(days=days)
        if payoff_on(terms, policy, events, later, cap).amount != breakdown.amount:
            break
        valid_through = later
    return PayoffQuote(day, breakdown, valid_through)
