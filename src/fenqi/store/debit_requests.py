"""The one writer of ``debit_requests``: a request is added pending, its answers recorded, and
the ones left open are found for the reconciler, and a loan's refunds for its payouts. Rows go
in and come out as ``DebitRequest``."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Insert, Row, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fenqi.domain.events import Channel, PrepayMode
from fenqi.domain.money import Money
from fenqi.domain.withholding import SETTLED, DebitRequest, Kind, Status
from fenqi.store.schema import Base, DebitRequestRow

_OPEN = (Status.PENDING.value, Status.UNKNOWN.value)


def add_request(session: Session, request: DebitRequest, at: datetime) -> DebitRequest:
    """Records ``request`` as pending, unless a request by its order id is recorded already (a
    retry after a crash, or the same request at the same moment): then that one, as it stands,
    is the answer. One statement when it is new: the insert gives way to a row already there
    (waiting for its writer's commit) instead of failing the unit of work."""
    added = session.execute(_adding(session.get_bind().dialect.name), _row(request, at)).first()
    if added is not None:
        return request
    known = find_request(session, request.loan_id, request.order_id)
    assert known is not None, "the insert gave way to a row by its order id"
    return known


@lru_cache(maxsize=2)
def _adding(dialect: str) -> Insert:
    """An insert that does nothing when the order id is taken, and says whether it wrote."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(_TABLE)
            .on_conflict_do_nothing(index_elements=[_REQUESTS.loan_id, _REQUESTS.order_id])
            .returning(_REQUESTS.order_id))  # fmt: skip


def _row(request: DebitRequest, at: datetime) -> dict[str, object]:
    return {
        "loan_id": request.loan_id, "order_id": request.order_id, "kind": request.kind.value,
        "amount": int(request.amount), "channel": request.channel.value,
        "method_id": request.method_id, "token_ref": request.token_ref,
        "idempotency_key": request.idempotency_key, "day": request.day,
        "status": request.status.value, "reference": request.reference,
        "reason": request.reason, "refers_to": request.refers_to, "attempts": request.attempts,
        "created_at": at, "updated_at": at, "settled_at": None,
        "mode": None if request.mode is None else request.mode.value,
        "due_date": request.due_date, "debit_attempt": request.debit_attempt,
        "booked": None if request.booked is None else request.booked.value,
        "booked_seq": request.booked_seq,
    }  # fmt: skip


def find_request(session: Session, loan_id: int, order_id: str, *,
                 for_update: bool = False) -> DebitRequest | None:  # fmt: skip
    found = session.execute(_FIND_LOCKED if for_update else _FIND,
                            {"loan_id": loan_id, "order_id": order_id}).first()  # fmt: skip
    return None if found is None else _request(found)


def save_answer(session: Session, request: DebitRequest, at: datetime) -> None:
    """Stores ``request`` as an answer left it (its status, reference, reason, attempts);
    ``settled_at`` keeps when it was first settled."""
    session.execute(_SAVE_SETTLED if request.status in SETTLED else _SAVE_OPEN, {
        "the_loan": request.loan_id, "the_order": request.order_id,
        "new_status": request.status.value, "new_reference": request.reference,
        "new_reason": request.reason, "new_attempts": request.attempts,
        "new_booked": None if request.booked is None else request.booked.value,
        "new_booked_seq": request.booked_seq, "at": at,
    })  # fmt: skip


def open_requests(session: Session, untouched_since: datetime, limit: int) -> list[DebitRequest]:
    """Requests still pending or unknown that no answer has touched since ``untouched_since``,
    oldest first."""
    query = (
        select(_TABLE)
        .where(_REQUESTS.status.in_(_OPEN), _REQUESTS.updated_at < untouched_since)
        .order_by(_REQUESTS.updated_at)
        .limit(limit)
    )
    return [_request(row) for row in session.execute(query)]


def loan_requests(session: Session, loan_id: int) -> list[DebitRequest]:
    """Every request of a loan (its debits and its refunds), in the order of their order ids."""
    query = select(_TABLE).where(_REQUESTS.loan_id == loan_id).order_by(_REQUESTS.order_id)
    return [_request(row) for row in session.execute(query)]


def unpaid_refunds(session: Session, limit: int) -> list[DebitRequest]:
    """The refund requests of every loan that has a refund not paid (pending, unknown or
    failed), up to ``limit`` such loans, oldest first: what an operator looks at."""
    loans = (
        select(_REQUESTS.loan_id)
        .where(_REQUESTS.kind == Kind.REFUND.value, _REQUESTS.status != Status.SUCCEEDED.value)
        .group_by(_REQUESTS.loan_id)
        .order_by(func.min(_REQUESTS.created_at))
        .limit(limit)
    )
    query = select(_TABLE).where(
        _REQUESTS.kind == Kind.REFUND.value, _REQUESTS.loan_id.in_(loans.scalar_subquery())
    )
    ordered = query.order_by(_REQUESTS.created_at, _REQUESTS.order_id)
    return [_request(row) for row in session.execute(ordered)]


def in_flight(session: Session, loan_id: int) -> Money:
    """What the loan's debits of the borrower's own (not the batch's) still in a gateway's hands
    come to: open, or taken and not booked yet."""
    return Money(int(session.scalar(_IN_FLIGHT, {"loan_id": loan_id}) or 0))


_TABLE = Base.metadata.tables[DebitRequestRow.__tablename__]
_REQUESTS = _TABLE.c
# Built once (Core, not the ORM): every debit asks them, some twice.
_ONE = (_REQUESTS.loan_id == bindparam("loan_id")) & (_REQUESTS.order_id == bindparam("order_id"))
_FIND = select(_TABLE).where(_ONE)
_FIND_LOCKED = _FIND.with_for_update()
_AT = bindparam("at", type_=_REQUESTS.updated_at.type)
_SAVE = update(_TABLE).where(
    _REQUESTS.loan_id == bindparam("the_loan"), _REQUESTS.order_id == bindparam("the_order")
)
_ANSWERED = {
    "status": bindparam("new_status"), "reference": bindparam("new_reference"),
    "reason": bindparam("new_reason"), "attempts": bindparam("new_attempts"),
    "booked": bindparam("new_booked"), "booked_seq": bindparam("new_booked_seq"),
    "updated_at": _AT,
}  # fmt: skip
_SAVE_SETTLED = _SAVE.values(**_ANSWERED, settled_at=func.coalesce(_REQUESTS.settled_at, _AT))
_SAVE_OPEN = _SAVE.values(**_ANSWERED, settled_at=None)
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
    query = select(_TABLE).where(
        _REQUESTS.loan_id.between(first, last),
        _REQUESTS.kind == Kind.COB.value,
        _REQUESTS.day == day,
    )
    locked = query.order_by(_REQUESTS.loan_id, _REQUESTS.order_id).with_for_update()
    return [_request(row) for row in session.execute(locked)]


def add_requests(
    session: Session, requests: list[DebitRequest], at: datetime
) -> list[DebitRequest]:
    """``add_request`` for a chunk's requests, with one query for those recorded already and
    one insert of the others."""
    if not requests:
        return []
    orders = [request.order_id for request in requests]
    known = {row.order_id: _request(row) for row in session.execute(
        select(_TABLE).where(_REQUESTS.order_id.in_(orders))
    )}  # fmt: skip
    new = [_row(request, at) for request in requests if request.order_id not in known]
    if new:
        session.execute(insert(_TABLE), new)
    return [known.get(request.order_id, request) for request in requests]


def _request(row: Row[Any]) -> DebitRequest:
    return DebitRequest(
        loan_id=row.loan_id, order_id=row.order_id, kind=Kind(row.kind), amount=Money(row.amount),
        channel=Channel(row.channel), method_id=row.method_id, token_ref=row.token_ref,
        idempotency_key=row.idempotency_key, day=row.day, status=Status(row.status),
        reference=row.reference, reason=row.reason, refers_to=row.refers_to,
        attempts=row.attempts, mode=None if row.mode is None else PrepayMode(row.mode),
        due_date=row.due_date, debit_attempt=row.debit_attempt,
        booked=None if row.booked is None else Status(row.booked), booked_seq=row.booked_seq,
    )  # fmt: skip
