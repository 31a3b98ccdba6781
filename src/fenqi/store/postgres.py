"""A psycopg connection that stops waiting for an answer the server does not give.

PostgreSQL enforces statement_timeout and lock_timeout itself, which is no help when the server
does not run at all: stopped by a signal, its machine paused, or the network between gone
without a reset. The kernel may even keep accepting the bytes, so TCP notices nothing. psycopg
can wait for a generator with a time limit; this connection gives every wait the limit in
``answer_within`` and, when it passes, closes the connection (it is in the middle of the
protocol and cannot be used again) and raises ``OperationalError``, which SQLAlchemy then treats
as a lost connection.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors
from psycopg.abc import RV, PQGen

_INTERVAL = 0.1  # psycopg's own: how often a wait wakes up to notice an interrupt


class AnswerWithin(psycopg.Connection[Any]):
    """A connection whose waits give up after ``answer_within`` seconds (None: never)."""

    answer_within: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = _INTERVAL, timeout: float | None = None) -> RV:
        limit = self.answer_within if timeout is None else timeout
        try:
            return super().wait(gen, interval, limit)
        except errors._WaitTimeout:  # psycopg's own name for "no answer in time"
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database server did not answer within {limit:g} s; connection closed"
            ) from None
