"""A withholding (代扣) request's life: what each answer from the gateway does to it.

A request is committed as ``pending`` before the gateway is asked. The gateway's answer comes
back synchronously, or later in a notification that may be duplicated, late or out of order, or
is fetched by the reconciler's query; any of them is applied here, and applying the same answer
twice, or an older one after a newer, changes nothing.

The rules are those of a lender whose books must hold the money that moved:
- money the gateway took is booked once, whenever its word comes: a success is recorded over a
  request left ``unknown`` (the call timed out) and even over one recorded as ``failed`` on the
  lender's own inference (the gateway had no such order when the reconciler asked), because the
  money is in the lender's account either way; a success already recorded stays the only one;
- a failure is final only when the gateway says so, and never undoes a success;
- "still processing" and "no answer" say nothing new about a request already settled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum

from fenqi.domain.events import Channel, PrepayMode
from fenqi.domain.money import Money


class Status(StrEnum):
    """Where a request stands in the lender's records."""

    PENDING = "pending"  # committed; the gateway not yet asked, or asked and still processing
    UNKNOWN = "unknown"  # asked, and no answer came (timed out, connection lost, unverifiable)
    SUCCEEDED = "succeeded"  # the gateway took the money
    FAILED = "failed"  # the gateway declined, or never had the order


class Outcome(StrEnum):
    """What the gateway says (or what its silence means) about an order."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PROCESSING = "processing"  # accepted, the answer to come by notification or query
    NO_ANSWER = "no-answer"  # the call timed out or its answer could not be trusted
    NOT_FOUND = "not-found"  # a query: the gateway has no order by that id


SETTLED = frozenset({Status.SUCCEEDED, Status.FAILED})


def after(status: Status, outcome: Outcome) -> Status:
    """The request's status once ``outcome`` is applied to a request in ``status``."""
    if outcome is Outcome.SUCCEEDED:
        return Status.SUCCEEDED
    if status in SETTLED:
        return status
    if outcome in (Outcome.FAILED, Outcome.NOT_FOUND):
        return Status.FAILED
    if outcome is Outcome.NO_ANSWER:
        return Status.UNKNOWN
    return status  # processing: still pending, or still unknown until someone says


class Kind(StrEnum):
    """What a request is for: the borrower's payment or prepayment, the batch's due-date debit,
    or a refund of an earlier debit."""

    PAY = "pay"
    PREPAY = "prepay"
    COB = "cob"
    REFUND = "refund"


@dataclass(frozen=True)
class DebitRequest:
    """One request to a gateway, as the lender records it: ``order_id`` is the merchant order id
    it is sent under, the same for every retry of the same request."""

    loan_id: int
    order_id: str
    kind: Kind
    amount: Money
    channel: Channel
    method_id: int | None
    token_ref: str
    idempotency_key: str
    day: date  # the business day its payment is booked on
    status: Status = Status.PENDING
    reference: str | None = None
    reason: str | None = None
    refers_to: str | None = None  # a refund: the debit order it pays back (None: none took it)
    attempts: int = 0  # how many answers came: the call's, notifications, queries
    mode: PrepayMode | None = None  # a prepayment: how it repays
    due_date: date | None = None  # the batch's debit: the installment it is for
    debit_attempt: int | None = None  # the batch's debit: its attempt at that installment
    booked: Status | None = None  # the outcome booked on the loan, once one is
    booked_seq: int | None = None  # the loan's event that booked it

    def to_book(self) -> bool:
        """Whether the loan has an outcome of this request still to book: money the gateway
        took, once; a failure of the batch's debit (dunning and the retries follow it), once
        and never after a success. A declined payment of the borrower's books nothing: she is
        told at once. A refund books nothing either: the payout it pays was booked when the
        request was committed (``fenqi.services.payouts``)."""
        if self.kind is Kind.REFUND:
            return False
        if self.status is Status.SUCCEEDED:
            return self.booked is not Status.SUCCEEDED
        return self.status is Status.FAILED and self.kind is Kind.COB and self.booked is None

    def answered(self, outcome: Outcome, reference: str | None,
                 reason: str | None) -> DebitRequest:  # fmt: skip
        """The request once the gateway's ``outcome`` is applied (``after``); the gateway's
        reference and reason are kept as the answer that settled it gave them."""
        status = after(self.status, outcome)
        settling = status is not self.status and status in SETTLED
        return replace(self, status=status, attempts=self.attempts + 1,
                       reference=reference if settling else self.reference or reference,
                       reason=reason if settling else self.reason)  # fmt: skip
