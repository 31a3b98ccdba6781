"""Money paid back to a borrower's bound method (a credit refund, a merchant refund's payout, a
reversed payment) goes through the withholding gateway in the phases a debit takes
(``fenqi.services.withholding``), none of which holds a database transaction while the gateway
is asked:

1. ``open_payout``, in the unit of work that books the credit refund or the reversal: a pending
   refund request (``Kind.REFUND``) for each debit order the money goes back against, under a
   refund id derived from the payout's id (``C12-5``, ``V12-6``), committed with the booking, or
   gone with it when the unit is rolled back or run again on fresh state;
2. ``pay_out``, once that unit has committed: the gateway of the method's channel is asked to
   refund each request still open (``withholding.ask``), with no transaction open;
3. its answer is recorded (``withholding.record``); a refund books nothing more on the loan.

A crash between the phases leaves the request pending, and ``withholding.reconcile`` (``fenqi
gateway reconcile``) asks the gateway about the refund and records what it says. The payout's
``status`` in the answer is the gateway's word so far: pending, succeeded, or failed with the
gateway's reason. A failed payout stays on the books as paid back and is listed
(``unpaid``) until an operator sends it again (``retry``, under a new refund id) or records
that it was paid back outside the gateway (``paid_by_hand``, with the transfer's reference).

Which debit orders: a gateway refunds a debit it took, never more than it took. The payout's
money goes back against the method's debit orders on the loan that took money, the reversed
payment's own first, then the latest first, each no more than what is left of it after the
refunds already asked of it. Money the method paid in through no debit order (a payment booked
before debits went through the gateway) has nothing to be refunded against: its part of the
payout is recorded failed at once, saying so, for an operator to pay back by hand.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date

from fenqi.domain.money import Money
from fenqi.domain.withholding import SETTLED, DebitRequest, Kind, Status
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.ports import UnitOfWork
from fenqi.services import withholding
from fenqi.services.context import Context, Replayed, caller, permitted, transact
from fenqi.services.errors import NotFoundError, RefusedError, plain_text
from fenqi.services.policy import Permission, require, sees
from fenqi.services.views import ListedPayout, Payout, PayoutSentAgain, PayoutStanding

log = logging.getLogger("fenqi.payouts")
TAKEN = (Kind.PAY, Kind.PREPAY, Kind.COB)  # requests whose money a refund pays back
NO_ORDER = "no debit order took this money through the gateway: pay it back by hand"
_PAYOUT_ID = re.compile(r"([CV])([0-9]{1,10})-([0-9]{1,10})", re.ASCII | re.IGNORECASE)
_PART = re.compile(r"refund:([CV][0-9]+-[0-9]+):([0-9]+)(?:#([0-9]+))?", re.ASCII)
UNPAID_AT_MOST = 200
BY_HAND = "by-hand:"  # the reference of a part paid outside the gateway, before the transfer's
_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}", re.ASCII)


def open_payout(unit: UnitOfWork, loan_id: int, payout_id: str, method: PaymentMethod, *,
                amount: Money, day: date,
                paid_by: int | None = None) -> tuple[DebitRequest, ...]:  # fmt: skip
    """Phase 1, in the unit of work that books the payout ``payout_id``: the refund requests
    that pay ``amount`` back to ``method``, recorded pending (a part no debit order can take,
    failed). ``paid_by`` is the seq of the payment a reversal pays back: its order goes first."""
    requests = unit.debit_requests(loan_id)
    orders = [request for request in requests
              if request.kind in TAKEN and request.method_id == method.id
              and request.status is Status.SUCCEEDED]  # fmt: skip
    orders.sort(key=lambda request: (paid_by is None or request.booked_seq != paid_by,
                                     -(request.booked_seq or 0), request.order_id))  # fmt: skip
    asked = _asked_of(requests)
    parts: list[tuple[str | None, int]] = []
    left = int(amount)
    for order in orders:
        room = int(order.amount) - asked[order.order_id]
        if left > 0 and room > 0:
            parts.append((order.order_id, min(room, left)))
            left -= min(room, left)
    if left > 0:
        parts.append((None, left))
    return tuple(
        unit.add_debit_request(
            _refund(
                loan_id,
                f"refund:{payout_id}:{part}",
                method,
                refers_to=refers,
                amount=Money(share),
                day=day,
            )
        )
        for part, (refers, share) in enumerate(parts, start=1)
    )


def _refund(loan_id: int, name: str, method: PaymentMethod, *, refers_to: str | None,
            amount: Money, day: date) -> DebitRequest:  # fmt: skip
    """A refund request named ``name`` (its idempotency key: its refund id derives from it)."""
    request = DebitRequest(loan_id, withholding.order_id(loan_id, name), Kind.REFUND, amount,
                           method.channel, method.id, method.token_ref, name, day,
                           refers_to=refers_to)  # fmt: skip
    return request if refers_to is not None else replace(request, status=Status.FAILED,
                                                         reason=NO_ORDER)  # fmt: skip


def _asked_of(requests: Iterable[DebitRequest]) -> Counter[str]:
    """How much has been asked back of each debit order: each part of each payout once,
    whatever became of it (a failed part is still owed, and is sent again against its order)."""
    asked: Counter[str] = Counter()
    for request in _latest(requests).values():
        if request.refers_to is not None:
            asked[request.refers_to] += int(request.amount)
    return asked


def _latest(requests: Iterable[DebitRequest]) -> dict[tuple[str, int], DebitRequest]:
    """The latest attempt at each part of each payout among ``requests``, by (payout id, part)."""
    latest: dict[tuple[str, int], tuple[int, DebitRequest]] = {}
    for request in requests:
        named = _PART.fullmatch(request.idempotency_key)
        if request.kind is not Kind.REFUND or named is None:
            continue
        part, attempt = (named[1], int(named[2])), int(named[3] or 1)
        if part not in latest or latest[part][0] < attempt:
            latest[part] = (attempt, request)
    return {part: request for part, (_, request) in latest.items()}


def status_of(parts: Sequence[DebitRequest]) -> tuple[str, str | None]:
    """A payout's status, by the latest attempt at each of its parts: failed if one failed
    (with its reason), succeeded once all did, else pending."""
    failed = next((part for part in parts if part.status is Status.FAILED), None)
    if failed is not None:
        return Status.FAILED.value, failed.reason or "declined"
    if parts and all(part.status is Status.SUCCEEDED for part in parts):
        return Status.SUCCEEDED.value, None
    return Status.PENDING.value, None


def with_status(paid_to: Iterable[Payout], requests: Iterable[DebitRequest]) -> tuple[Payout, ...]:
    """``paid_to`` with the status of each payout to a bound method as ``requests`` say."""
    latest = _latest(requests)
    shown = []
    for paid in paid_to:
        if paid.method_id is None:
            shown.append(paid)
            continue
        parts = [request for (payout, _), request in sorted(latest.items()) if payout == paid.id]
        status, reason = status_of(parts)
        shown.append(replace(paid, status=status, reason=reason))
    return tuple(shown)


def pay_out(context: Context, requests: Iterable[DebitRequest]) -> list[DebitRequest]:
    """Phases 2 and 3, with no transaction open: the gateway asked to refund each request still
    open, and its answer recorded. A call that fails outright (no gateway configured, a refusal)
    leaves the request as it was, for the reconciler. Returns the requests as they now stand."""
    now: list[DebitRequest] = []
    for request in requests:
        if request.status in SETTLED:
            now.append(request)
            continue
        try:
            answer = withholding.ask(context, request)
        except Exception as error:  # the payout is booked: the reconciler asks about it
            log.warning(json.dumps({"event": "payout-not-asked", "order_id": request.order_id,
                                    "error": type(error).__name__}))  # fmt: skip
            now.append(request)
            continue
        now.append(withholding.record(context, answer).after)
    return now


def paid_out(context: Context, paid_to: Iterable[Payout],
             opened: Iterable[DebitRequest]) -> tuple[Payout, ...]:  # fmt: skip
    """Phases 2 and 3 of the payouts the first unit of work committed (``opened``), and
    ``paid_to`` with what the gateway said of them."""
    return with_status(paid_to, pay_out(context, opened))


def replayed(context: Context, document: Replayed) -> Replayed:
    """A result replayed under its idempotency key, with its payouts' status as it is now: a
    payout still open (the first request's answer was lost, or it crashed) is asked about
    again, under the same refund id, so it is never paid twice."""
    shown = document.get("paid_to")
    if not isinstance(shown, list) or not any(paid.get("method_id") for paid in shown):
        return document
    refreshed = []
    for paid in shown:
        if paid.get("method_id") is None:
            refreshed.append(paid)
            continue
        parts = pay_out(context, _parts(context, str(paid["id"])))
        status, reason = status_of(parts)
        refreshed.append({**paid, "status": status, "reason": reason})
    return Replayed({**document, "paid_to": refreshed})


def _parts(context: Context, payout_id: str) -> list[DebitRequest]:
    """The latest attempt at each part of a payout."""
    loan_id = _loan_of(payout_id)
    requests = transact(context, lambda unit: unit.debit_requests(loan_id))
    return [request for (payout, _), request in sorted(_latest(requests).items())
            if payout == payout_id]  # fmt: skip


def retry(context: Context, payout_id: str) -> PayoutSentAgain:
    """Sends a failed payout again: each failed part under a new refund id (``…#2``, …) against
    the same debit order, then asks the gateway as a first payout does. Only a failed payout
    is sent again; a part that no debit order can take is refused, to be paid back by hand.
    Admins and staff who pay out."""
    payout_id = payout_id.strip().upper()
    loan_id = _loan_of(payout_id)

    def again(unit: UnitOfWork) -> list[DebitRequest]:
        who = caller(context, unit)
        require(who, Permission.PAY_OUT)
        parts = _failed_parts(unit, loan_id, payout_id, "sent again")
        failed = [part for part in parts if part.status is Status.FAILED]
        if any(part.refers_to is None for part in failed):
            raise RefusedError(f"payout {payout_id} cannot go through the gateway: {NO_ORDER}")
        sent = [_again(unit, part) for part in failed]
        unit.audit(who.name, "payout.retry", f"payout:{payout_id}", "",
                   before={"reasons": [part.reason for part in failed]},
                   after={"orders": [part.order_id for part in sent]})  # fmt: skip
        return [*(part for part in parts if part.status is not Status.FAILED), *sent]

    return _standing(payout_id, loan_id, pay_out(context, transact(context, again)))


def _standing(payout_id: str, loan_id: int, parts: Sequence[DebitRequest],
              reference: str | None = None) -> PayoutSentAgain:  # fmt: skip
    """Where a payout sent again or paid by hand stands, by the latest attempt at each part."""
    status, reason = status_of(parts)
    amount = Money(sum(int(part.amount) for part in parts))
    return PayoutSentAgain(payout_id, loan_id, amount, status, reason, reference)


def _again(unit: UnitOfWork, failed: DebitRequest, *,
           by_hand: str | None = None) -> DebitRequest:  # fmt: skip
    """A failed part of a payout as a new request, under the next refund id: pending, to send
    to the gateway; or, paid ``by_hand`` (the reference of the transfer), recorded succeeded
    without the gateway ever being asked."""
    named = _PART.fullmatch(failed.idempotency_key)
    assert named is not None, "a payout's part is named by open_payout"
    name = f"refund:{named[1]}:{named[2]}#{int(named[3] or 1) + 1}"
    status, reference = Status.PENDING, None
    if by_hand is not None:
        status, reference = Status.SUCCEEDED, f"{BY_HAND}{by_hand}"
    wanted = replace(failed, order_id=withholding.order_id(failed.loan_id, name),
                     idempotency_key=name, status=status, reference=reference, reason=None,
                     attempts=0)  # fmt: skip
    return unit.add_debit_request(wanted)


def paid_by_hand(context: Context, payout_id: str, reference: str,
                 reason: str) -> PayoutSentAgain:  # fmt: skip
    """Records that the failed parts of a payout were paid back outside the gateway (a bank
    transfer, cash at a counter): each under its next refund id, succeeded, its ``reference``
    the transfer's (``by-hand:<reference>``), and the payout no longer listed as unpaid. The
    gateway is never asked: nothing is sent, so the borrower is never paid twice. Only a
    failed payout; a reason is required, and the audit log keeps who said so. Admins and staff
    who pay out."""
    payout_id = payout_id.strip().upper()
    loan_id = _loan_of(payout_id)
    reference = _transfer_reference(reference)
    reason = plain_text("the reason", reason).strip()
    if not reason:
        raise RefusedError("say why the payout was paid by hand (--reason)")

    def settle(unit: UnitOfWork) -> list[DebitRequest]:
        who = caller(context, unit)
        require(who, Permission.PAY_OUT)
        parts = _failed_parts(unit, loan_id, payout_id, "paid by hand")
        failed = [part for part in parts if part.status is Status.FAILED]
        done = [_again(unit, part, by_hand=reference) for part in failed]
        unit.audit(who.name, "payout.paid_by_hand", f"payout:{payout_id}", reason,
                   before={"reasons": [part.reason for part in failed]},
                   after={"reference": reference,
                          "orders": [part.order_id for part in done]})  # fmt: skip
        return [*(part for part in parts if part.status is not Status.FAILED), *done]

    return _standing(payout_id, loan_id, transact(context, settle), f"{BY_HAND}{reference}")


def _failed_parts(unit: UnitOfWork, loan_id: int, payout_id: str, doing: str) -> list[DebitRequest]:
    """The latest attempt at each part of payout ``payout_id``, refused unless it failed. The
    payout's first request is locked first: simultaneous retries and payments by hand of one
    payout go one at a time, each reading the attempts the one before it committed."""
    first = withholding.order_id(loan_id, f"refund:{payout_id}:1")
    if unit.debit_request(loan_id, first, for_update=True) is None:
        raise NotFoundError(f"no payout {payout_id} through a gateway")
    parts = [request for (payout, _), request in sorted(_latest(
        unit.debit_requests(loan_id)).items()) if payout == payout_id]  # fmt: skip
    status, _ = status_of(parts)
    if status != Status.FAILED.value:
        raise RefusedError(f"payout {payout_id} is {status}; only a failed payout is {doing}")
    return parts


def _transfer_reference(reference: str) -> str:
    """A transfer's reference as an id: plain ASCII letters, digits and ``.-_:/``."""
    given = reference.strip()
    if _REFERENCE.fullmatch(given) is None:
        raise RefusedError(f"{reference[:40]!r} is not a transfer reference: give up to 64 "
                           "ASCII letters, digits and . - _ : /")  # fmt: skip
    return given


def of_loan(context: Context, loan_id: int) -> list[ListedPayout]:
    """Every payout of plan ``loan_id`` to a bound method, in the order of their ids, each
    where it stands now by the latest attempt at each of its parts (succeeded, pending, or
    failed with the gateway's reason), with the references the gateway, or a transfer paid by
    hand, gave: what the console shows beside a plan's reversals and refunds. Its borrower, or
    any operator."""

    def listing(unit: UnitOfWork) -> list[DebitRequest]:
        sees(caller(context, unit), unit.loans.stamp(loan_id).borrower_id, f"loan {loan_id}")
        return unit.debit_requests(loan_id)

    shown = _shown(_latest(transact(context, listing)))
    return sorted(shown, key=lambda listed: int(listed.payout.id.split("-")[1]))


def _shown(latest: dict[tuple[str, int], DebitRequest]) -> list[ListedPayout]:
    """The payouts the latest attempts at their parts make, each once, in the order their
    first part comes in ``latest``."""
    by_payout: dict[str, list[DebitRequest]] = {}
    for (payout, _), request in sorted(latest.items(), key=lambda item: item[0][1]):
        by_payout.setdefault(payout, []).append(request)
    listed = []
    for payout, parts in by_payout.items():
        status, reason = status_of(parts)
        standing = PayoutStanding(payout, parts[0].loan_id,
                                  Money(sum(int(part.amount) for part in parts)),
                                  parts[0].channel, parts[0].method_id, status, reason)  # fmt: skip
        listed.append(ListedPayout(standing, tuple(part.reference for part in parts
                                                   if part.reference)))  # fmt: skip
    return listed


def unpaid(context: Context, *, limit: int = UNPAID_AT_MOST) -> list[PayoutStanding]:
    """The payouts the gateway has not paid (pending or failed), oldest first: what an
    operator retries, pays by hand, or leaves to the reconciler. Admins only."""
    permitted(context, Permission.ADMINISTER)
    requests = transact(context, lambda unit: unit.unpaid_refunds(limit))
    return [listed.payout for listed in _shown(_latest(requests))
            if listed.payout.status != Status.SUCCEEDED.value]  # fmt: skip


def _loan_of(payout_id: str) -> int:
    found = _PAYOUT_ID.fullmatch(payout_id.strip())
    if found is None:
        raise NotFoundError(f"{payout_id!r} is not a payout id; they look like C12-5 or V12-6")
    return int(found[2])
