"""Debits through a withholding (代扣) gateway, in three phases, none of which holds a database
transaction while the gateway is asked:

1. ``open_request``: the request is committed pending, under a merchant order id derived from
   its idempotency key, so a retry after a crash is the same order and the gateway moves the
   money once;
2. ``ask``: the gateway is called with no transaction open (a slow bank holds no lock);
3. ``record``: its answer, whenever and however it comes (at once, in a notification that may be
   duplicated, late or out of order, or to the reconciler's query), is applied to the request in
   a short transaction of its own, by the rules of ``fenqi.domain.withholding``.

``reconcile`` asks the gateway about requests left open (a crash between the phases, an answer
that timed out, a notification that never came) and records what it says.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from fenqi.domain.events import Channel
from fenqi.domain.withholding import SETTLED, DebitRequest, Kind, Status
from fenqi.ports import GatewayAnswer, Gateways, UnverifiedError, WithholdingGateway
from fenqi.services.context import Context, Document, permitted, run
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import Permission
from fenqi.store.debit_requests import add_request, find_request, open_requests, save_answer
from fenqi.store.loans import now

log = logging.getLogger("fenqi.withholding")
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

    @property
    def settled_now(self) -> bool:
        """Whether this answer settled it (or turned a failure into the success it was)."""
        return self.after.status is not self.before.status and self.after.status in SETTLED


def open_request(context: Context, request: DebitRequest) -> DebitRequest:
    """Phase 1: commits ``request`` pending, or finds the one already committed by its order id
    (a retry: it is that request, as it stands, that goes on)."""
    return run(context, lambda session: add_request(session, request, now()))


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
    """Phase 3: applies the gateway's ``answer`` to its request, under the request's row lock,
    so answers arriving together are applied one after the other."""
    loan_id = _loan_of(answer.order_id)

    def work(session: Session) -> Recorded:
        request = find_request(session, loan_id, answer.order_id, for_update=True)
        if request is None:
            raise NotFoundError(f"no debit request {answer.order_id}")
        answered = request.answered(answer.outcome, answer.reference, answer.reason)
        save_answer(session, answered, now())
        return Recorded(request, answered)

    recorded = run(context, work)
    log.info(json.dumps({"event": "gateway-answer", "order_id": answer.order_id,
                         "outcome": answer.outcome.value, "was": recorded.before.status.value,
                         "now": recorded.after.status.value}))  # fmt: skip
    return recorded


def debit(context: Context, request: DebitRequest) -> Recorded:
    """The three phases for one request. A request already settled (the same idempotency key
    sent again) is not sent again: its answer stands."""
    opened = open_request(context, request)
    if opened.status in SETTLED:
        return Recorded(opened, opened)
    return record(context, ask(context, opened))


def notified(context: Context, channel: str, headers: Mapping[str, str], body: bytes) -> Document:
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
    return {
        "order_id": answer.order_id,
        "status": recorded.after.status.value,
        "settled_now": recorded.settled_now,
    }


def reconcile(context: Context, *, older_than: timedelta = RECONCILE_AFTER,
              limit: int = RECONCILE_AT_MOST) -> Document:  # fmt: skip
    """Asks the gateway about each request still open that no answer has touched for
    ``older_than``, oldest first, and records what it says: a success is booked, an order the
    gateway never had is failed, one it is still processing is left for the next round. Admins
    only (the command line's operator)."""
    permitted(context, Permission.ADMINISTER)
    gateways = _gateways(context)
    cutoff = now() - older_than
    stale = run(context, lambda session: open_requests(session, cutoff, limit))
    statuses: Counter[Status] = Counter()
    for request in stale:
        gateway = _gateway(gateways, request.channel)
        answer = (gateway.query_refund(request.order_id) if request.kind is Kind.REFUND
                  else gateway.query(request.order_id))  # fmt: skip
        statuses[record(context, answer).after.status] += 1
    return {"examined": len(stale), **{status.value: statuses[status] for status in Status}}


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
