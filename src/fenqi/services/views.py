"""What the services answer with: typed values of the domain's own types (money as ``Money``,
days as ``date``, states as their enums). How they are written out (JSON for the API and
``--json``, the pages' documents) is ``fenqi.wire``'s one job."""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from fenqi.domain.corrections import Consequences
from fenqi.domain.events import Channel, PrepayMode, WaiverKind
from fenqi.domain.loan import InstallmentState, LoanState, LoanStatus, PayoffQuote
from fenqi.domain.money import Money
from fenqi.domain.products import Component
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import Method
from fenqi.domain.withholding import Status
from fenqi.loans.aggregate import Loan
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.ports import History, JobRecord, RunRecord, User
from fenqi.loans.receipts import Receipt
from fenqi.services.policy import Role

# What the borrower was shown when she agreed to a plan, kept as it was shown then.
Shown = dict[str, Any]


@dataclass(frozen=True)
class LoanSummary:
    """A plan's order, terms and standing on ``as_of``."""

    id: int
    borrower_id: int
    order_id: str
    merchant: str
    item: str | None
    product: str
    principal: Money
    periods: int
    method: Method
    start: date
    as_of: date
    status: LoanStatus
    dpd: int
    bucket: str
    outstanding_principal: Money
    outstanding_interest: Money
    outstanding_fee: Money
    outstanding_penalty: Money
    credit_balance: Money
    amount_due: Money
    written_off_on: date | None
    recovered: Money

    @classmethod
    def of(cls, loan: Loan, state: LoanState) -> LoanSummary:
        terms = loan.terms
        return cls(
            id=loan.id, borrower_id=loan.borrower_id, order_id=loan.order_id,
            merchant=loan.merchant, item=loan.item, product=loan.product_code,
            principal=terms.principal, periods=terms.periods, method=terms.method,
            start=terms.start, as_of=state.as_of, status=state.status, dpd=state.dpd,
            bucket=state.bucket, outstanding_principal=state.outstanding_principal,
            outstanding_interest=state.outstanding_interest,
            outstanding_fee=state.outstanding_fee,
            outstanding_penalty=state.outstanding_penalty,
            credit_balance=state.credit_balance, amount_due=state.amount_due,
            written_off_on=None if state.write_off is None else state.write_off.day,
            recovered=state.recovered,
        )  # fmt: skip


@dataclass(frozen=True)
class LoanView:
    """A plan with every installment on ``as_of`` and what the borrower consented to (None for
    a plan made without a recorded offer, as the seeder's)."""

    summary: LoanSummary
    installments: tuple[InstallmentState, ...]
    consent: Shown | None
    paid: PaidParts

    @classmethod
    def of(cls, loan: Loan, state: LoanState, consent: Shown | None) -> LoanView:
        paid = PaidParts(state.paid_principal, state.paid_interest, state.paid_fee,
                         state.paid_penalty, state.paid)  # fmt: skip
        return cls(LoanSummary.of(loan, state), tuple(state.installments), consent, paid)


class PaidParts(NamedTuple):
    """What was paid to a plan, part by part and in all: what a settled plan really cost. (A
    payment's answer leaves it out: paid ahead, it moves with every later payment.)"""

    principal: Money
    interest: Money
    fee: Money
    penalty: Money
    total: Money


# The window of "due within a week" (近7日待还): today and the seven days after it.
WEEK_DAYS = 7


class ToRepay(NamedTuple):
    """One installment still to pay, on one of her plans: what it still needs and when."""

    loan_id: int
    merchant: str
    item: str | None
    period: int
    periods: int
    due_date: date
    amount: Money  # what it still owes: its payment, late fee and penalty less paid and waived
    status: str  # the installment's: future, due or overdue
    dpd: int


class MonthToRepay(NamedTuple):
    """What her installments due in one calendar month still owe (``month``: its first day)."""

    month: date
    amount: Money


@dataclass(frozen=True)
class Overview:
    """A borrower's plans on ``as_of`` and what she has to repay across them: her credit limit
    and what of it is available, each plan whole, and every installment still owed in due-date
    order (overdue ones first), with the sums a repayment page leads with: due within the week
    (近7日待还: due by ``as_of`` plus seven days), this month (本月待还: due by the month's last
    day) and all (全部待还: every installment still owed, as scheduled). Overdue installments are
    in every sum. A cancelled plan owes nothing; a written-off one is still owed."""

    borrower_id: int
    as_of: date
    credit_limit: Money
    available_limit: Money
    plans: tuple[LoanView, ...]
    outstanding_principal: Money
    amount_due: Money
    due_within_week: Money
    due_this_month: Money
    to_repay: Money
    installments: tuple[ToRepay, ...]
    months: tuple[MonthToRepay, ...]  # the repayment calendar's months, each with its sum

    @classmethod
    def of(cls, borrower_id: int, as_of: date, limits: tuple[Money, Money],
           plans: Sequence[LoanView]) -> Overview:  # fmt: skip
        owed = sorted(
            (ToRepay(plan.summary.id, plan.summary.merchant, plan.summary.item, row.period,
                     plan.summary.periods, row.due_date, row.outstanding, row.status.value,
                     row.dpd)
             for plan in plans if plan.summary.status is not LoanStatus.CANCELLED
             for row in plan.installments if row.outstanding > 0),
            key=lambda row: (row.due_date, row.loan_id, row.period),
        )  # fmt: skip
        month_end = as_of.replace(day=calendar.monthrange(as_of.year, as_of.month)[1])
        week_end = as_of + timedelta(days=WEEK_DAYS)

        def by(last: date | None) -> Money:
            return Money(sum(row.amount for row in owed if last is None or row.due_date <= last))

        return cls(
            borrower_id, as_of, *limits, tuple(plans),
            Money(sum(plan.summary.outstanding_principal for plan in plans)),
            Money(sum(plan.summary.amount_due for plan in plans)),
            by(week_end), by(month_end), by(None), tuple(owed), _by_month(owed),
        )  # fmt: skip


def _by_month(owed: Sequence[ToRepay]) -> tuple[MonthToRepay, ...]:
    """The sum of each calendar month's installments, in order (``owed`` is in due-date order)."""
    sums: dict[date, int] = {}
    for row in owed:
        month = row.due_date.replace(day=1)
        sums[month] = sums.get(month, 0) + row.amount
    return tuple(MonthToRepay(month, Money(amount)) for month, amount in sums.items())


def to_repay(state: LoanState) -> Money:
    """What is left to repay on a plan as scheduled: what every installment still owes."""
    return Money(sum(row.outstanding for row in state.installments))


class PrepaymentOutcome(NamedTuple):
    """What a partial prepayment would do in one mode: where the money goes, part by part, and
    the plan after it — its next installment, how many are left, the last due date, what is
    left to repay as scheduled, and what that saves against not prepaying (interest and fees
    not charged, less any early-repayment fee; never counting the prepayment itself)."""

    mode: PrepayMode
    principal: Money
    interest: Money
    fee: Money
    penalty: Money
    to_credit: Money
    outstanding_principal: Money
    next_due_date: date | None
    next_payment: Money
    installments_left: int
    last_due_date: date | None
    to_repay: Money
    saved: Money
    settles: bool

    @classmethod
    def of(cls, mode: PrepayMode, seq: int, amount: Money, owed_before: Money,
           after: LoanState) -> PrepaymentOutcome:  # fmt: skip
        """The outcome of prepayment ``seq`` of ``amount`` in ``mode``, from the plan ``after``
        it and what was left to repay without it (``owed_before``)."""
        went = after.allocations.get(seq)
        left = [row for row in after.installments if row.outstanding > 0]

        def part(component: Component) -> Money:
            return Money(0) if went is None else went.total(component)

        owed_after = to_repay(after)
        return cls(
            mode, part(Component.PRINCIPAL), part(Component.INTEREST), part(Component.FEE),
            part(Component.PENALTY), Money(0) if went is None else went.to_credit,
            after.outstanding_principal, left[0].due_date if left else None,
            left[0].outstanding if left else Money(0), len(left),
            left[-1].due_date if left else None, owed_after,
            Money(owed_before - amount - owed_after), after.status is LoanStatus.SETTLED,
        )  # fmt: skip


@dataclass(frozen=True)
class WaiverPreview:
    """What forgiving ``amount`` of ``kind`` on ``day`` would do, before it is done: what is
    owed of it before and after, and the plan's status and amount due after (``effect``)."""

    loan_id: int
    day: date
    kind: WaiverKind
    amount: Money
    owed_before: Money
    owed_after: Money
    effect: Consequences


@dataclass(frozen=True)
class PaymentPreview:
    """What taking ``amount`` on ``day`` would do, before it is taken: booked as a payment or
    (reaching the payoff while installments are still to fall due) as the full payoff; where
    the money goes, part by part, and the plan after it (what the receipt will say)."""

    loan_id: int
    day: date
    amount: Money
    kind: str  # payment | prepayment
    principal: Money
    interest: Money
    fee: Money
    penalty: Money
    to_credit: Money
    status: LoanStatus
    amount_due: Money
    outstanding_principal: Money


@dataclass(frozen=True)
class PrepaymentPreview:
    """What prepaying ``amount`` on ``day`` would do to a plan, in each mode it may be asked
    in (``shorten-term`` only where the plan repays principal as it goes), before she
    confirms; ``payoff`` is what would pay the whole plan off that day."""

    loan_id: int
    day: date
    amount: Money
    payoff: Money
    to_repay: Money  # what is left to repay as scheduled, without the prepayment
    outcomes: tuple[PrepaymentOutcome, ...]


# How many days late the explanation's example installment is shown (a month of it).
LATE_EXAMPLE_DAYS = 30


class LateExample(NamedTuple):
    """One installment of a plan as it would stand if left unpaid: through the grace period,
    the day after it, and ``days`` past its due date (the fold's own figures)."""

    period: int
    due_date: date
    payment: Money
    grace_ends: date
    late_fee: Money  # charged once, the day after the grace period
    penalty_per_day: Money  # penalty interest a day, once past the grace period
    days: int
    penalty: Money  # penalty interest by then
    owed: Money  # what the installment would need then: payment, late fee and penalty


@dataclass(frozen=True)
class PlanExplained:
    """A plan's cost and what lateness would cost, in its own numbers: what the explanation
    page says in words. ``fee_rate`` is the installment fee a period on the amount lent (0
    where the plan charges interest instead), ``yearly_fee_rate`` twelve of them: the figure
    that looks like the yearly cost and is about half the APR, because the fee stays on the
    whole amount lent while less and less of it is owed."""

    loan_id: int
    method: Method
    principal: Money
    periods: int
    payment: Money  # the first installment: most are the same
    total_interest: Money
    total_fee: Money
    total_cost: Money
    annual_rate: Rate
    fee_rate: Rate
    yearly_fee_rate: Rate
    apr: Rate  # compounded: the rate the installments' present values repay the loan at
    apr_simple: Rate
    grace_days: int
    reminder_days: int
    retry_days: tuple[int, ...]
    write_off_dpd: int
    late: LateExample | None  # none once nothing is left to fall due


@dataclass(frozen=True)
class Payoff:
    """What pays a plan off on a day."""

    loan_id: int
    quote: PayoffQuote


@dataclass(frozen=True)
class ListedReceipt:
    """A receipt in a plan's list, saying whether its payment was later reversed."""

    receipt: Receipt
    reversed: bool


@dataclass(frozen=True)
class PaymentTaken:
    """A payment or prepayment booked: its receipt and the plan after it."""

    receipt: Receipt
    loan: LoanSummary


@dataclass(frozen=True)
class Payout:
    """Money paid back (from a credit balance, or a reversed payment): to a bound method
    (``method_id``, ``account``) through its gateway, or by hand. ``status`` is the gateway's
    word on it (``fenqi.services.payouts``): pending, succeeded or failed (with its ``reason``);
    None for money paid back by hand."""

    id: str  # the credit refund, C<loan>-<seq>, or the reversal, V<loan>-<seq>
    channel: Channel
    method_id: int | None
    account: str | None
    amount: Money
    status: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PayoutStanding:
    """A payout to a bound method where the latest attempt at each of its parts leaves it
    (``fenqi.services.payouts``): pending, succeeded, or failed with the gateway's reason."""

    id: str
    loan_id: int
    amount: Money
    channel: Channel
    method_id: int | None
    status: str
    reason: str | None


@dataclass(frozen=True)
class ListedPayout:
    """A payout in a plan's list, with the references the gateway, or a transfer paid by hand,
    gave its parts."""

    payout: PayoutStanding
    references: tuple[str, ...]


@dataclass(frozen=True)
class PayoutSentAgain:
    """A failed payout sent to the gateway again, or paid by hand (``reference``, the transfer's
    as recorded: ``by-hand:…``; None when it went through the gateway)."""

    id: str
    loan_id: int
    amount: Money
    status: str
    reason: str | None
    reference: str | None = None


@dataclass(frozen=True)
class Refunded:
    """A merchant's refund and what of it went back to the borrower."""

    id: str  # F<loan>-<seq>
    loan_id: int
    amount: Money
    paid_back: Money
    paid_to: tuple[Payout, ...]
    date: date
    loan: LoanSummary

    @property
    def channel(self) -> Channel | None:
        """Where the first payout went, if any went anywhere."""
        return self.paid_to[0].channel if self.paid_to else None


@dataclass(frozen=True)
class CreditPaidBack:
    """A credit balance paid back; ``id`` is the first payout's."""

    loan_id: int
    amount: Money
    date: date
    paid_to: tuple[Payout, ...]
    loan: LoanSummary


@dataclass(frozen=True)
class Reversed:
    """A payment taken back, what went back to the borrower and what it did to the plan."""

    id: str  # V<loan>-<seq>
    payment_id: str
    loan_id: int
    amount: Money
    paid_back: Money
    reason: str
    date: date
    consequences: Consequences
    loan: LoanSummary
    paid_to: tuple[Payout, ...] = ()  # what went back where: the payout, if anything went back


@dataclass(frozen=True)
class Waived:
    """Penalty or fee forgiven."""

    id: str  # W<loan>-<seq>
    loan_id: int
    what: WaiverKind
    amount: Money
    reason: str
    date: date
    loan: LoanSummary


@dataclass(frozen=True)
class LoanHistory:
    """A loan's events and journal as stored, oldest first."""

    loan_id: int
    stored: History


@dataclass(frozen=True)
class AccountTotal:
    account: str
    name: str
    debit: Money
    credit: Money


@dataclass(frozen=True)
class TrialBalance:
    accounts: tuple[AccountTotal, ...]

    @property
    def total_debit(self) -> Money:
        return Money(sum(row.debit for row in self.accounts))

    @property
    def total_credit(self) -> Money:
        return Money(sum(row.credit for row in self.accounts))


@dataclass(frozen=True)
class BookDifference:
    """An account whose journal balance differs from the loan's replayed state."""

    loan_id: int
    account: str
    booked: Money
    replayed: Money


@dataclass(frozen=True)
class BookCheck:
    loans_checked: int
    differences: tuple[BookDifference, ...]


@dataclass(frozen=True)
class Dispatched:
    """What an SMS dispatch did at ``now`` (China's time): messages sent and expired, pending
    ones the contact window or the daily cap held over, how many are pending now, how many the
    gateway refused (pending again) and how many were handed over with no outcome (unknown:
    never sent again)."""

    now: datetime
    sent: int
    expired: int
    held_window: int
    held_cap: int
    pending: int
    refused: int = 0
    unknown: int = 0


@dataclass(frozen=True)
class BorrowerView:
    """A borrower, her limit, what of it is available and her active methods, oldest first."""

    id: int
    name: str
    phone: str
    credit_limit: Money
    available_limit: Money
    methods: list[PaymentMethod]


@dataclass(frozen=True)
class MethodChanged:
    """A method as a change left it; with the payment simulator, the balance it holds there."""

    method: PaymentMethod
    sim_balance: Money | None = None


@dataclass(frozen=True)
class OperatorCreated:
    username: str
    role: Role


@dataclass(frozen=True)
class OperatorDisabled:
    """An operator as disabling her left her, and how many of her sessions it ended."""

    user: User
    sessions_ended: int


@dataclass(frozen=True)
class ApiKeyCreated:
    """A new API key: the one answer that carries its secret (kept out of ``repr``, so a log
    line or a traceback never shows it)."""

    username: str
    key_id: str
    api_key: str = field(repr=False)


@dataclass(frozen=True)
class CodeSent:
    """The answer to a request for a sign-in code: the same whoever's phone it is."""

    sent: bool
    expires_in_minutes: int
    again_in_seconds: int  # until a new code may be asked for (once a minute a phone)


@dataclass(frozen=True)
class Notified:
    """A gateway's notification recorded: where its order now stands, and whether this
    notification is what settled it."""

    order_id: str
    status: Status
    settled_now: bool


@dataclass(frozen=True)
class Reconciled:
    """What a round of the reconciler did: how many open requests it asked about, and how many
    of them stand where (a status no request reached counts none)."""

    examined: int
    statuses: Mapping[Status, int]


@dataclass(frozen=True)
class CobRun:
    """A close-of-business run as stored, with its chunks' figures as they stand now
    (``chunks``, ``chunks_done``, ``chunks_failed``): they replace those it was settled with,
    and are all a run still running has."""

    record: RunRecord
    chunks: Mapping[str, int]

    @property
    def failed(self) -> bool:
        return self.record.status == "failed"


@dataclass(frozen=True)
class CobRunReport:
    """A run with its chunks, in order."""

    run: CobRun
    jobs: tuple[JobRecord, ...]


@dataclass(frozen=True)
class NothingToClose:
    """A business day on which no loan had work the batch had not closed: no run was recorded.
    ``caught_up_from``: the first earlier day closed before it, if any were."""

    business_date: date
    caught_up_from: date | None = None


@dataclass(frozen=True)
class CobClosed:
    """A business day closed (its run, or nothing to close), after the earlier days on which
    loans were behind, closed first (``caught_up``, oldest first)."""

    day: CobRun | NothingToClose
    caught_up: tuple[CobRun | NothingToClose, ...]


@dataclass(frozen=True)
class Aging:
    """Loans and their outstanding principal (fen) by delinquency bucket on ``day``, as the
    batch closed them; ``unclosed`` loans still await the batch for the day."""

    day: date
    loans: Mapping[str, int]
    principal: Mapping[str, int]
    unclosed: int
