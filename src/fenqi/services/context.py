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
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fenqi.domain.errors import InvariantError
from fenqi.loans.ports import QuickReads, Stamp, UnansweredError, UnitOfWork, Units
from fenqi.ports import Gateways, SmsGateway
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
from fenqi.store.errors import BrokenConstraintError, BusyError, ContendedError, MissingError
from fenqi.store.units import ChannelFactory, Database, DatabaseUnits

T = TypeVar("T")
Document = dict[str, Any]
log = logging.getLogger("fenqi")


class IdempotencyKeyReusedError(RefusedError):
    """An idempotency key sent again with a different request."""


class Replayed(dict[str, Any]):
    """The stored result of an earlier request with the same idempotency key: equal to it in
    every key, and telling by its type that nothing was done again."""


@dataclass(frozen=True)
class Context:
    """The engine, the payment channel and the SMS gateway (built per transaction), the
    withholding gateways and who is acting; ``units``, where units of work run when not in the
    engine's database (the fast tests keep them in memory). The store runs them on the engine
    (``store.units.DatabaseUnits``): this module knows no database.

    Who is acting is the ``principal`` the entry point authenticated (the command line's
    operator, a page's signed-in person), or a ``credential`` not checked yet (an API request's
    key or session token), which each service checks in its own unit of work (``caller``); with
    neither, every service refuses (401). ``bills``: the bills the process keeps for repeat
    views (the HTTP service's; a command keeps none); ``quick``: where a repeat view checks its
    caller and the plan's stamp, and a write its caller, from the event loop (the HTTP
    service's)."""

    engine: Database
    channel: ChannelFactory
    principal: Principal | None = None
    sms: SmsGateway | None = None
    gateways: Gateways | None = None  # the withholding gateways, when debits go over HTTP
    units: Units | None = None
    credential: Credential | None = None
    bills: KeptBills | None = None
    quick: QuickReads | None = None


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
    # A credential's check reads (and notes its use at most once an hour): no BEGIN and COMMIT
    # around it, two round trips before every write of the API.
    return transact(context, lambda unit: caller(context, unit), reading=True)


async def authenticated_at_once(context: Context) -> Principal | None:
    """``authenticated``, from the event loop when the context has quick reads
    (``Context.quick``): the credential checked in one statement with no thread and no unit of
    work, refused for the same reasons. None when that cannot be: no quick reads, a check with
    a write to make (a key's hourly note of use), or a read with no answer; then
    ``authenticated`` (in a thread) checks it."""
    if context.principal is not None:
        return context.principal
    credential, quick = context.credential, context.quick
    if credential is None or quick is None:
        return None
    try:
        checked = await credential.principal_and_stamp_at_once(quick, None)
    except UnansweredError:
        return None
    return None if checked is None else checked[0]


def transact(context: Context, work: Callable[[UnitOfWork], T], *, reading: bool = False) -> T:
    """Runs ``work`` in one unit of work: in the context's ``units``, else in a database
    transaction on its engine (``reading``: work that writes nothing of its own). The store's
    own errors are said as the services say them: a missing row is a ``NotFoundError``; a
    database busy past the lock timeout, or other writers that kept getting there first
    through every retry, a ``ConflictError``, nothing changed. A broken invariant is logged and
    raised as it is."""
    units = context.units
    if units is None:
        units = DatabaseUnits(context.engine, context.channel)
    try:
        return units(work, reading=reading)
    except MissingError as missing:
        raise NotFoundError(str(missing)) from None
    except BusyError as busy:
        raise ConflictError(str(busy)) from None
    except ContendedError as contended:
        raise ConflictError(str(contended)) from contended.__cause__
    except InvariantError as broken:
        # A constraint the database refused is told where the database refused it.
        cause = broken.__cause__ if isinstance(broken, BrokenConstraintError) else None
        _log_broken(broken, cause or broken)
        raise


def _log_broken(error: InvariantError, raised: BaseException) -> None:
    """One line for the operator: the invariant's class and where ``raised`` was raised, never
    its values (an amount, a key, a phone may be a borrower's)."""
    frames = traceback.extract_tb(raised.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    log.error(json.dumps({"invariant": type(error).__name__, "where": where}))


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
