"""The wire format shared by ``--json`` and the HTTP API: money as "1234.56", rates as
decimal-fraction strings with six decimals, dates ISO 8601."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from fenqi.domain.corrections import Consequences
from fenqi.domain.events import Payment, Prepayment
from fenqi.domain.loan import Allocation, InstallmentState, LoanState, PayoffQuote
from fenqi.domain.money import Money
from fenqi.domain.products import Component, Product
from fenqi.domain.quote import Quote
from fenqi.domain.rates import Rate, format_rate
from fenqi.domain.schedule import Installment

if TYPE_CHECKING:
    from fenqi.loans.aggregate import Loan
    from fenqi.loans.ports import History


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


class _CobRun(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def business_date(self) -> date: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def caught_up_from(self) -> date | None: ...
    @property
    def counts(self) -> dict[str, Any]: ...


class _CobJob(Protocol):
    @property
    def chunk_no(self) -> int: ...
    @property
    def first_loan_id(self) -> int: ...
    @property
    def last_loan_id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def worker(self) -> str | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def counts(self) -> dict[str, Any] | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def error(self) -> str | None: ...


class _AuditEntry(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def before(self) -> dict[str, Any] | None: ...
    @property
    def after(self) -> dict[str, Any] | None: ...


def money(amount: Money) -> str:
    return str(amount)


def rate(value: Rate) -> str:
    return format_rate(value, 6)


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
    return {
        "id": row.id,
        "borrower_id": row.borrower_id,
        "kind": row.kind,
        "masked_account": row.masked_account,
        "default": row.is_default,
        "status": row.status,
    }


def loan_installment(row: InstallmentState) -> dict[str, Any]:
    return {
        **_bill(row),
        "late_fee": money(row.late_fee),
        "penalty": money(row.penalty),
        "payment": money(row.payment),
        "paid": money(row.paid),
        "outstanding": money(row.outstanding),
        "status": row.status.value,
        "dpd": row.dpd,
    }


def loan_summary(record: Loan, state: LoanState) -> dict[str, Any]:
    return {
        "id": record.id,
        "borrower_id": record.borrower_id,
        "order_id": record.order_id,
        "merchant": record.merchant,
        "item": record.item,
        "product": record.product_code,
        "principal": money(record.terms.principal),
        "periods": record.terms.periods,
        "method": record.terms.method.value,
        "start": record.terms.start.isoformat(),
        "as_of": state.as_of.isoformat(),
        "status": state.status.value,
        "dpd": state.dpd,
        "bucket": state.bucket,
        "outstanding_principal": money(state.outstanding_principal),
        "outstanding_interest": money(state.outstanding_interest),
        "outstanding_fee": money(state.outstanding_fee),
        "outstanding_penalty": money(state.outstanding_penalty),
        "credit_balance": money(state.credit_balance),
        "amount_due": money(state.amount_due),
        "written_off_on": None if state.write_off is None else state.write_off.day.isoformat(),
        "recovered": money(state.recovered),
    }


def loan(record: Loan, state: LoanState) -> dict[str, Any]:
    return {
        **loan_summary(record, state),
        "installments": [loan_installment(row) for row in state.installments],
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


def payoff(loan_id: int, offer: PayoffQuote) -> dict[str, Any]:
    parts = offer.breakdown
    return {
        "loan_id": loan_id,
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


def receipt(
    record: Loan,
    state: LoanState,
    event: Payment | Prepayment,
    paid_with: _Method | None,
    issued: datetime,
) -> dict[str, Any]:
    """A numbered receipt (凭证): what was paid, how it was applied, what is left."""
    loan_id, seq = record.id, event.seq
    allocation = state.allocations.get(seq, Allocation((), Money(0)))
    return {
        "id": f"R{loan_id}-{seq}",
        "receipt_id": f"R{loan_id}-{seq}",
        "payment_id": f"P{loan_id}-{seq}",
        "kind": "prepayment" if isinstance(event, Prepayment) else "payment",
        "loan_id": loan_id,
        "order_id": record.order_id,
        "merchant": record.merchant,
        "item": record.item,
        "date": event.effective.isoformat(),
        "amount": money(event.amount),
        "channel": event.channel.value,
        "method": None if paid_with is None else method(paid_with),
        "principal": money(allocation.total(Component.PRINCIPAL)),
        "interest": money(allocation.total(Component.INTEREST)),
        "fee": money(allocation.total(Component.FEE)),
        "penalty": money(allocation.total(Component.PENALTY)),
        "to_credit": money(allocation.to_credit),
        "allocation": [
            {"period": part.period, "component": part.component.value, "amount": money(part.amount)}
            for part in allocation.applied
        ],
        "outstanding_principal": money(state.outstanding_principal),
        "issued_at": issued.isoformat(),
    }


def trial_balance(rows: list[tuple[str, int, int]], names: dict[str, str]) -> dict[str, Any]:
    total_debit, total_credit = sum(row[1] for row in rows), sum(row[2] for row in rows)
    return {
        "accounts": [
            {
                "account": account,
                "name": names.get(account, account),
                "debit": money(Money(debit)),
                "credit": money(Money(credit)),
                "balance": money(Money(debit - credit)),
            }
            for account, debit, credit in rows
        ],
        "total_debit": money(Money(total_debit)),
        "total_credit": money(Money(total_credit)),
        "balanced": total_debit == total_credit,
    }


def difference(
    loan_id: int, account: str, booked: dict[str, int], expected: dict[str, int]
) -> dict[str, Any]:
    return {
        "loan_id": loan_id,
        "account": account,
        "booked": money(Money(booked.get(account, 0))),
        "replayed": money(Money(expected.get(account, 0))),
    }


def cob_run(row: _CobRun, chunks: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A run; ``chunks``, its chunk figures as they stand, replace those it was settled with
    (a run still running has none)."""
    counts = {**row.counts, **(chunks or {})}
    for amount in ("debited", "failed_amount"):
        if amount in counts:
            counts[amount] = money(Money(counts[amount]))
    return {
        "id": row.id,
        "business_date": row.business_date.isoformat(),
        "status": row.status,
        "started_at": row.started_at.isoformat(),
        "finished_at": None if row.finished_at is None else row.finished_at.isoformat(),
        "error": row.error,
        "caught_up_from": None if row.caught_up_from is None else row.caught_up_from.isoformat(),
        **counts,
    }


COB_NOTHING_TO_DO = "nothing_to_do"


def cob_nothing_to_do(day: date, caught_up_from: date | None = None) -> dict[str, Any]:
    """A business day on which no loan had work the batch had not closed: no run was recorded,
    so it has no id, no times and no counts (the keys of a run, for a reader of either); the
    first earlier day closed before it, if any were."""
    figures = ("loans", "debits_tried", "debits_succeeded", "debits_failed", "sms_queued",
               "write_offs", "rows", "chunks", "chunks_done", "chunks_failed")  # fmt: skip
    return {
        "id": None,
        "business_date": day.isoformat(),
        "status": COB_NOTHING_TO_DO,
        "started_at": None,
        "finished_at": None,
        "error": None,
        "caught_up_from": None if caught_up_from is None else caught_up_from.isoformat(),
        **dict.fromkeys(figures, 0),
        "debited": money(Money(0)),
        "failed_amount": money(Money(0)),
        "newly_overdue": {},
        "detail": f"nothing to do: no loan has work on {day.isoformat()} that the batch has not "
        "closed; no run was recorded",
    }


def cob_job(row: _CobJob) -> dict[str, Any]:
    return {
        "chunk_no": row.chunk_no,
        "first_loan_id": row.first_loan_id,
        "last_loan_id": row.last_loan_id,
        "status": row.status,
        "worker": row.worker,
        "finished_at": None if row.finished_at is None else row.finished_at.isoformat(),
        "loans": (row.counts or {}).get("loans", 0),
        "attempts": row.attempts,
        "error": row.error,
    }


def aging(day: date, counts: Mapping[str, int], principal: Mapping[str, int],
          unclosed: int) -> dict[str, Any]:  # fmt: skip
    """Loans and outstanding principal per bucket; ``unclosed`` loans still await the batch."""
    names = [f"M{n}" for n in range(8)] + ["written_off"]
    return {
        "date": day.isoformat(),
        "buckets": [
            {"bucket": name, "loans": counts.get(name, 0),
             "outstanding_principal": money(Money(principal.get(name, 0)))}
            for name in names
        ],
        "total_loans": sum(counts.values()),
        "total_outstanding_principal": money(Money(sum(principal.values()))),
        "loans_not_yet_closed": unclosed,
    }  # fmt: skip


def _payload(stored: Mapping[str, Any]) -> dict[str, Any]:
    """An event's details as the wire shows them: its amount (fen in the store) in yuan."""
    return {name: money(Money(value)) if name == "amount" else value
            for name, value in stored.items()}  # fmt: skip


def history(loan_id: int, stored: History) -> dict[str, Any]:
    """A loan's events and journal; each line names its account from the chart of accounts."""
    names = stored.account_names
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
             "lines": by_entry.get(entry.entry_no, [])}
            for entry in stored.entries
        ],
    }  # fmt: skip


def audit_entry(row: _AuditEntry) -> dict[str, Any]:
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
