"""The throttles' counters (``fenqi.loans.ports.Counters``) on the database every server process
shares, SQLite or PostgreSQL alike: each try is counted by one atomic statement, an upsert that
starts a new window or adds one to the current one and returns the count, so a hundred
simultaneous tries are counted a hundred times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fenqi.store.schema import Base, SignInThrottleRow, Timestamp


def upsert(session: Session, model: type[Base]) -> Any:
    """``INSERT … ON CONFLICT`` for the session's database (SQLite and PostgreSQL spell it the
    same way, through different constructs)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


@dataclass(frozen=True)
class DatabaseCounters:
    """The counters in a session's transaction."""

    session: Session

    def hit(self, key: str, at: datetime, seconds: int) -> tuple[int, datetime]:
        row = SignInThrottleRow
        ended = row.window_start <= at - timedelta(seconds=seconds)
        statement = (
            upsert(self.session, row)
            .values(key=key, window_start=at, hits=1)
            .on_conflict_do_update(
                index_elements=[row.key],
                set_={"hits": case((ended, 1), else_=row.hits + 1),
                      "window_start": case((ended, literal(at, Timestamp())),
                                           else_=row.window_start)},
            )
            .returning(row.hits, row.window_start)
        )  # fmt: skip
        hits, started = self.session.execute(statement).one()
        return int(hits), started

    def give_back(self, key: str) -> None:
        row = SignInThrottleRow
        self.session.execute(update(row).where(row.key == key, row.hits > 0)
                             .values(hits=row.hits - 1))  # fmt: skip

    def prune(self, before: datetime) -> None:
        """Rows another request holds are left for later, not waited for."""
        row = SignInThrottleRow
        old = select(row.key).where(row.window_start < before)
        self.session.execute(delete(row).where(row.key.in_(old.with_for_update(skip_locked=True))))
