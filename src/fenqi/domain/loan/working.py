"""The loan as one replay works on it: mutable installments and balances, inside a replay only.

Replaying a long history builds and changes installments thousands of times, so the fold works on
plain mutable ints here and turns them into immutable values (``state``) only when asked for a
state. Nothing here leaves a replay.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date, timedelta

from fenqi.domain.events import Channel
from fenqi.domain.loan.state import Allocation, Applied, PayoffBreakdown, WrittenOff
from fenqi.domain.products import AllocationRule, Component, Product, Stage
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import Terms, annuity_payment, schedule

SCHEDULED = (Component.PRINCIPAL, Component.INTEREST, Component.FEE)
PAID = {
    Component.PRINCIPAL: "paid_principal",
    Component.INTEREST: "paid_interest",
    Component.FEE: "paid_fee",
    Component.PENALTY: "paid_penalty",
}


class Bill:
    """One installment as the fold works on it, in fen."""

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

    def unpaid(self, component: Component) -> int:
        """Unpaid principal, interest or fee (penalty needs a day: see accrual.owed)."""
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


def _due(bill: Bill) -> date:
    return bill.due


class WorkingLoan:
    """One replay's working state: the terms and product it runs by, the installments, the
    balances, and the history a state reports (allocations, payoffs, the write-off).

    ``start`` makes one at the start of the terms and ``checkpoint.restore`` one where a
    checkpoint left it; both fill in the working fields declared below.
    """

    bills: list[Bill]
    now: date  # accrued through this day
    credit: int
    cash_in: dict[Channel, int]
    cash_out: dict[Channel, int]
    merchant_refunds: int
    priced_principal: int  # the principal the plan is priced on (less merchant refunds)
    level: int  # the level payment (equal-installment), re-set by a prepayment
    regular_part: int  # the regular principal part (equal-principal, flat-fee)
    reamortised: bool  # re-built by a prepayment: it can no longer be re-priced from its terms
    cancelled: bool
    first_open: int  # see oldest_open
    failed_debits: dict[date, int]
    recovered: int
    credit_refunds: dict[int, int]  # by the seq of each credit refund, what it paid back

    def __init__(self, terms: Terms, policy: Product, penalty_rate: Rate) -> None:
        self.terms, self.policy = terms, policy
        self.penalty_rate = penalty_rate.as_integer_ratio()
        self.grace = timedelta(days=policy.grace_days)
        self.past_due_rules: tuple[AllocationRule, ...] = tuple(
            rule for rule in policy.allocation if rule.stage is Stage.PAST_DUE
        )
        self.allocations: dict[int, Allocation] = {}
        self.applied: list[Applied] | None = None  # what the payment being applied took
        self.payoffs: dict[int, PayoffBreakdown] = {}
        self.write_off: WrittenOff | None = None

    def oldest_open(self) -> int:
        """Index of the oldest installment that may still be owed something: the ones before it
        are done, and a long history need not walk past them again."""
        index = self.first_open
        while index < len(self.bills) and self.bills[index].done:
            index += 1
        self.first_open = index
        return index

    def current(self, day: date) -> int:
        """Index of the installment a payment on ``day`` is due for (the first due on or after
        it: on its due date an installment is due, not past due); len(bills) after maturity."""
        return bisect_left(self.bills, day, key=_due)

    def accruing(self, day: date) -> int:
        """Index of the installment whose period's interest runs on ``day`` (the first due
        after it): interest of the period ending on due date D runs up to D, and from D on it is
        the next period's. len(bills) after maturity."""
        return bisect_right(self.bills, day, key=_due)

    def period_start(self, current: int) -> date:
        return self.bills[current - 1].due if current else self.terms.start

    def first_owing(self, current: int) -> int:
        """Index of the first installment from ``current`` on not yet paid in full."""
        index = current
        while index < len(self.bills) and self.bills[index].scheduled_unpaid() <= 0:
            index += 1
        return index

    def mark_cleared(self, day: date) -> None:
        for bill in self.bills:
            if bill.cleared_on is None and bill.scheduled_unpaid() == 0:
                bill.cleared_on = day

    def receive(self, channel: Channel, amount: int) -> None:
        self.cash_in[channel] = self.cash_in.get(channel, 0) + amount

    def pay_out(self, channel: Channel, amount: int) -> None:
        self.cash_out[channel] = self.cash_out.get(channel, 0) + amount

    def paid_snapshot(self) -> dict[tuple[int, Component], int]:
        """What has been paid on each component of each installment."""
        return {
            (bill.period, part): getattr(bill, attribute)
            for bill in self.bills
            for part, attribute in PAID.items()
        }


def start(terms: Terms, policy: Product, penalty_rate: Rate) -> WorkingLoan:
    """The loan on the day its terms start: its schedule, nothing paid."""
    loan = WorkingLoan(terms, policy, penalty_rate)
    plan = schedule(terms)
    loan.bills = [
        Bill(k, due, principal, interest, fee)
        for k, (due, principal, interest, fee) in enumerate(
            zip(plan.due_dates, plan.principals, plan.interests, plan.fees, strict=True), start=1
        )
    ]
    loan.now = terms.start
    loan.credit = 0
    loan.cash_in, loan.cash_out = {}, {}
    loan.merchant_refunds = 0
    loan.priced_principal = int(terms.principal)
    loan.level = int(annuity_payment(terms.principal, terms.annual_rate, terms.periods))
    loan.regular_part = int(terms.principal) // terms.periods
    loan.reamortised = False
    loan.cancelled = False
    loan.first_open = 0
    loan.failed_debits = {}
    loan.recovered = 0
    loan.credit_refunds = {}
    return loan
