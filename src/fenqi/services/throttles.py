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

from fenqi.domain.errors import InputError
from fenqi.loans.ports import Counters

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


def count(counters: Counters, at: datetime, tries: Tries) -> None:
    """Counts a try against every limit whose subject is known; refuses it, in the transaction
    (so the counts it took are undone), when any limit is over."""
    waits = [wait for limit, subject in tries if subject is not None
             if (wait := _hit(counters, at, limit, subject)) is not None]  # fmt: skip
    if waits:
        raise TooManyAttemptsError(max(waits))


def within(counters: Counters, at: datetime, limit: Limit, subject: str) -> bool:
    """Counts a try and says whether it is within the limit (the caller decides the answer)."""
    return _hit(counters, at, limit, subject) is None


def wait(counters: Counters, at: datetime, limit: Limit, subject: str) -> int:
    """Counts a try: 0 when it is within the limit, else the seconds until its window ends."""
    return _hit(counters, at, limit, subject) or 0


def give_back(counters: Counters, tries: Tries) -> None:
    """Returns the tries counted before a check that succeeded: the limits count failures."""
    for limit, subject in tries:
        if subject is not None:
            counters.give_back(_key(limit, subject))


def prune(counters: Counters, at: datetime) -> None:
    """Forgets windows that ended long ago."""
    counters.prune(at - PRUNE_AFTER)


def _hit(counters: Counters, at: datetime, limit: Limit, subject: str) -> int | None:
    """One more try in the subject's window (a new window if the last one ended): None when the
    count is within the limit, else the seconds until the window ends."""
    hits, started = counters.hit(_key(limit, subject), at, limit.seconds)
    if hits <= limit.times:
        return None
    ends = started + timedelta(seconds=limit.seconds)
    return max(1, math.ceil((ends - at).total_seconds()))


def _key(limit: Limit, subject: str) -> str:
    return hashlib.sha256(f"{limit.name}\x1f{subject}".encode()).hexdigest()
