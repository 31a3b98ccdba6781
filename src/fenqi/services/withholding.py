"""Debits through a withholding (代扣) gateway, in three phases, none of which holds a database
transaction while the gateway is asked:

1. ``open_request``: the request is committed pending, under a merchant order id derived from
   its idempotency key, so a retry after a crash is the same order and the gateway moves the
   money once;
2. ``ask``: the gateway is called with no transaction open (a slow bank holds no lock);
3. ``record``: its answer, whenever and however it comes (at once, in a notification that may be
   duplicated, late or out of order, or to the reconciler's query), is applied to the request by
   the rules of ``fenqi.domain.withholding`` and its outcome booked on the loan through the one
   booking path, in one short transaction: money taken is the payment (or prepayment, or the
   batch's auto-debit), once; the batch's debit that failed is its ``DebitFailed``. A booking
   retried on a stale version re-runs this phase only: the gateway is never asked again.

``collect`` is the three phases of a borrower's payment from a bound method (``pay``,
``prepay``); the nightly batch runs them a chunk at a time. ``reconcile`` asks the gateway
about requests left open (a crash between the phases, an answer that timed out, a notification
that never came) and records what it says.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from itertools import count

from fenqi.clock import stamp
from fenqi.domain.events import Channel, DebitFailed, Payment, Prepayment, PrepayMode
from fenqi.domain.money import Money
from fenqi.domain.withholding import SETTLED, DebitRequest, Kind, Status
from fenqi.loans.aggregate import Loan
from fenqi.loans.booking import Audited, book
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.ports import UnitOfWork
from fenqi.ports import GatewayAnswer, Gateways, UnverifiedError, WithholdingGateway
from fenqi.services.context import (
    Context,
    Document,
    IdempotencyKeyReusedError,
    Replayed,
    caller,
    fingerprint_of,
    held,
    permitted,
    transact,
)
from fenqi.services.errors import DeclinedError, NotFoundError, RefusedError
from fenqi.services.policy import Permission
from fenqi.services.views import LoanSummary, Notified, PaymentTaken, Reconciled
from fenqi.store.loans import now
from fenqi.wire import present

log = logging.getLogger("fenqi.withholding")
# The audit log's actor for money the gateway said it took with no caller behind the answer.
GATEWAY_ACTOR = "gateway"
# A merchant order id: its loan, then 16 hex digits of its idempotency key's SHA-256 (at most 29
# characters, within every gateway's 32). The loan is in it, so a notification finds its row.
_ORDER_ID = re.compile(r"FQ([0-9]{1,10})-[0-9A-F]{16}", re.ASCII)
RECONCILE_AFTER = timedelta(minutes=2)  # well past an answer's timeout: no call is in flight
RECONCILE_AT_MOST = 500


class UnverifiedNotificationError(RefusedError):
    """A notification whose signature does not verify: nothing it says is recorded."""


def order_id(loan_id: int, key: str) -> str:
    """The merchant order id of the request with idempotency ``key``: the same key, the same
    order, however many times it is sent."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16].upper()
    return f"FQ{loan_id}-{digest}"


@dataclass(frozen=True)
class Recorded:
    """A request before and after an answer was applied to it."""

    before: DebitRequest
    after: DebitRequest
    paid: PaymentTaken | None = None  # the payment it booked, if it booked one

    @property
    def settled_now(self) -> bool:
        """Whether this answer settled it (or turned a failure into the success it was)."""
        return self.after.status is not self.before.status and self.after.status in SETTLED


def open_request(context: Context, request: DebitRequest) -> DebitRequest:
    """Phase 1: commits ``request`` pending, or finds the one already committed by its order id
    (a retry: it is that request, as it stands, that goes on)."""
    return transact(context, lambda unit: unit.add_debit_request(request))


def ask(context: Context, request: DebitRequest) -> GatewayAnswer:
    """Phase 2: asks the gateway of the request's channel to take (or pay back) the money. Run
    with no transaction open: the gateway may take seconds, or not answer at all."""
    gateways = _gateways(context)
    gateway = _gateway(gateways, request.channel)
    if request.kind is Kind.REFUND:
        return gateway.refund(request.order_id, request.refers_to or "", request.amount)
    return gateway.request_debit(request.order_id, request.token_ref, request.amount,
                                 gateways.notify_url(request.channel))  # fmt: skip


def record(context: Context, answer: GatewayAnswer) -> Recorded:
    """Phase 3: applies the gateway's ``answer`` to its request and books its outcome on the
    loan (``settle``), under the request's row lock, so answers arriving together are applied
    one after the other."""
    recorded = _record(context, answer.order_id, answer)
    log.info(json.dumps({"event": "gateway-answer", "order_id": answer.order_id,
                         "outcome": answer.outcome.value, "was": recorded.before.status.value,
                         "now": recorded.after.status.value}))  # fmt: skip
    return recorded


def _record(
    context: Context,
    order: str,
    answer: GatewayAnswer | None,
    *,
    then: Callable[[UnitOfWork, Recorded], Recorded] | None = None,
) -> Recorded:
    """``record`` of ``answer`` (None: nothing new, the request's outcome only booked if it is
    not yet) to the request ``order``; ``then`` does more in the same unit of work."""
    loan_id = _loan_of(order)

    def work(unit: UnitOfWork) -> Recorded:
        request = unit.debit_request(loan_id, order, for_update=True)
        if request is None:
            raise NotFoundError(f"no debit request {order}")
        recorded = settle(unit, request, answer, actor_of(context, unit))
        return recorded if then is None else then(unit, recorded)

    return transact(context, work)


def settle(unit: UnitOfWork, request: DebitRequest, answer: GatewayAnswer | None,
           by: str) -> Recorded:  # fmt: skip
    """Applies ``answer`` (None: none new) to ``request``, held by this unit of work, books
    what the loan has still to book of its outcome (in the audit log as ``by``'s), and stores
    the request."""
    answered = request if answer is None else request.answered(answer.outcome, answer.reference,
                                                               answer.reason)  # fmt: skip
    booked, paid = _book_outcome(unit, answered, by)
    if booked != request:
        unit.save_debit_request(booked)
    return Recorded(request, booked, paid)


def _book_outcome(unit: UnitOfWork, request: DebitRequest,
                  by: str) -> tuple[DebitRequest, PaymentTaken | None]:  # fmt: skip
    """Books the request's outcome on its loan if it has one still to book (``to_book``): the
    payment, prepayment or auto-debit the money taken pays for, or the batch's failed debit."""
    if not request.to_book():
        return request, None
    loan = unit.loans.get(request.loan_id, for_update=True, as_of=request.day)
    method = None if request.method_id is None else unit.method(request.method_id)
    seq = loan.next_seq
    if request.status is Status.FAILED:
        failed = DebitFailed(seq, request.day, request.due_date or request.day,
                             request.debit_attempt or 1, request.reason or "declined")  # fmt: skip
        unit.loans.save(loan, book(loan, [failed], request.day, memo="auto-debit",
                                   issued=stamp()))  # fmt: skip
        return replace(request, booked=Status.FAILED, booked_seq=seq), None
    paid = money_in(unit, loan, money_event(loan, request, seq), method, by)
    return replace(request, booked=Status.SUCCEEDED, booked_seq=seq), paid


def money_event(loan: Loan, request: DebitRequest, seq: int) -> Payment | Prepayment:
    """The event money taken for ``request`` is booked as, on the loan as it is now: a
    prepayment's in its mode (full when it reaches the payoff), a payment that reaches the
    payoff while installments are still to fall due a full prepayment (``pays_off``), else a
    payment."""
    amount, day, channel = request.amount, request.day, request.channel
    if request.kind is Kind.PREPAY:
        payoff = loan.payoff_on(day)
        mode = request.mode or PrepayMode.REDUCE_INSTALLMENT
        return Prepayment(seq, day, amount, channel, mode, amount >= payoff)
    if request.kind is Kind.PAY:
        return payment_event(loan, seq, day, amount, channel, payoff=loan.payoff_on(day))
    return Payment(seq, day, amount, channel)


def payment_event(loan: Loan, seq: int, day: date, amount: Money, channel: Channel, *,
                  payoff: Money) -> Payment | Prepayment:  # fmt: skip
    """What a payment of ``amount`` is booked as: the full payoff (a prepayment) when it
    reaches ``payoff`` while installments are still to fall due (``pays_off``), else a
    payment. One rule for money taken by hand, from a gateway, and for its preview."""
    if pays_off(loan, amount, payoff, day):
        return Prepayment(seq, day, amount, channel, PrepayMode.REDUCE_INSTALLMENT, full=True)
    return Payment(seq, day, amount, channel)


def pays_off(record: Loan, amount: Money, payoff: Money, day: date) -> bool:
    """Whether a payment of ``amount`` on ``day`` is the payoff: it reaches the payoff amount
    while installments are still to fall due. Once none is, the plan has run its course, and
    paying what is owed is an ordinary payment (allocated the same way), not an early one."""
    to_come = any(row.due_date > day for row in record.state_on(day).installments)
    return amount >= payoff and to_come


def money_in(unit: UnitOfWork, record: Loan, event: Payment | Prepayment,
             method: PaymentMethod | None, actor: str) -> PaymentTaken:  # fmt: skip
    """Books money in (a payment or prepayment) and gives its receipt, with the loan after;
    the audit log says who took it (``actor``), in the same write."""
    kind = "prepayment" if isinstance(event, Prepayment) else "payment"
    memo = f"{kind} P{record.id}-{event.seq}"
    booking = book(record, [event], event.effective, memo=memo, issued=stamp(), paid_with=method)
    taken = booking.receipts[0]
    after = {"payment_id": f"P{record.id}-{event.seq}", "receipt_id": taken.receipt_id,
             "kind": kind, "amount": str(event.amount), "date": event.effective.isoformat(),
             "channel": event.channel.value,
             "method": None if method is None else method.masked_account}  # fmt: skip
    audited = Audited(actor, f"payment.{'prepay' if kind == 'prepayment' else 'take'}",
                      f"loan:{record.id}", "", after)  # fmt: skip
    unit.loans.save(record, replace(booking, audited=(audited,)))
    return PaymentTaken(taken, LoanSummary.of(record, booking.state))


def actor_of(context: Context, unit: UnitOfWork) -> str:
    """Who the audit log says moved the money: the caller, or the gateway itself for an answer
    it sent on its own (a notification) with no caller behind it."""
    if context.principal is None and context.credential is None:
        return GATEWAY_ACTOR
    return caller(context, unit).name


# -- a borrower's payment from a bound method -----------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """What phase 1 of a payment decided to take from a bound method."""

    kind: Kind
    amount: Money
    method: PaymentMethod
    day: date
    mode: PrepayMode | None = None


class PaymentPendingError(RefusedError):
    """The gateway has not said yet whether it took the money: nothing is booked until it does
    (a notification, or the reconciler's query), and sending the payment again with the same
    idempotency key asks about the same order, never for the money twice."""


def collect(context: Context, loan_id: int, request: Document,
            decide: Callable[[UnitOfWork], PaymentTaken | Wanted], *,
            key: str | None,
            guard: Callable[[UnitOfWork], object]) -> PaymentTaken | Replayed:  # fmt: skip
    """A payment in its phases. ``decide`` runs in the first unit of work (the loan locked):
    it books money taken by hand at once and returns the payment taken (one transaction, as any
    other write), or says what to take from a bound method (``Wanted``): that request is
    committed pending, the gateway asked with no transaction open, and the answer recorded and
    booked in a last unit of work. With an idempotency ``key``, the same key and request give
    the first result back, and a request still open under it is asked about, never sent anew.
    ``guard`` (who may pay) runs first in that unit, before any stored result is looked at."""
    scope, client_key = f"loan:{loan_id}", key
    key = key or uuid.uuid4().hex
    printed = fingerprint_of(request)

    def first(unit: UnitOfWork) -> PaymentTaken | Replayed | tuple[DebitRequest, PaymentMethod]:
        guard(unit)
        if client_key is not None:
            seen = held(unit, scope, client_key, printed)
            if seen is not None:
                return seen
        wanted = decide(unit)
        if not isinstance(wanted, Wanted):
            if client_key is not None:
                unit.remember(scope, client_key, printed, present(wanted))
            return wanted
        return _request_for(unit, loan_id, key, wanted), wanted.method

    opened = transact(context, first)
    if not isinstance(opened, tuple):
        return opened
    asking, method = opened
    answer = None if asking.status in SETTLED else ask(context, asking)
    return _paid(context, asking, answer, method, scope=scope, key=client_key, printed=printed)


def _request_for(unit: UnitOfWork, loan_id: int, key: str, wanted: Wanted) -> DebitRequest:
    """The request under the idempotency ``key``: the one recorded already (a retry, to be
    asked about), or a new one. A request under the key the gateway declined is followed by a
    new order (``<key>#2``, …): the borrower may pay again once her method holds the money."""
    for attempt in count(1):
        named = key if attempt == 1 else f"{key}#{attempt}"
        order = order_id(loan_id, f"{wanted.kind.value}:{loan_id}:{named}")
        known = unit.debit_request(loan_id, order)
        if known is not None and known.status is Status.FAILED and known.booked is None:
            continue
        if known is not None:
            if (known.amount, known.method_id, known.day) != (wanted.amount, wanted.method.id,
                                                              wanted.day):  # fmt: skip
                raise IdempotencyKeyReusedError(
                    f"idempotency key {key!r} was already used for a different request; "
                    "use a new key for a new request"
                )
            return known
        method = wanted.method
        return unit.add_debit_request(DebitRequest(
            loan_id, order, wanted.kind, wanted.amount, method.channel, method.id,
            method.token_ref, f"{wanted.kind.value}:{loan_id}:{named}", wanted.day,
            mode=wanted.mode,
        ))  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover


def _paid(context: Context, opened: DebitRequest, answer: GatewayAnswer | None,
          method: PaymentMethod, *, scope: str, key: str | None,
          printed: str) -> PaymentTaken:  # fmt: skip
    """Phase 3 of a payment: the answer recorded and booked, and the receipt remembered under
    the idempotency key; a decline, or no answer yet, is said."""

    def remember(unit: UnitOfWork, recorded: Recorded) -> Recorded:
        paid = recorded.paid
        if paid is None and recorded.after.booked is Status.SUCCEEDED:
            paid = _receipt_of(unit, recorded.after)  # booked before: by a notification
            recorded = replace(recorded, paid=paid)
        if paid is not None and key is not None and unit.recall(scope, key) is None:
            unit.remember(scope, key, printed, present(paid))
        return recorded

    recorded = _record(context, opened.order_id, answer, then=remember)
    after = recorded.after
    if recorded.paid is not None:
        return recorded.paid
    if after.status is Status.FAILED:
        raise DeclinedError(
            f"{method.kind} {method.masked_account} declined: {after.reason or 'declined'}"
        ).coded("payment-declined", channel=method.kind, account=method.masked_account)
    raise PaymentPendingError(
        f"the gateway has not said yet whether it took {after.amount} (order {after.order_id}); "
        "it is booked when it does: send the payment again with the same idempotency key to ask"
    ).coded("payment-pending", amount=after.amount)


def _receipt_of(unit: UnitOfWork, request: DebitRequest) -> PaymentTaken | None:
    """The payment a request booked earlier: its receipt, with the loan as it is now."""
    if request.booked_seq is None:
        return None
    receipt = unit.loans.receipt(request.loan_id, request.booked_seq)
    if receipt is None:
        return None
    loan = unit.loans.get(request.loan_id)
    state = loan.state_on(loan.booking_day(request.day))
    return PaymentTaken(receipt, LoanSummary.of(loan, state))


def debit(context: Context, request: DebitRequest) -> Recorded:
    """The three phases for one request. A request already settled (the same idempotency key
    sent again) is not sent again: its answer stands."""
    opened = open_request(context, request)
    if opened.status in SETTLED:
        return Recorded(opened, opened)
    return record(context, ask(context, opened))


def notified(context: Context, channel: str, headers: Mapping[str, str], body: bytes) -> Notified:
    """A notification from the gateway of ``channel``: verified by its signature, then recorded.
    The same notification again, or a stale one, changes nothing."""
    try:
        gateway = _gateway(_gateways(context), Channel(channel))
    except (RefusedError, ValueError, KeyError):  # no gateways at all, or none for that channel
        raise NotFoundError(f"no gateway sends notifications for {channel!r}") from None
    try:
        answer = gateway.read_notification(headers, body)
    except UnverifiedError:
        raise UnverifiedNotificationError(
            "the notification's signature cannot be verified; nothing was recorded"
        ) from None
    recorded = record(context, answer)
    return Notified(answer.order_id, recorded.after.status, recorded.settled_now)


def reconcile(context: Context, *, older_than: timedelta = RECONCILE_AFTER,
              limit: int = RECONCILE_AT_MOST) -> Reconciled:  # fmt: skip
    """Asks the gateway about each request still open that no answer has touched for
    ``older_than``, oldest first, and records what it says: a success is booked, an order the
    gateway never had is failed, one it is still processing is left for the next round. Admins
    only (the command line's operator)."""
    permitted(context, Permission.ADMINISTER)
    gateways = _gateways(context)
    cutoff = now() - older_than
    stale = transact(context, lambda unit: unit.open_debit_requests(cutoff, limit))
    statuses: Counter[Status] = Counter()
    for request in stale:
        gateway = _gateway(gateways, request.channel)
        answer = (gateway.query_refund(request.order_id) if request.kind is Kind.REFUND
                  else gateway.query(request.order_id))  # fmt: skip
        statuses[record(context, answer).after.status] += 1
    return Reconciled(len(stale), statuses)


def _gateways(context: Context) -> Gateways:
    if context.gateways is None:
        raise RefusedError("no withholding gateway is configured: set FENQI_GATEWAY_URL")
    return context.gateways


def _gateway(gateways: Gateways, channel: Channel) -> WithholdingGateway:
    return gateways.for_channel(channel)


def _loan_of(order: str) -> int:
    matched = _ORDER_ID.fullmatch(order)
    if matched is None:
        raise NotFoundError(f"no debit request {order}")
    return int(matched.group(1))
