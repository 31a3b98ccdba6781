"""What every service runs with, and the unit of work it runs in.

A unit of work is one database transaction: load, call the domain, store events and postings.
A unit that writes a loan locks its row first (``loans.get(..., for_update=True)``), so writers
of one loan take turns in the order they came; should another writer still have changed it first
(the version check stays as a second guard), the whole unit is run again on fresh state, and when
the retries run out the request is refused as a conflict, to be sent again.
A request with an idempotency key stores its result with the key and a fingerprint of the
request: the same key and request replay that result; the same key with another request is
refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from fenqi.domain.errors import InvariantError
from fenqi.loans.ports import Stamp, UnitOfWork, Units
from fenqi.ports import Gateways, PaymentChannel, SmsGateway
from fenqi.services.bills import KeptBills
from fenqi.services.errors import (
    ConflictError,
    InFlightError,
    NotFoundError,
    RefusedError,
    plain_text,
)
from fenqi.services.policy import (
    Credential,
    Permission,
    Principal,
    UnauthenticatedError,
    require,
)
from fenqi.store.database import for_reading, turn
from fenqi.store.errors import (
    BrokenConstraintError,
    BusyError,
    MissingError,
    StaleError,
    is_known_conflict,
)
from fenqi.store.loans import now
from fenqi.store.schema import AuditLogRow
from fenqi.store.units import DatabaseUnitOfWork

T = TypeVar("T")
Document = dict[str, Any]
ATTEMPTS = 12
log = logging.getLogger("fenqi")
BACKOFF_SECONDS = 0.002


class IdempotencyKeyReusedError(RefusedError):
    """An idempotency key sent again with a different request."""


class Replayed(dict[str, Any]):
    """The stored result of an earlier request with the same idempotency key: equal to it in
    every key, and telling by its type that nothing was done again."""


@dataclass(frozen=True)
class Context:
    """The engine, the payment channel (built per transaction), the withholding gateways and
    who is acting; ``units``, where units of work run when not in the engine's database (the
    fast tests keep them in memory).

    Who is acting is the ``principal`` the entry point authenticated (the command line's
    operator, a page's signed-in person), or a ``credential`` not checked yet (an API request's
    key or session token), which each service checks in its own unit of work (``caller``); with
    neither, every service refuses (401). ``bills``: the bills the process keeps for repeat
    views (the HTTP service's; a command keeps none)."""

    engine: Engine
    channel: Callable[[Session], PaymentChannel]
    principal: Principal | None = None
    sms: Callable[[Session], SmsGateway] | None = None
    gateways: Gateways | None = None  # the withholding gateways, when debits go over HTTP
    units: Units | None = None
    credential: Credential | None = None
    bills: KeptBills | None = None


def caller(context: Context, on: UnitOfWork) -> Principal:
    """Who is acting, checked in the unit of work ``on``: the context's principal, else whoever
    its credential belongs to (refused if it is not valid now)."""
    if context.principal is not None:
        return context.principal
    if context.credential is None:
        raise UnauthenticatedError("no credentials: give an API key, or sign in")
    return context.credential.principal(on)


def caller_and_stamp(context: Context, unit: UnitOfWork, loan_id: int) -> tuple[Principal, Stamp]:
    """Who is acting (``caller``) and the owner and version of plan ``loan_id``
    (``NotFoundError`` if there is none): a credential to check in the database is read in the
    same statement as the plan's row, so a bill view asks the database one thing."""
    credential = context.credential
    if context.principal is None and credential is not None:
        who, stamp = credential.principal_and_stamp(unit, loan_id)
        if stamp is None:
            raise NotFoundError(f"no loan {loan_id}")
        return who, stamp
    return caller(context, unit), unit.loans.stamp(loan_id)


def permitted(context: Context, permission: Permission) -> Principal:
    """Who is acting, refused unless she holds ``permission``: for a service that checks once
    before work of its own shape (the batch, reports)."""
    who = authenticated(context)
    require(who, permission)
    return who


def authenticated(context: Context) -> Principal:
    """Who is acting, for a service whose work needs no unit of work of its own (a quote): the
    context's principal, or its credential checked in a unit of its own."""
    if context.principal is not None:
        return context.principal
    return transact(context, lambda unit: caller(context, unit))


def transact(context: Context, work: Callable[[UnitOfWork], T], *, reading: bool = False) -> T:
    """Runs ``work`` in one unit of work: in the context's ``units``, else in a database
    transaction (``run``; ``reading``: work that writes nothing of its own, see ``run``)."""
    if context.units is not None:
        return context.units(work)
    return run(context,
               lambda session: work(DatabaseUnitOfWork(session, context.channel, context.sms)),
               reading=reading)  # fmt: skip


def run(context: Context, work: Callable[[Session], T], *, reading: bool = False) -> T:
    """Runs ``work`` in one transaction, again on fresh state if another writer got there first
    (a known conflict, ``store.errors.is_known_conflict``: a stale version, a key another writer
    took; on PostgreSQL, a deadlock or a serialization failure). Writers that collided wait a
    random, growing while before trying again, so that they stop colliding; after ``ATTEMPTS``
    the request is refused with ``ConflictError``, having changed nothing. Nothing else is
    retried: a constraint the database refused for another reason is a broken invariant
    (``BrokenConstraintError``), logged and raised at once. The store's own errors are said as
    the services say them (a missing row is a ``NotFoundError``, a database busy past the lock
    timeout a ``ConflictError``). On SQLite the unit first waits for its process's turn at the
    database (``turn``). Work that only reads (``reading``: no more than a credential's hourly
    note of its use besides) runs on PostgreSQL with no transaction around its statements
    (``for_reading``)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with (
                turn(context.engine),
                Session(context.engine, expire_on_commit=False) as session,
                session.begin(),
            ):
                if reading:
                    for_reading(session)
                return work(session)
        except MissingError as missing:
            raise NotFoundError(str(missing)) from None
        except BusyError as busy:
            raise ConflictError(str(busy)) from None
        except InvariantError as broken:
            _log_broken(broken, broken)
            raise
        except (StaleError, IntegrityError, OperationalError) as error:
            if not is_known_conflict(error):
                if isinstance(error, IntegrityError):
                    refused = BrokenConstraintError.of(error)
                    _log_broken(refused, error)
                    raise refused from error
                raise
            if attempt == ATTEMPTS:
                raise ConflictError(
                    f"other requests kept changing the same records through {ATTEMPTS} tries; "
                    "this one changed nothing: send it again in a moment"
                ) from error
            time.sleep(random.uniform(0, BACKOFF_SECONDS * 2 ** min(attempt, 6)))
    raise AssertionError("unreachable")  # pragma: no cover


def _log_broken(error: InvariantError, raised: BaseException) -> None:
    """One line for the operator: the invariant's class and where ``raised`` was raised, never
    its values (an amount, a key, a phone may be a borrower's)."""
    frames = traceback.extract_tb(raised.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    log.error(json.dumps({"invariant": type(error).__name__, "where": where}))


def once(
    context: Context,
    scope: str,
    key: str | None,
    request: Document,
    work: Callable[[Session], Document],
) -> Document:
    """``transact_once`` for work on the database session itself that answers a document."""

    def on_session(unit: UnitOfWork) -> Document:
        assert isinstance(unit, DatabaseUnitOfWork), "work on a session runs in the database"
        return work(unit.session)

    return transact_once(context, scope, key, request, on_session, present=dict)


def transact_once(
    context: Context,
    scope: str,
    key: str | None,
    request: Document,
    work: Callable[[UnitOfWork], T],
    *,
    present: Callable[[T], Document],
    guard: Callable[[UnitOfWork], object] | None = None,
) -> T | Replayed:
    """Runs ``work`` once per idempotency key: a retry with the same key and request gets the
    first result back as it was sent, the very same document (``present`` made it, and it is
    kept beside the key; a ``Replayed`` one, so an entry point can say so), and moves no money.
    A second request with the same key while the first is still being worked out is refused
    (409), not queued behind it. ``guard`` (who may ask) runs first, before any stored result
    is looked at: a replay answers only whoever may ask."""

    def guarded(unit: UnitOfWork) -> T:
        if guard is not None:
            guard(unit)
        return work(unit)

    if key is None:
        return transact(context, guarded)
    printed = fingerprint_of(request)

    def keyed(unit: UnitOfWork) -> T | Replayed:
        if guard is not None:
            guard(unit)
        seen = held(unit, scope, key, printed)
        if seen is not None:
            return seen
        result = work(unit)
        unit.remember(scope, key, printed, present(result))
        return result

    return transact(context, keyed)


def fingerprint_of(request: Document) -> str:
    """What tells a retry of a request from another request under the same key."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def held(unit: UnitOfWork, scope: str, key: str, fingerprint: str) -> Replayed | None:
    """Holds idempotency ``key`` for this unit of work and gives the result stored with it, if
    any; refuses a twin still in flight (409) and the key sent with another request."""
    plain_text("the idempotency key", key)
    holding, seen = unit.hold(scope, key)
    if not holding:
        raise InFlightError(f"a request with idempotency key {key!r} is still being worked out")
    if seen is None:
        return None
    if seen[0] != fingerprint:
        raise IdempotencyKeyReusedError(
            f"idempotency key {key!r} was already used for a different request; "
            "use a new key for a new request"
        )
    return Replayed(seen[1])


def audit(
    session: Session,
    actor: str,
    action: str,
    target: str,
    reason: str,
    *,
    before: Document | None = None,
    after: Document | None = None,
) -> None:
    """Records who did what to which thing, why, and what it was before and after."""
    session.add(
        AuditLogRow(
            at=now(),
            actor=actor,
            action=action,
            target=target,
            reason=reason,
            before=before,
            after=after,
        )
    )
