"""What the store raises about itself, in its own words: the services translate these into what
a caller is told (``services/context.py``, ``transact``), so the store depends on no service.

- ``StaleError``: another writer changed a loan first (a known conflict: the unit is run again).
- ``MissingError``: a row asked for by its id is not there (a 404 once translated).
- ``BusyError``: the database stayed busy with other writers past the lock timeout (a 409).
- ``ContendedError``: other writers kept changing the same records through every retry (a 409).
- ``BrokenConstraintError``: the database refused a write for a constraint that is not one of
  the known keys another writer may take first: an invariant broken, never retried.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, OperationalError

from fenqi.domain.errors import InvariantError


class StaleError(Exception):
    """Another writer changed the loan first; the unit of work is retried on fresh state."""


class MissingError(Exception):
    """No row with that id: the message names what was asked for (``no loan 12``)."""


class BusyError(Exception):
    """Other writers held the database past the lock timeout; nothing was changed."""


class ContendedError(Exception):
    """A unit of work found another writer first on every try (``store/units.py``); it changed
    nothing."""


class BrokenConstraintError(InvariantError):
    """A write the database refused for a constraint no race explains (a check, a trigger, an
    unbalanced entry at commit, a foreign key): fenqi's bug, never the caller's. It says the
    driver's first line (which names the constraint; the values are on later lines, never
    kept) and the SQLSTATE."""

    @classmethod
    def of(cls, error: IntegrityError) -> BrokenConstraintError:
        cause = error.orig
        state = getattr(cause, "sqlstate", None) or getattr(cause, "sqlite_errorname", None)
        first = (str(cause).strip().splitlines() or [""])[0]
        return cls(f"the database refused a write, a constraint broken: {first} ({state})")


# PostgreSQL's deadlock_detected and serialization_failure: the transaction was chosen to give
# way to another one, and may simply run again.
_GIVE_WAY = {"40P01", "40001"}
# A key another writer took first (an event number, an idempotency key, a receipt id):
# PostgreSQL's unique_violation, SQLite's SQLITE_CONSTRAINT_UNIQUE and
# SQLITE_CONSTRAINT_PRIMARYKEY. Any other broken constraint (a check, a trigger, an unbalanced
# entry) is no race: trying again cannot help.
_KEY_TAKEN = {"23505"}
_SQLITE_KEY_TAKEN = {2067, 1555}


def is_known_conflict(error: Exception) -> bool:
    """Whether ``error`` is a race another writer won, which the same unit may simply run again
    after: a stale version, a key taken first, a deadlock or a serialization failure."""
    if isinstance(error, StaleError):
        return True
    if isinstance(error, OperationalError):
        return getattr(error.orig, "sqlstate", None) in _GIVE_WAY
    if isinstance(error, IntegrityError):
        cause = error.orig
        return (
            getattr(cause, "sqlstate", None) in _KEY_TAKEN
            or getattr(cause, "sqlite_errorcode", None) in _SQLITE_KEY_TAKEN
        )
    return False
