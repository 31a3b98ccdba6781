"""Limits on how often someone may try: sign-in passwords and codes per account and per client
address, new codes per phone. Counters live in the database every server process shares
(SQLite or PostgreSQL alike), each moved by one atomic statement: an upsert that starts a new
window or adds one to the current one and returns the count, so a hundred simultaneous tries
are counted a hundred times and only those within the limit go on to be checked.

A window is fixed: it starts with the first try after the last window ended and lasts the
limit's length; the answer to a try over the limit says when the window ends (``Retry-After``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fenqi.domain.errors import InputError
from fenqi.store.schema import Base, SignInThrottleRow, Timestamp

PRUNE_AFTER = timedelta(days=2)  # longer than any limit's window


@dataclass(frozen=True)
class Limit:
    """At most ``times`` tries of one subject in ``seconds``."""

    name: str
    times: int
    seconds: int

    @property
    def minutes(self) -> int:
        return math.ceil(self.seconds / 60)


class TooManyAttemptsError(InputError):
    """Over a limit: nothing was checked; try again after ``retry_after`` seconds. The words
    never say whether the account exists: an unknown one is counted, and refused, alike."""

    def __init__(self, retry_after: int, reason: str = "too many sign-in attempts") -> None:
        self.retry_after = retry_after  # seconds
        self.minutes = math.ceil(retry_after / 60)
        super().__init__(f"{reason}; try again in {self.minutes} minute(s)")


Tries = Iterable[tuple[Limit, str | None]]  # each limit with its subject; None: not known here


def upsert(session: Session, model: type[Base]) -> Any:
    """``INSERT … ON CONFLICT`` for the session's database (SQLite and PostgreSQL spell it the
    same way, through different constructs)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


def count(session: Session, at: datetime, tries: Tries) -> None:
    """Counts a try against every limit whose subject is known; refuses it, in the transaction
    (so the counts it took are undone), when any limit is over."""
    waits = [wait for limit, subject in tries if subject is not None
             if (wait := _hit(session, at, limit, subject)) is not None]  # fmt: skip
    if waits:
        raise TooManyAttemptsError(max(waits))


def within(session: Session, at: datetime, limit: Limit, subject: str) -> bool:
    """Counts a try and says whether it is within the limit (the caller decides the answer)."""
    return _hit(session, at, limit, subject) is None


def give_back(session: Session, tries: Tries) -> None:
    """Returns the tries counted before a check that succeeded: the limits count failures."""
    for limit, subject in tries:
        if subject is not None:
            row = SignInThrottleRow
            session.execute(update(row).where(row.key == _key(limit, subject), row.hits > 0)
                            .values(hits=row.hits - 1))  # fmt: skip


def prune(session: Session, at: datetime) -> None:
    """Forgets windows that ended long ago (rows another request holds are left for later, not
    waited for)."""
    row = SignInThrottleRow
    old = select(row.key).where(row.window_start < at - PRUNE_AFTER)
    session.execute(delete(row).where(row.key.in_(old.with_for_update(skip_locked=True))))


def _hit(session: Session, at: datetime, limit: Limit, subject: str) -> int | None:
    """One more try in the subject's window (a new window if the last one ended): None when the
    count is within the limit, else the seconds until the window ends."""
    row = SignInThrottleRow
    ended = row.window_start <= at - timedelta(seconds=limit.seconds)
    statement = (
        upsert(session, row)
        .values(key=_key(limit, subject), window_start=at, hits=1)
        .on_conflict_do_update(
            index_elements=[row.key],
            set_={"hits": case((ended, 1), else_=row.hits + 1),
                  "window_start": case((ended, literal(at, Timestamp())),
                                       else_=row.window_start)},
        )
        .returning(row.hits, row.window_start)
    )  # fmt: skip
    hits, started = session.execute(statement).one()
    if int(hits) <= limit.times:
        return None
    ends: datetime = started + timedelta(seconds=limit.seconds)
    return max(1, math.ceil((ends - at).total_seconds()))


def _key(limit: Limit, subject: str) -> str:
    return hashlib.sha256(f"{limit.name}\x1f{subject}".encode()).hexdigest()
