"""Checkpoints: a long history need not be replayed from the start every night.

A checkpoint is the fold's working state as plain JSON values (dates as ordinals), which the store
keeps beside the loan; the next replay takes it up and applies only the events recorded since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from operator import attrgetter
from typing import Any

from fenqi.domain.events import Channel, Event, Reversal
from fenqi.domain.loan.working import Bill, WorkingLoan
from fenqi.domain.products import Product
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import Terms

CHECKPOINT_VERSION = 3  # bumped whenever the fold's working state or its rules change


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


def saved(loan: WorkingLoan) -> dict[str, object]:
    """The working state as plain JSON values (dates as ordinals). A payment's allocation
    and a payoff's breakdown are history, not working state: they are left out."""
    return {
        "now": loan.now.toordinal(),
        "bills": [_bill_values(bill) for bill in loan.bills],
        "credit": loan.credit,
        "cash_in": {str(channel): amount for channel, amount in loan.cash_in.items()},
        "cash_out": {str(channel): amount for channel, amount in loan.cash_out.items()},
        "merchant_refunds": loan.merchant_refunds,
        "priced_principal": loan.priced_principal,
        "level": loan.level,
        "regular_part": loan.regular_part,
        "reamortised": loan.reamortised,
        "cancelled": loan.cancelled,
        "first_open": loan.first_open,
        "failed_debits": [[due.toordinal(), n] for due, n in loan.failed_debits.items()],
        "recovered": loan.recovered,
        "credit_refunds": [[seq, amount] for seq, amount in loan.credit_refunds.items()],
    }


def restore(
    terms: Terms, policy: Product, penalty_rate: Rate, fold: Mapping[str, Any]
) -> WorkingLoan:
    """The working state a checkpoint's ``fold`` holds (the inverse of ``saved``)."""
    loan = WorkingLoan(terms, policy, penalty_rate)
    loan.bills = [_restored_bill(values) for values in fold["bills"]]
    loan.now = date.fromordinal(fold["now"])
    loan.credit = fold["credit"]
    loan.cash_in = {Channel(channel): amount for channel, amount in fold["cash_in"].items()}
    loan.cash_out = {Channel(channel): amount for channel, amount in fold["cash_out"].items()}
    loan.merchant_refunds = fold["merchant_refunds"]
    loan.priced_principal = fold["priced_principal"]
    loan.level, loan.regular_part = fold["level"], fold["regular_part"]
    loan.reamortised, loan.cancelled = fold["reamortised"], fold["cancelled"]
    loan.first_open = fold["first_open"]
    loan.failed_debits = {date.fromordinal(due): n for due, n in fold["failed_debits"]}
    loan.recovered = fold["recovered"]
    loan.credit_refunds = dict(fold["credit_refunds"])
    return loan


# A working installment is saved as the list of its fields' values in the order of their names:
# the names, repeated for every installment, would make most of the document.
_BILL_FIELDS = tuple(sorted(Bill.__slots__))
_BILL_DATES = frozenset({"due", "accrued_to", "cleared_on"})
_bill_fields = attrgetter(*_BILL_FIELDS)
_DATE_AT = tuple(index for index, name in enumerate(_BILL_FIELDS) if name in _BILL_DATES)


def _bill_values(bill: Bill) -> list[object]:
    """A working installment as JSON values, in ``_BILL_FIELDS`` order (dates as ordinals)."""
    values: list[object] = list(_bill_fields(bill))
    for index in _DATE_AT:
        if values[index] is not None:
            values[index] = values[index].toordinal()  # type: ignore[attr-defined]
    return values


def _restored_bill(values: Sequence[Any]) -> Bill:
    """The installment ``_bill_values`` saved (in the order of ``_BILL_FIELDS``)."""
    bill = Bill.__new__(Bill)  # every field is set below: no need to start from a fresh one
    (accrued_to, cleared_on, bill.done, due, bill.fee, bill.interest,
     bill.late_assessed, bill.late_fee, bill.paid_fee, bill.paid_interest, bill.paid_penalty,
     bill.paid_principal, bill.penalty_days, bill.period, bill.principal, bill.waived_fee,
     bill.waived_penalty) = values  # fmt: skip
    bill.due, bill.accrued_to = date.fromordinal(due), date.fromordinal(accrued_to)
    bill.cleared_on = None if cleared_on is None else date.fromordinal(cleared_on)
    return bill
