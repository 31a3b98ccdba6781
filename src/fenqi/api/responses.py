"""Response bodies, as ``/openapi.json`` describes them: the documents ``fenqi.wire`` presents,
key for key and in the same order. Money is a decimal string in yuan (``"888.49"``, negative only
for an account's balance), rates decimal-fraction strings, dates and times ISO 8601.

They describe and do not rebuild: a route returns the presenter's document as it is (its keys'
order and values are the contract the CLI's ``--json`` shares), and the tests check real
answers against these schemas (``extra="forbid"``: a key the presenter adds and the model does
not name is a failed test, not an undocumented field)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fenqi.domain.events import Channel, WaiverKind
from fenqi.domain.loan import InstallmentStatus, LoanStatus
from fenqi.domain.products import Component, PenaltyMode, PrepaymentInterest, UnbilledFees
from fenqi.domain.schedule import DayCount, Method
from fenqi.domain.withholding import Status as DebitStatus
from fenqi.services.policy import Role

Yuan = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", examples=["888.49"])]
RateText = Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]{6}$", examples=["0.120000"])]
Day = dt.date
Moment = dt.datetime
Free = dict[str, Any]  # a document of its own: what an audit entry or an event kept as it was


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- sign-in --------------------------------------------------------------------------------------


class CodeSent(Answer):
    sent: bool
    expires_in_minutes: int
    again_in_seconds: int = Field(description="Seconds until a new code may be asked for.")


class Session(Answer):
    token: str
    csrf: str


class Me(Answer):
    name: str
    role: Role | None = Field(description="An operator's role; null for a borrower.")
    borrower_id: int | None


# -- products and quotes --------------------------------------------------------------------------


class Penalty(Answer):
    mode: PenaltyMode
    multiplier: str
    daily_rate: RateText


class LateFee(Answer):
    rate: RateText
    floor: Yuan
    cap: Yuan | None


class Product(Answer):
    code: str
    name: str = Field(description="The product's name in Chinese.")
    name_en: str = Field(description="Its name in English (the Chinese one if it has none).")
    method: Method
    periods: list[int]
    annual_rate: RateText
    fee_rate: RateText
    fee_total_rate: RateText | None
    upfront_fee_rate: RateText
    day_count: DayCount
    grace_days: int
    penalty: Penalty
    late_fee: LateFee | None
    prepayment_interest: PrepaymentInterest
    prepayment_fee_rate: RateText
    unbilled_fees_on_payoff: UnbilledFees
    apr_cap: str = Field(examples=["24%", "4xLPR"])
    allocation: list[str]


class QuotedInstallment(Answer):
    period: int
    due_date: Day
    principal: Yuan
    interest: Yuan
    fee: Yuan
    payment: Yuan
    balance: Yuan


class Quote(Answer):
    principal: Yuan
    periods: int
    method: Method
    start: Day
    installments: list[QuotedInstallment]
    total_interest: Yuan
    total_fee: Yuan
    total_payment: Yuan
    apr_simple: RateText
    apr_compound: RateText
    product: str | None
    upfront_fee: Yuan
    net_received: Yuan
    total_cost: Yuan
    apr_cap: RateText


# -- borrowers and methods ------------------------------------------------------------------------


class PaymentMethod(Answer):
    id: int
    borrower_id: int
    kind: Channel
    masked_account: str
    default: bool
    status: str = Field(examples=["active", "unbound"])


class MethodChanged(PaymentMethod):
    sim_balance: Yuan | None = Field(
        None, description="The payment simulator's balance (a service run with --simulate)."
    )


class Borrower(Answer):
    id: int
    name: str
    phone: str
    credit_limit: Yuan
    available_limit: Yuan
    methods: list[PaymentMethod]


# -- loans ----------------------------------------------------------------------------------------


class LoanSummary(Answer):
    id: int
    borrower_id: int
    order_id: str
    merchant: str
    item: str | None
    product: str
    principal: Yuan
    periods: int
    method: Method
    start: Day
    as_of: Day
    status: LoanStatus
    dpd: int
    bucket: str = Field(examples=["M0", "M1", "written_off"])
    outstanding_principal: Yuan
    outstanding_interest: Yuan
    outstanding_fee: Yuan
    outstanding_penalty: Yuan
    credit_balance: Yuan
    amount_due: Yuan
    written_off_on: Day | None
    recovered: Yuan


class Installment(Answer):
    period: int
    due_date: Day
    principal: Yuan
    interest: Yuan
    fee: Yuan
    late_fee: Yuan
    charged_fee: Yuan = Field(description="Its fee and the late fee charged when it fell overdue.")
    penalty: Yuan
    payment: Yuan
    paid: Yuan
    paid_principal: Yuan
    paid_interest: Yuan
    paid_fee: Yuan
    paid_penalty: Yuan
    waived_fee: Yuan
    waived_penalty: Yuan
    outstanding: Yuan
    outstanding_principal: Yuan
    outstanding_interest: Yuan
    outstanding_fee: Yuan = Field(description="Its fee and late fee, less paid and waived.")
    outstanding_penalty: Yuan
    status: InstallmentStatus
    dpd: int


class Loan(LoanSummary):
    paid_principal: Yuan = Field(description="Paid to the plan's principal, net of reversals.")
    paid_interest: Yuan
    paid_fee: Yuan = Field(description="Installment, late and early-repayment fees paid.")
    paid_penalty: Yuan
    paid: Yuan = Field(description="The four paid parts together.")
    installments: list[Installment]
    consent: Quote | None = Field(description="The offer the borrower agreed to, as shown.")


class ToRepay(Answer):
    loan_id: int
    merchant: str
    item: str | None
    period: int
    periods: int
    due_date: Day
    amount: Yuan = Field(description="What the installment still owes, penalty included.")
    status: InstallmentStatus
    dpd: int


class MonthToRepay(Answer):
    month: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}$", examples=["2026-12"])
    amount: Yuan = Field(description="What the month's installments still owe.")


class Overview(Answer):
    borrower_id: int
    as_of: Day
    credit_limit: Yuan
    available_limit: Yuan
    outstanding_principal: Yuan = Field(description="Summed over her plans.")
    amount_due: Yuan = Field(description="Due now, summed over her plans.")
    due_within_week: Yuan = Field(description="Owed by installments due by as_of + 7 days "
                                  "(overdue ones included): 近7日待还.")  # fmt: skip
    due_this_month: Yuan = Field(description="Owed by installments due by the month's last day "
                                 "(overdue ones included): 本月待还.")  # fmt: skip
    to_repay: Yuan = Field(description="Every installment still owed, as scheduled: 全部待还.")
    installments: list[ToRepay] = Field(description="Every installment still owed, by due date.")
    months: list[MonthToRepay] = Field(description="The months those fall due in, with sums.")
    plans: list[Loan]


class PaymentPreview(Answer):
    loan_id: int
    date: Day
    amount: Yuan
    kind: Literal["payment", "prepayment"] = Field(
        description="prepayment: it reaches the payoff, and settles the plan."
    )
    principal: Yuan = Field(description="Where it would go: principal.")
    interest: Yuan
    fee: Yuan
    penalty: Yuan
    to_credit: Yuan
    status: LoanStatus = Field(description="The plan's status after it.")
    amount_due: Yuan = Field(description="Due after it.")
    outstanding_principal: Yuan = Field(description="Principal owed after it.")


class PrepaymentOutcome(Answer):
    mode: Literal["reduce-installment", "shorten-term"]
    principal: Yuan = Field(description="Where the prepayment goes: principal repaid.")
    interest: Yuan
    fee: Yuan = Field(description="Fees it pays, the early-repayment fee among them.")
    penalty: Yuan
    to_credit: Yuan
    outstanding_principal: Yuan = Field(description="Principal owed after it.")
    next_due_date: Day | None
    next_payment: Yuan = Field(description="The next installment after it.")
    installments_left: int
    last_due_date: Day | None
    to_repay: Yuan = Field(description="Left to repay after it, as scheduled.")
    saved: Yuan = Field(
        description="Interest and fees no longer charged, less any early-repayment fee: "
        "to_repay before, less the amount and to_repay."
    )
    settles: bool


class PrepaymentPreview(Answer):
    loan_id: int
    date: Day
    amount: Yuan
    payoff: Yuan = Field(description="What would pay the whole plan off that day.")
    to_repay: Yuan = Field(description="Left to repay as scheduled without the prepayment.")
    outcomes: list[PrepaymentOutcome] = Field(description="One for each mode the plan allows.")


class LateExample(Answer):
    period: int
    due_date: Day
    payment: Yuan
    grace_ends: Day = Field(description="Paid by then, nothing more is charged.")
    late_fee: Yuan = Field(description="Charged once, the day after the grace period.")
    penalty_per_day: Yuan
    days: int = Field(description="How many days late the example is.")
    penalty: Yuan = Field(description="Penalty interest by then.")
    owed: Yuan = Field(description="What the installment would need then.")


class PlanExplained(Answer):
    loan_id: int
    method: Method
    principal: Yuan
    periods: int
    payment: Yuan = Field(description="The first installment.")
    total_interest: Yuan
    total_fee: Yuan
    total_cost: Yuan
    annual_rate: RateText
    fee_rate: RateText = Field(description="The installment fee a period, on the amount lent.")
    yearly_fee_rate: RateText = Field(description="Twelve periods' fee: about half the APR.")
    apr: RateText = Field(description="Compounded monthly: what the plan really costs a year.")
    apr_simple: RateText
    grace_days: int
    reminder_days: int
    retry_days: list[int]
    write_off_dpd: int
    late: LateExample | None = Field(description="The next installment, if left unpaid.")


class HistoryEvent(Answer):
    seq: int
    kind: str
    effective: Day
    booked_at: Moment
    payload: Free


class HistoryLine(Answer):
    account: str
    account_name: str
    debit: Yuan
    credit: Yuan


class HistoryEntry(Answer):
    entry_no: int
    booked_date: Day
    memo: str
    event_seq: int | None
    what: str = Field(
        description="What it books: the event's kind, `disbursement` (the "
        "loan's opening) or `accrual`.",
        examples=["payment", "accrual"],
    )
    lines: list[HistoryLine]


class History(Answer):
    loan_id: int
    events: list[HistoryEvent]
    entries: list[HistoryEntry]


class Payoff(Answer):
    loan_id: int
    date: Day
    amount: Yuan
    principal: Yuan
    interest: Yuan
    fee: Yuan
    penalty: Yuan
    prepayment_fee: Yuan
    credit_applied: Yuan
    valid_through: Day


# -- payments and receipts ------------------------------------------------------------------------


class AllocatedPart(Answer):
    period: int
    component: Component
    amount: Yuan


class Receipt(Answer):
    id: str = Field(examples=["R12-3"])
    receipt_id: str = Field(examples=["R12-3"])
    payment_id: str = Field(examples=["P12-3"])
    kind: str = Field(examples=["payment", "prepayment"])
    loan_id: int
    order_id: str
    merchant: str
    item: str | None
    date: Day
    amount: Yuan
    channel: Channel
    method: PaymentMethod | None = Field(description="The method as it was; null: by hand.")
    principal: Yuan
    interest: Yuan
    fee: Yuan
    penalty: Yuan
    to_credit: Yuan
    allocation: list[AllocatedPart]
    outstanding_principal: Yuan
    issued_at: Moment


class ListedReceipt(Receipt):
    reversed: bool


class PaymentTaken(Receipt):
    """The receipt, under the payment's id (``P12-3``), and the plan after it."""

    loan: LoanSummary


# -- corrections ----------------------------------------------------------------------------------


class Payout(Answer):
    id: str = Field(examples=["C12-5"])
    channel: Channel
    method_id: int | None
    account: str | None
    amount: Yuan
    status: Literal["pending", "succeeded", "failed"] | None = Field(
        default=None,
        description="The gateway's word on a payout to a bound method (null: paid by hand)",
    )
    reason: str | None = Field(default=None, description="Why the gateway declined it, if it did")


class Refunded(Answer):
    id: str = Field(examples=["F12-4"])
    loan_id: int
    amount: Yuan
    paid_back: Yuan
    channel: Channel | None
    paid_to: list[Payout]
    date: Day
    loan: LoanSummary


class CreditPaidBack(Answer):
    id: str = Field(examples=["C12-5"])
    loan_id: int
    amount: Yuan
    date: Day
    paid_to: list[Payout]
    loan: LoanSummary


class Consequences(Answer):
    as_of: Day
    status_before: LoanStatus
    status_after: LoanStatus
    dpd: int
    penalty: Yuan
    amount_due: Yuan


class Reversed(Answer):
    id: str = Field(examples=["V12-6"])
    payment_id: str
    loan_id: int
    amount: Yuan
    paid_back: Yuan
    reason: str
    date: Day
    consequences: Consequences
    loan: LoanSummary
    paid_to: list[Payout] = Field(default_factory=list)


class Waived(Answer):
    id: str = Field(examples=["W12-7"])
    loan_id: int
    what: WaiverKind
    amount: Yuan
    reason: str
    date: Day
    loan: LoanSummary


# -- books ----------------------------------------------------------------------------------------


class AccountTotal(Answer):
    account: str
    name: str
    debit: Yuan
    credit: Yuan
    balance: Yuan


class TrialBalance(Answer):
    accounts: list[AccountTotal]
    total_debit: Yuan
    total_credit: Yuan
    balanced: bool


class BookDifference(Answer):
    loan_id: int
    account: str
    booked: Yuan
    replayed: Yuan


class BookCheck(Answer):
    loans_checked: int
    differences: list[BookDifference]
    consistent: bool


# -- the batch, messages, audit, gateways ---------------------------------------------------------


class CobRun(Answer):
    """A run of close of business, or a day with nothing to close (``id`` null,
    ``status`` nothing_to_do, with ``detail``). A run still running has only its chunk
    figures; a settled one has what it did."""

    id: int | None
    business_date: Day
    status: str = Field(examples=["running", "done", "failed", "nothing_to_do"])
    started_at: Moment | None
    finished_at: Moment | None
    error: str | None
    caught_up_from: Day | None
    loans: int | None = None
    debits_tried: int | None = None
    debits_succeeded: int | None = None
    debits_failed: int | None = None
    debited: Yuan | None = None
    failed_amount: Yuan | None = None
    newly_overdue: dict[str, int] | None = Field(None, description="Loans by bucket moved into.")
    sms_queued: int | None = None
    write_offs: int | None = None
    rows: int | None = None
    chunks: int | None = None
    chunks_done: int | None = None
    chunks_failed: int | None = None
    detail: str | None = None


class CobChunk(Answer):
    chunk_no: int
    first_loan_id: int
    last_loan_id: int
    status: str = Field(examples=["queued", "running", "done", "failed"])
    worker: str | None
    finished_at: Moment | None
    loans: int
    attempts: int
    error: str | None


class CobRunReport(CobRun):
    """A run with its chunks (``chunks`` lists them here, rather than counting them)."""

    chunks: list[CobChunk]  # type: ignore[assignment]


class CobClosed(CobRun):
    caught_up: list[CobRun] = Field(description="The earlier days closed first, oldest first.")


class AgingBucket(Answer):
    bucket: str
    loans: int
    outstanding_principal: Yuan


class Aging(Answer):
    date: Day
    buckets: list[AgingBucket]
    total_loans: int
    total_outstanding_principal: Yuan
    loans_not_yet_closed: int


class SmsMessage(Answer):
    loan_id: int
    day: Day
    stage: str
    borrower_id: int
    phone: str
    text: str
    status: str = Field(examples=["pending", "sending", "sent", "unknown", "expired"])
    sent_at: Moment | None = Field(description="When it was handed to the gateway.")
    reference: str | None = Field(description="The SMS gateway's own id for it, once sent.")
    reason: str | None = Field(
        description="Why the last try did not send it, or why its outcome is not known."
    )


class AuditEntry(Answer):
    id: int
    at: Moment
    actor: str
    action: str
    target: str
    reason: str
    before: Free | None
    after: Free | None


class NotificationRecorded(Answer):
    order_id: str
    status: DebitStatus
    settled_now: bool


def answers(model: Any, status: int = 200) -> dict[str, Any]:
    """A route's keywords for its success: the status and the body ``/openapi.json`` says it
    has. FastAPI is not asked to rebuild the body through the model (``response_model=None``):
    the presenter's document goes out as it is."""
    return {
        "status_code": status,
        "response_model": None,
        "responses": {status: {"model": model, "description": "Success"}},
    }
