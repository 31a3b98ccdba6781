"""The one writer of ``debit_requests``: a request is added pending, its answers recorded, and
the ones left open are found for the reconciler, and a loan's refunds for its payouts. Rows go
in and come out as ``DebitRequest``."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from fenqi.domain.events import Channel, PrepayMode
from fenqi.domain.money import Money
from fenqi.domain.withholding import SETTLED, DebitRequest, Kind, Status
from fenqi.store.schema import DebitRequestRow

_OPEN = (Status.PENDING.value, Status.UNKNOWN.value)


def add_request(session: Session, request: DebitRequest, at: datetime) -> DebitRequest:
    """Records ``request`` as pending, unless a request by its order id is recorded already (a
    retry after a crash): then that one, as it stands, is the answer."""
    known = find_request(session, request.loan_id, request.order_id)
    if known is not None:
        return known
    _insert(session, request, at)
    session.flush()
    return request


def _insert(session: Session, request: DebitRequest, at: datetime) -> None:
    session.add(DebitRequestRow(
        loan_id=request.loan_id, order_id=request.order_id, kind=request.kind.value,
        amount=int(request.amount), channel=request.channel.value, method_id=request.method_id,
        token_ref=request.token_ref, idempotency_key=request.idempotency_key, day=request.day,
        status=request.status.value, reference=request.reference, reason=request.reason,
        refers_to=request.refers_to, attempts=request.attempts, created_at=at, updated_at=at,
        settled_at=None, mode=None if request.mode is None else request.mode.value,
        due_date=request.due_date, debit_attempt=request.debit_attempt,
        booked=None if request.booked is None else request.booked.value,
        booked_seq=request.booked_seq,
    ))  # fmt: skip


def find_request(session: Session, loan_id: int, order_id: str, *,
                 for_update: bool = False) -> DebitRequest | None:  # fmt: skip
    query = select(DebitRequestRow).where(
        DebitRequestRow.loan_id == loan_id, DebitRequestRow.order_id == order_id
    )
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    return None if row is None else _request(row)


def save_answer(session: Session, request: DebitRequest, at: datetime) -> None:
    """Stores ``request`` as an answer left it (its status, reference, reason, attempts);
    ``settled_at`` keeps when it was first settled."""
    settled = request.status in SETTLED
    settled_at = func.coalesce(DebitRequestRow.settled_at, at) if settled else None
    session.execute(
        update(DebitRequestRow)
        .where(
            DebitRequestRow.loan_id == request.loan_id, DebitRequestRow.order_id == request.order_id
        )
        .values(
            status=request.status.value,
            reference=request.reference,
            reason=request.reason,
            attempts=request.attempts,
            booked=None if request.booked is None else request.booked.value,
            booked_seq=request.booked_seq,
            updated_at=at,
            settled_at=settled_at,
        )
    )


def open_requests(session: Session, untouched_since: datetime, limit: int) -> list[DebitRequest]:
    """Requests still pending or unknown that no answer has touched since ``untouched_since``,
    oldest first."""
    query = (
        select(DebitRequestRow)
        .where(DebitRequestRow.status.in_(_OPEN), DebitRequestRow.updated_at < untouched_since)
        .order_by(DebitRequestRow.updated_at)
        .limit(limit)
    )
    return [_request(row) for row in session.scalars(query)]


def loan_requests(session: Session, loan_id: int) -> list[DebitRequest]:
    """Every request of a loan (its debits and its refunds), in the order of their order ids."""
    query = select(DebitRequestRow).where(DebitRequestRow.loan_id == loan_id)
    return [_request(row) for row in session.scalars(query.order_by(DebitRequestRow.order_id))]


def unpaid_refunds(session: Session, limit: int) -> list[DebitRequest]:
    """The refund requests of every loan that has a refund not paid (pending, unknown or
    failed), up to ``limit`` such loans, oldest first: what an operator looks at."""
    loans = (
        select(DebitRequestRow.loan_id)
        .where(DebitRequestRow.kind == Kind.REFUND.value,
               DebitRequestRow.status != Status.SUCCEEDED.value)
        .group_by(DebitRequestRow.loan_id)
        .order_by(func.min(DebitRequestRow.created_at))
        .limit(limit)
    )  # fmt: skip
    query = select(DebitRequestRow).where(
        DebitRequestRow.kind == Kind.REFUND.value, DebitRequestRow.loan_id.in_(loans)
    )
    ordered = query.order_by(DebitRequestRow.created_at, DebitRequestRow.order_id)
    return [_request(row) for row in session.scalars(ordered)]


def in_flight(session: Session, loan_id: int) -> Money:
    """What the loan's debits of the borrower's own (not the batch's) still in a gateway's hands
    come to: open, or taken and not booked yet."""
    return Money(int(session.scalar(_IN_FLIGHT, {"loan_id": loan_id}) or 0))


_REQUESTS = DebitRequestRow.__table__.c
# Built once: asked by every payment, before its limit is known.
_IN_FLIGHT = select(func.coalesce(func.sum(_REQUESTS.amount), 0)).where(
    _REQUESTS.loan_id == bindparam("loan_id"),
    _REQUESTS.kind.in_((Kind.PAY.value, Kind.PREPAY.value)),
    or_(_REQUESTS.status.in_(_OPEN),
        and_(_REQUESTS.status == Status.SUCCEEDED.value, _REQUESTS.booked.is_(None))),
)  # fmt: skip


def chunk_requests(session: Session, day: date, first: int, last: int) -> list[DebitRequest]:
    """The batch's debit requests of ``day`` for the loans of ids ``first`` to ``last``, their
    rows locked (before the loans': the order every writer of both takes them in)."""
    query = select(DebitRequestRow).where(
        DebitRequestRow.loan_id.between(first, last),
        DebitRequestRow.kind == Kind.COB.value,
        DebitRequestRow.day == day,
    )
    locked = query.order_by(DebitRequestRow.loan_id, DebitRequestRow.order_id).with_for_update()
    return [
        _request(row) for row in session.scalars(locked.execution_options(populate_existing=True))
    ]


def add_requests(
    session: Session, requests: list[DebitRequest], at: datetime
) -> list[DebitRequest]:
    """``add_request`` for a chunk's requests, with one query for those recorded already."""
    if not requests:
        return []
    orders = [request.order_id for request in requests]
    known = {row.order_id: _request(row) for row in session.scalars(
        select(DebitRequestRow).where(DebitRequestRow.order_id.in_(orders))
    )}  # fmt: skip
    for request in requests:
        if request.order_id not in known:
            _insert(session, request, at)
    session.flush()
    return [known.get(request.order_id, request) for request in requests]


def _request(row: DebitRequestRow) -> DebitRequest:
    return DebitRequest(
        loan_id=row.loan_id, order_id=row.order_id, kind=Kind(row.kind), amount=Money(row.amount),
        channel=Channel(row.channel), method_id=row.method_id, token_ref=row.token_ref,
        idempotency_key=row.idempotency_key, day=row.day, status=Status(row.status),
        reference=row.reference, reason=row.reason, refers_to=row.refers_to,
        attempts=row.attempts, mode=None if row.mode is None else PrepayMode(row.mode),
        due_date=row.due_date, debit_attempt=row.debit_attempt,
        booked=None if row.booked is None else Status(row.booked), booked_seq=row.booked_seq,
    )  # fmt: skip
