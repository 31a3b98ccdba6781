"""The presenter: the one place that writes the services' typed values out as the documents
``--json``, the HTTP API and the pages show: money as "1234.56", rates as decimal-fraction
strings with six decimals, dates ISO 8601. ``present`` takes any answer a service gives.

The documents' keys and their order are a contract (the API's response models in
``fenqi.api.responses`` describe them, and clients read them): a change here is a change to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from functools import singledispatch
from typing import Any, Protocol

from fenqi.domain.corrections import Consequences
from fenqi.domain.loan import InstallmentState, PayoffQuote
from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.quote import Quote
from fenqi.domain.rates import Rate, format_rate
from fenqi.domain.schedule import Installment
from fenqi.domain.withholding import Status
from fenqi.loans.ports import ApiKey, AuditEntry, JobRecord, QueuedSms, SentSms, User
from fenqi.loans.receipts import MethodView, Receipt
from fenqi.services.views import (
    Aging,
    ApiKeyCreated,
    BookCheck,
    BookDifference,
    BorrowerView,
    CobClosed,
    CobRun,
    CobRunReport,
    CodeSent,
    CreditPaidBack,
    Dispatched,
    LateExample,
    ListedPayout,
    ListedReceipt,
    LoanHistory,
    LoanSummary,
    LoanView,
    MethodChanged,
    MonthToRepay,
    NothingToClose,
    Notified,
    OperatorCreated,
    OperatorDisabled,
    Overview,
    PaymentPreview,
    PaymentTaken,
    Payoff,
    Payout,
    PayoutSentAgain,
    PayoutStanding,
    PlanExplained,
    PrepaymentOutcome,
    PrepaymentPreview,
    Reconciled,
    Refunded,
    Reversed,
    ToRepay,
    TrialBalance,
    Waived,
    WaiverPreview,
)

Document = dict[str, Any]


# What the presenters below read of a stored thing (the store's rows, or values made from them).


class _Borrower(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def phone(self) -> str: ...
    @property
    def credit_limit(self) -> int: ...


class _Method(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def borrower_id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def masked_account(self) -> str: ...
    @property
    def is_default(self) -> bool: ...
    @property
    def status(self) -> str: ...


def money(amount: Money) -> str:
    return str(amount)


def rate(value: Rate) -> str:
    return format_rate(value, 6)


def _iso(value: date | None) -> str | None:
    """A day, or a moment (a ``datetime`` is a ``date``), in ISO 8601; None as it is."""
    return None if value is None else value.isoformat()


def _bill(row: Installment | InstallmentState) -> dict[str, Any]:
    """What a quoted installment and a serviced one share: when, and what it asks for."""
    return {
        "period": row.period,
        "due_date": row.due_date.isoformat(),
        "principal": money(row.principal),
        "interest": money(row.interest),
        "fee": money(row.fee),
    }


def installment(row: Installment) -> dict[str, Any]:
    return {**_bill(row), "payment": money(row.payment), "balance": money(row.balance)}


def quote(offer: Quote) -> dict[str, Any]:
    plan, terms = offer.schedule, offer.terms
    return {
        "principal": money(terms.principal),
        "periods": terms.periods,
        "method": terms.method.value,
        "start": terms.start.isoformat(),
        "installments": [installment(row) for row in plan.installments],
        "total_interest": money(plan.total_interest),
        "total_fee": money(plan.total_fee),
        "total_payment": money(plan.total_payment),
        "apr_simple": rate(offer.apr.simple),
        "apr_compound": rate(offer.apr.compound),
        "product": offer.product,
        "upfront_fee": money(terms.upfront_fee),
        "net_received": money(terms.net_received),
        "total_cost": money(offer.total_cost),
        "apr_cap": rate(offer.cap),
    }


def product(item: Product) -> dict[str, Any]:
    return {
        "code": item.code,
        "name": item.name,
        "name_en": item.english_name,
        "method": item.method.value,
        "periods": list(item.periods),
        "annual_rate": rate(item.annual_rate),
        "fee_rate": rate(item.fee_rate),
        "fee_total_rate": None if item.fee_total_rate is None else rate(item.fee_total_rate),
        "upfront_fee_rate": rate(item.upfront_fee_rate),
        "day_count": item.day_count.value,
        "grace_days": item.grace_days,
        "penalty": {
            "mode": item.penalty.mode.value,
            "multiplier": str(item.penalty.multiplier),
            "daily_rate": rate(item.penalty.daily_rate),
        },
        "late_fee": None
        if item.late_fee is None
        else {
            "rate": rate(item.late_fee.rate),
            "floor": money(item.late_fee.floor),
            "cap": None if item.late_fee.cap is None else money(item.late_fee.cap),
        },
        "prepayment_interest": item.prepayment_interest.value,
        "prepayment_fee_rate": rate(item.prepayment_fee_rate),
        "unbilled_fees_on_payoff": item.unbilled_fees_on_payoff.value,
        "apr_cap": str(item.apr_cap),
        "allocation": [str(rule) for rule in item.allocation],
    }


def borrower(row: _Borrower, available: Money, methods: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "phone": row.phone,
        "credit_limit": money(Money(row.credit_limit)),
        "available_limit": money(available),
        "methods": methods,
    }


def method(row: _Method) -> dict[str, Any]:
    """A bound method as the borrower sees it (never its token): the same document a receipt
    names the method that paid with."""
    return paid_with(MethodView(row.id, row.borrower_id, row.kind, row.masked_account,
                                row.is_default, row.status))  # fmt: skip


def borrower_view(view: BorrowerView) -> dict[str, Any]:
    return borrower(view, view.available_limit, [method(m) for m in view.methods])


def method_changed(changed: MethodChanged) -> dict[str, Any]:
    """A method as a change left it (with the simulator's balance, when there is one)."""
    balance = {} if changed.sim_balance is None else {"sim_balance": money(changed.sim_balance)}
    return {**method(changed.method), **balance}


def loan_installment(row: InstallmentState) -> dict[str, Any]:
    """An installment: what it was charged, what was paid and waived of it and what it still
    owes, part by part (the plan's ``outstanding_*`` are the sums of its rows fallen due)."""
    return {
        **_bill(row),
        "late_fee": money(row.late_fee),
        "charged_fee": money(row.charged_fee),
        "penalty": money(row.penalty),
        "payment": money(row.payment),
        "paid": money(row.paid),
        "paid_principal": money(row.paid_principal),
        "paid_interest": money(row.paid_interest),
        "paid_fee": money(row.paid_fee),
        "paid_penalty": money(row.paid_penalty),
        "waived_fee": money(row.waived_fee),
        "waived_penalty": money(row.waived_penalty),
        "outstanding": money(row.outstanding),
        "outstanding_principal": money(row.outstanding_principal),
        "outstanding_interest": money(row.outstanding_interest),
        "outstanding_fee": money(row.outstanding_fee),
        "outstanding_penalty": money(row.outstanding_penalty),
        "status": row.status.value,
        "dpd": row.dpd,
    }


def loan_summary(view: LoanSummary) -> dict[str, Any]:
    return {
        "id": view.id,
        "borrower_id": view.borrower_id,
        "order_id": view.order_id,
        "merchant": view.merchant,
        "item": view.item,
        "product": view.product,
        "principal": money(view.principal),
        "periods": view.periods,
        "method": view.method.value,
        "start": view.start.isoformat(),
        "as_of": view.as_of.isoformat(),
        "status": view.status.value,
        "dpd": view.dpd,
        "bucket": view.bucket,
        "outstanding_principal": money(view.outstanding_principal),
        "outstanding_interest": money(view.outstanding_interest),
        "outstanding_fee": money(view.outstanding_fee),
        "outstanding_penalty": money(view.outstanding_penalty),
        "credit_balance": money(view.credit_balance),
        "amount_due": money(view.amount_due),
        "written_off_on": _iso(view.written_off_on),
        "recovered": money(view.recovered),
    }


def loan(view: LoanView) -> dict[str, Any]:
    return {
        **loan_summary(view.summary),
        "paid_principal": money(view.paid.principal),
        "paid_interest": money(view.paid.interest),
        "paid_fee": money(view.paid.fee),
        "paid_penalty": money(view.paid.penalty),
        "paid": money(view.paid.total),
        "installments": [loan_installment(row) for row in view.installments],
        "consent": view.consent,
    }


def to_repay(row: ToRepay) -> dict[str, Any]:
    return {
        "loan_id": row.loan_id,
        "merchant": row.merchant,
        "item": row.item,
        "period": row.period,
        "periods": row.periods,
        "due_date": row.due_date.isoformat(),
        "amount": money(row.amount),
        "status": row.status,
        "dpd": row.dpd,
    }


def month_to_repay(row: MonthToRepay) -> dict[str, Any]:
    return {"month": row.month.strftime("%Y-%m"), "amount": money(row.amount)}


def overview(view: Overview) -> dict[str, Any]:
    """A borrower's plans and what she has to repay across them (``views.Overview``)."""
    return {
        "borrower_id": view.borrower_id,
        "as_of": view.as_of.isoformat(),
        "credit_limit": money(view.credit_limit),
        "available_limit": money(view.available_limit),
        "outstanding_principal": money(view.outstanding_principal),
        "amount_due": money(view.amount_due),
        "due_within_week": money(view.due_within_week),
        "due_this_month": money(view.due_this_month),
        "to_repay": money(view.to_repay),
        "installments": [to_repay(row) for row in view.installments],
        "months": [month_to_repay(row) for row in view.months],
        "plans": [loan(plan) for plan in view.plans],
    }


def waiver_preview(preview: WaiverPreview) -> dict[str, Any]:
    """What a waiver would do before it is done (``views.WaiverPreview``)."""
    return {
        "loan_id": preview.loan_id,
        "date": preview.day.isoformat(),
        "kind": preview.kind.value,
        "amount": money(preview.amount),
        "owed_before": money(preview.owed_before),
        "owed_after": money(preview.owed_after),
        "effect": consequences(preview.effect),
    }


def payment_preview(preview: PaymentPreview) -> dict[str, Any]:
    """What a payment would do before it is taken (``views.PaymentPreview``)."""
    return {
        "loan_id": preview.loan_id,
        "date": preview.day.isoformat(),
        "amount": money(preview.amount),
        "kind": preview.kind,
        "principal": money(preview.principal),
        "interest": money(preview.interest),
        "fee": money(preview.fee),
        "penalty": money(preview.penalty),
        "to_credit": money(preview.to_credit),
        "status": preview.status.value,
        "amount_due": money(preview.amount_due),
        "outstanding_principal": money(preview.outstanding_principal),
    }


def prepayment_outcome(outcome: PrepaymentOutcome) -> dict[str, Any]:
    return {
        "mode": outcome.mode.value,
        "principal": money(outcome.principal),
        "interest": money(outcome.interest),
        "fee": money(outcome.fee),
        "penalty": money(outcome.penalty),
        "to_credit": money(outcome.to_credit),
        "outstanding_principal": money(outcome.outstanding_principal),
        "next_due_date": _iso(outcome.next_due_date),
        "next_payment": money(outcome.next_payment),
        "installments_left": outcome.installments_left,
        "last_due_date": _iso(outcome.last_due_date),
        "to_repay": money(outcome.to_repay),
        "saved": money(outcome.saved),
        "settles": outcome.settles,
    }


def prepayment_preview(preview: PrepaymentPreview) -> dict[str, Any]:
    """What a partial prepayment would do, mode by mode (``views.PrepaymentPreview``)."""
    return {
        "loan_id": preview.loan_id,
        "date": preview.day.isoformat(),
        "amount": money(preview.amount),
        "payoff": money(preview.payoff),
        "to_repay": money(preview.to_repay),
        "outcomes": [prepayment_outcome(outcome) for outcome in preview.outcomes],
    }


def late_example(late: LateExample) -> dict[str, Any]:
    return {
        "period": late.period,
        "due_date": late.due_date.isoformat(),
        "payment": money(late.payment),
        "grace_ends": late.grace_ends.isoformat(),
        "late_fee": money(late.late_fee),
        "penalty_per_day": money(late.penalty_per_day),
        "days": late.days,
        "penalty": money(late.penalty),
        "owed": money(late.owed),
    }


def plan_explained(view: PlanExplained) -> dict[str, Any]:
    """A plan's cost and lateness in its own numbers (``views.PlanExplained``)."""
    return {
        "loan_id": view.loan_id,
        "method": view.method.value,
        "principal": money(view.principal),
        "periods": view.periods,
        "payment": money(view.payment),
        "total_interest": money(view.total_interest),
        "total_fee": money(view.total_fee),
        "total_cost": money(view.total_cost),
        "annual_rate": rate(view.annual_rate),
        "fee_rate": rate(view.fee_rate),
        "yearly_fee_rate": rate(view.yearly_fee_rate),
        "apr": rate(view.apr),
        "apr_simple": rate(view.apr_simple),
        "grace_days": view.grace_days,
        "reminder_days": view.reminder_days,
        "retry_days": list(view.retry_days),
        "write_off_dpd": view.write_off_dpd,
        "late": None if view.late is None else late_example(view.late),
    }


def consequences(effect: Consequences) -> dict[str, Any]:
    """What a correction does to the loan as of a day (``as_of``): its status before and after,
    and after it the days past due, the penalty interest owed and the amount due."""
    return {
        "as_of": effect.as_of.isoformat(),
        "status_before": effect.status_before.value,
        "status_after": effect.status_after.value,
        "dpd": effect.dpd,
        "penalty": money(effect.penalty),
        "amount_due": money(effect.amount_due),
    }


def payoff(view: Payoff) -> dict[str, Any]:
    offer: PayoffQuote = view.quote
    parts = offer.breakdown
    return {
        "loan_id": view.loan_id,
        "date": offer.day.isoformat(),
        "amount": money(offer.amount),
        "principal": money(parts.principal),
        "interest": money(parts.interest),
        "fee": money(parts.fee),
        "penalty": money(parts.penalty),
        "prepayment_fee": money(parts.prepayment_fee),
        "credit_applied": money(parts.credit_applied),
        "valid_through": offer.valid_through.isoformat(),
    }


def paid_with(shown: MethodView) -> dict[str, Any]:
    return {
        "id": shown.id,
        "borrower_id": shown.borrower_id,
        "kind": shown.kind,
        "masked_account": shown.masked_account,
        "default": shown.default,
        "status": shown.status,
    }


def receipt(issued: Receipt) -> dict[str, Any]:
    """A numbered receipt (凭证): what was paid, how it was applied, what is left."""
    return {
        "id": issued.receipt_id,
        "receipt_id": issued.receipt_id,
        "payment_id": issued.payment_id,
        "kind": issued.kind,
        "loan_id": issued.loan_id,
        "order_id": issued.order_id,
        "merchant": issued.merchant,
        "item": issued.item,
        "date": issued.date.isoformat(),
        "amount": money(issued.amount),
        "channel": issued.channel.value,
        "method": None if issued.method is None else paid_with(issued.method),
        "principal": money(issued.principal),
        "interest": money(issued.interest),
        "fee": money(issued.fee),
        "penalty": money(issued.penalty),
        "to_credit": money(issued.to_credit),
        "allocation": [
            {"period": part.period, "component": part.component.value, "amount": money(part.amount)}
            for part in issued.allocation
        ],
        "outstanding_principal": money(issued.outstanding_principal),
        "issued_at": issued.issued_at.isoformat(),
    }


def listed_receipt(listed: ListedReceipt) -> dict[str, Any]:
    return {**receipt(listed.receipt), "reversed": listed.reversed}


def payment_taken(taken: PaymentTaken) -> dict[str, Any]:
    """A payment's answer: its receipt under the payment's id, and the plan after it."""
    return {**receipt(taken.receipt), "id": taken.receipt.payment_id,
            "loan": loan_summary(taken.loan)}  # fmt: skip


def payout(paid: Payout) -> dict[str, Any]:
    return {"id": paid.id, "channel": paid.channel.value, "method_id": paid.method_id,
            "account": paid.account, "amount": money(paid.amount), "status": paid.status,
            "reason": paid.reason}  # fmt: skip


def payout_standing(standing: PayoutStanding) -> dict[str, Any]:
    return {"id": standing.id, "loan_id": standing.loan_id, "amount": money(standing.amount),
            "channel": standing.channel.value, "method_id": standing.method_id,
            "status": standing.status, "reason": standing.reason}  # fmt: skip


def listed_payout(listed: ListedPayout) -> dict[str, Any]:
    return {**payout_standing(listed.payout), "references": list(listed.references)}


def payout_sent_again(sent: PayoutSentAgain) -> dict[str, Any]:
    """A payout sent again, or paid by hand (then with the transfer's reference)."""
    reference = {} if sent.reference is None else {"reference": sent.reference}
    return {"id": sent.id, "loan_id": sent.loan_id, "amount": money(sent.amount),
            "status": sent.status, "reason": sent.reason, **reference}  # fmt: skip


def refunded(done: Refunded) -> dict[str, Any]:
    return {"id": done.id, "loan_id": done.loan_id, "amount": money(done.amount),
            "paid_back": money(done.paid_back),
            "channel": None if done.channel is None else done.channel.value,
            "paid_to": [payout(paid) for paid in done.paid_to], "date": done.date.isoformat(),
            "loan": loan_summary(done.loan)}  # fmt: skip


def credit_paid_back(done: CreditPaidBack) -> dict[str, Any]:
    return {"id": done.paid_to[0].id, "loan_id": done.loan_id, "amount": money(done.amount),
            "date": done.date.isoformat(), "paid_to": [payout(paid) for paid in done.paid_to],
            "loan": loan_summary(done.loan)}  # fmt: skip


def reversed_payment(done: Reversed) -> dict[str, Any]:
    return {"id": done.id, "payment_id": done.payment_id, "loan_id": done.loan_id,
            "amount": money(done.amount), "paid_back": money(done.paid_back),
            "reason": done.reason, "date": done.date.isoformat(),
            "consequences": consequences(done.consequences),
            "loan": loan_summary(done.loan),
            "paid_to": [payout(paid) for paid in done.paid_to]}  # fmt: skip


def waived(done: Waived) -> dict[str, Any]:
    return {"id": done.id, "loan_id": done.loan_id, "what": done.what.value,
            "amount": money(done.amount), "reason": done.reason, "date": done.date.isoformat(),
            "loan": loan_summary(done.loan)}  # fmt: skip


def trial_balance(report: TrialBalance) -> dict[str, Any]:
    total_debit, total_credit = report.total_debit, report.total_credit
    return {
        "accounts": [
            {
                "account": row.account,
                "name": row.name,
                "debit": money(row.debit),
                "credit": money(row.credit),
                "balance": money(Money(row.debit - row.credit)),
            }
            for row in report.accounts
        ],
        "total_debit": money(total_debit),
        "total_credit": money(total_credit),
        "balanced": total_debit == total_credit,
    }


def difference(found: BookDifference) -> dict[str, Any]:
    return {
        "loan_id": found.loan_id,
        "account": found.account,
        "booked": money(found.booked),
        "replayed": money(found.replayed),
    }


def book_check(report: BookCheck) -> dict[str, Any]:
    return {"loans_checked": report.loans_checked,
            "differences": [difference(found) for found in report.differences],
            "consistent": not report.differences}  # fmt: skip


def cob_run(run: CobRun) -> dict[str, Any]:
    row = run.record
    counts = {**row.counts, **run.chunks}
    for amount in ("debited", "failed_amount"):
        if amount in counts:
            counts[amount] = money(Money(counts[amount]))
    return {
        "id": row.id,
        "business_date": row.business_date.isoformat(),
        "status": row.status,
        "started_at": row.started_at.isoformat(),
        "finished_at": _iso(row.finished_at),
        "error": row.error,
        "caught_up_from": _iso(row.caught_up_from),
        **counts,
    }


COB_NOTHING_TO_DO = "nothing_to_do"


def nothing_to_close(day: NothingToClose) -> dict[str, Any]:
    """No run, so no id, no times and no counts: the keys of a run, for a reader of either."""
    figures = ("loans", "debits_tried", "debits_succeeded", "debits_failed", "sms_queued",
               "write_offs", "rows", "chunks", "chunks_done", "chunks_failed")  # fmt: skip
    on = day.business_date.isoformat()
    return {
        "id": None,
        "business_date": on,
        "status": COB_NOTHING_TO_DO,
        "started_at": None,
        "finished_at": None,
        "error": None,
        "caught_up_from": _iso(day.caught_up_from),
        **dict.fromkeys(figures, 0),
        "debited": money(Money(0)),
        "failed_amount": money(Money(0)),
        "newly_overdue": {},
        "detail": f"nothing to do: no loan has work on {on} that the batch has not closed; no "
        "run was recorded",
    }


def cob_closed(closed: CobClosed) -> dict[str, Any]:
    return {**document(closed.day), "caught_up": documents(closed.caught_up)}


def cob_job(row: JobRecord) -> dict[str, Any]:
    return {
        "chunk_no": row.chunk_no,
        "first_loan_id": row.first_loan_id,
        "last_loan_id": row.last_loan_id,
        "status": row.status,
        "worker": row.worker,
        "finished_at": _iso(row.finished_at),
        "loans": (row.counts or {}).get("loans", 0),
        "attempts": row.attempts,
        "error": row.error,
    }


def cob_run_report(report: CobRunReport) -> dict[str, Any]:
    return {**cob_run(report.run), "chunks": [cob_job(job) for job in report.jobs]}


def aging(report: Aging) -> dict[str, Any]:
    """Loans and outstanding principal per bucket, M0 … M7 then written off."""
    counts, principal = report.loans, report.principal
    names = [f"M{n}" for n in range(8)] + ["written_off"]
    return {
        "date": report.day.isoformat(),
        "buckets": [
            {"bucket": name, "loans": counts.get(name, 0),
             "outstanding_principal": money(Money(principal.get(name, 0)))}
            for name in names
        ],
        "total_loans": sum(counts.values()),
        "total_outstanding_principal": money(Money(sum(principal.values()))),
        "loans_not_yet_closed": report.unclosed,
    }  # fmt: skip


def _payload(stored: Mapping[str, Any]) -> dict[str, Any]:
    """An event's details as the wire shows them: its amount (fen in the store) in yuan."""
    return {name: money(Money(value)) if name == "amount" else value
            for name, value in stored.items()}  # fmt: skip


def history(view: LoanHistory) -> dict[str, Any]:
    """A loan's events and journal; each line names its account from the chart of accounts."""
    loan_id, stored = view.loan_id, view.stored
    names = stored.account_names
    kinds = {event.seq: event.kind for event in stored.events}
    by_entry: dict[int, list[dict[str, Any]]] = {}
    for line in stored.lines:
        by_entry.setdefault(line.entry_no, []).append(
            {
                "account": line.account,
                "account_name": names.get(line.account, line.account),
                "debit": money(Money(line.debit)),
                "credit": money(Money(line.credit)),
            }
        )
    return {
        "loan_id": loan_id,
        "events": [
            {"seq": event.seq, "kind": event.kind, "effective": event.effective.isoformat(),
             "booked_at": event.booked_at.isoformat(), "payload": _payload(event.payload)}
            for event in stored.events
        ],
        "entries": [
            {"entry_no": entry.entry_no, "booked_date": entry.booked_date.isoformat(),
             "memo": entry.memo, "event_seq": entry.event_seq,
             "what": _entry_kind(entry.event_seq, kinds, first=index == 0),
             "lines": by_entry.get(entry.entry_no, [])}
            for index, entry in enumerate(stored.entries)
        ],
    }  # fmt: skip


def _entry_kind(event_seq: int | None, kinds: Mapping[int, str], *, first: bool) -> str:
    """What an entry books, as a code a page says in words: the event's kind, the loan's
    opening (``disbursement``, always its first entry) or an accrual (the days before an event
    or a close of business)."""
    if event_seq is not None:
        return kinds.get(event_seq, "event")
    return "disbursement" if first else "accrual"


def audit_entry(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "reason": row.reason,
        "before": row.before,
        "after": row.after,
    }


def dispatched(done: Dispatched) -> dict[str, Any]:
    return {"now": done.now.isoformat(), "sent": done.sent, "expired": done.expired,
            "held_window": done.held_window, "held_cap": done.held_cap,
            "pending": done.pending, "refused": done.refused, "unknown": done.unknown}  # fmt: skip


def queued_sms(message: QueuedSms) -> dict[str, Any]:
    """A message in the outbox, its time as the service gave it (China's)."""
    return {
        "loan_id": message.loan_id,
        "day": message.day.isoformat(),
        "stage": message.stage,
        "borrower_id": message.borrower_id,
        "phone": message.phone,
        "text": message.text,
        "status": message.status,
        "sent_at": None if message.sent_at is None else message.sent_at.isoformat(),
        "reference": message.reference,
        "reason": message.reason,
    }


def sent_sms(text: SentSms) -> dict[str, Any]:
    return {"phone": text.phone, "borrower_id": text.borrower_id, "text": text.text,
            "sent_at": text.sent_at.isoformat()}  # fmt: skip


def operator_created(made: OperatorCreated) -> dict[str, Any]:
    return {"username": made.username, "role": made.role.value}


def user(row: User) -> dict[str, Any]:
    """An operator as she is listed (never her password's hash)."""
    return {
        "username": row.username,
        "role": row.role,
        "status": "active" if row.disabled_at is None else "disabled",
        "created_at": row.created_at.isoformat(),
        "disabled_at": _iso(row.disabled_at),
    }


def operator_disabled(done: OperatorDisabled) -> dict[str, Any]:
    return {**user(done.user), "sessions_ended": done.sessions_ended}


def api_key_created(made: ApiKeyCreated) -> dict[str, Any]:
    """The one document that carries a key's secret."""
    return {"username": made.username, "key_id": made.key_id, "api_key": made.api_key}


def api_key(key: ApiKey) -> dict[str, Any]:
    """A key as it is listed: its id and dates, never its secret."""
    return {"key_id": key.key_id, "username": key.username, "revoked": key.revoked,
            "created_at": key.created_at.isoformat(), "last_used_at": _iso(key.last_used_at),
            "revoked_at": _iso(key.revoked_at)}  # fmt: skip


def code_sent(answer: CodeSent) -> dict[str, Any]:
    return {"sent": answer.sent, "expires_in_minutes": answer.expires_in_minutes,
            "again_in_seconds": answer.again_in_seconds}  # fmt: skip


def notified(recorded: Notified) -> dict[str, Any]:
    return {"order_id": recorded.order_id, "status": recorded.status.value,
            "settled_now": recorded.settled_now}  # fmt: skip


def reconciled(done: Reconciled) -> dict[str, Any]:
    """How many requests were asked about, then how many stand in each status, in the order
    the statuses are declared."""
    return {"examined": done.examined,
            **{status.value: done.statuses.get(status, 0) for status in Status}}  # fmt: skip


# -- any answer -----------------------------------------------------------------------------------


@singledispatch
def present(answer: object) -> Any:
    """The document for a service's answer: a typed value by its presenter above, a list item
    by item. A document (``dict``) is given as it is: a replayed idempotent answer (the first
    one, as it was sent)."""
    raise TypeError(f"no presenter for {type(answer).__name__}")


@present.register
def _document(answer: dict) -> Any:  # type: ignore[type-arg]
    return answer


@present.register
def _listed(answer: list) -> Any:  # type: ignore[type-arg]
    return [present(item) for item in answer]


_PRESENTERS: Sequence[tuple[type[Any], Any]] = (
    (Quote, quote), (Product, product), (LoanSummary, loan_summary), (LoanView, loan),
    (Overview, overview), (PrepaymentPreview, prepayment_preview), (Payoff, payoff),
    (PlanExplained, plan_explained), (PaymentPreview, payment_preview),
    (WaiverPreview, waiver_preview),
    (Receipt, receipt), (ListedReceipt, listed_receipt),
    (PaymentTaken, payment_taken), (Refunded, refunded), (CreditPaidBack, credit_paid_back),
    (Reversed, reversed_payment), (Waived, waived), (LoanHistory, history),
    (TrialBalance, trial_balance), (BookCheck, book_check), (AuditEntry, audit_entry),
    (Dispatched, dispatched), (QueuedSms, queued_sms), (SentSms, sent_sms),
    (BorrowerView, borrower_view), (MethodChanged, method_changed),
    (PayoutStanding, payout_standing), (ListedPayout, listed_payout),
    (PayoutSentAgain, payout_sent_again), (OperatorCreated, operator_created), (User, user),
    (OperatorDisabled, operator_disabled), (ApiKeyCreated, api_key_created), (ApiKey, api_key),
    (CodeSent, code_sent), (Notified, notified), (Reconciled, reconciled),
    (CobRun, cob_run), (CobRunReport, cob_run_report), (NothingToClose, nothing_to_close),
    (CobClosed, cob_closed), (Aging, aging),
)  # fmt: skip
for _kind, _presenter in _PRESENTERS:
    present.register(_kind, _presenter)


def document(answer: object) -> Document:
    """``present`` for an answer that is one document."""
    shown = present(answer)
    if not isinstance(shown, dict):
        raise TypeError(f"{type(answer).__name__} is presented as a list, not one document")
    return shown


def documents(answer: Sequence[object]) -> list[Document]:
    """``present`` for an answer that is a list of documents."""
    return [document(item) for item in answer]
