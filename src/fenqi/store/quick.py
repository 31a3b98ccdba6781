"""Quick reads (``fenqi.loans.ports.QuickReads``) on PostgreSQL: the statement every bill view
asks first, sent from the server's event loop over a few asyncio connections of psycopg's own
pool, with no thread, no transaction and no ORM around it.

A bill view answered from the process's kept bills costs that one statement; through the thread
pool its hop alone cost more than the rest of the view. The statements are the ones the units of
work send (``store/credentials.py``), compiled once for psycopg. Nothing here waits long or
fails loudly: a read with no answer within ``QUICK_SECONDS`` (a pool connection included), a
lost connection, or an event loop other than the one the pool was opened on, is ``UnansweredError``,
and the view is served in a unit of work instead, which says whatever is wrong as every other
request does. Connections are opened with the limits of the service's others
(``postgres_parameters``) and in autocommit: one statement needs no BEGIN and COMMIT.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from fenqi.loans.ports import KeyHolder, SessionHolder, UnansweredError
from fenqi.store.credentials import (
    KEY_HOLDER_AND_STAMP,
    SESSION_HOLDER_AND_STAMP,
    key_holder_of,
    session_holder_of,
)
from fenqi.store.database import Limits, postgres_parameters

QUICK_SECONDS = 1.0  # one indexed lookup: a server slower than this is served in a thread
# A quick read holds its connection for well under a millisecond, so a few serve a process.
QUICK_CONNECTIONS = 4


class PostgresQuickReads:
    """Quick reads over a pool opened on the server's event loop (``open``, at start-up) and
    closed with it (``close``)."""

    def __init__(self, engine: Engine, limits: Limits) -> None:
        _, given = engine.dialect.create_connect_args(engine.url)
        parameters = {**postgres_parameters(limits, given), "autocommit": True,
                      "row_factory": namedtuple_row}  # fmt: skip
        self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            kwargs=parameters, min_size=1, max_size=QUICK_CONNECTIONS, open=False,
            name="fenqi-quick", timeout=QUICK_SECONDS,
        )  # fmt: skip
        self._key = _Statement(engine, KEY_HOLDER_AND_STAMP)
        self._session = _Statement(engine, SESSION_HOLDER_AND_STAMP)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        """Opens the pool on the running event loop, without waiting for a connection (a
        database not up yet is retried by the pool, and its reads meanwhile unanswered)."""
        await self._pool.open(wait=False)
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        self._loop = None
        await self._pool.close()

    async def key_holder(self, key_id: str, loan_id: int | None) -> KeyHolder | None:
        row = await self._first(self._key, {"key_id": key_id, "loan_id": loan_id})
        return None if row is None else key_holder_of(row, loan_id)

    async def session_holder(self, token_hash: str, loan_id: int | None) -> SessionHolder | None:
        row = await self._first(self._session, {"token_hash": token_hash, "loan_id": loan_id})
        return None if row is None else session_holder_of(row, loan_id)

    async def _first(self, statement: _Statement, given: dict[str, Any]) -> Any:
        if self._loop is None or self._loop is not asyncio.get_running_loop():
            raise UnansweredError("the quick reads' pool is not open on this event loop")
        asking = asyncio.ensure_future(self._ask(statement, given))
        done, _ = await asyncio.wait({asking}, timeout=QUICK_SECONDS)
        if not done:
            # Not awaited: a cancelled query's clean-up (psycopg asks the server to cancel it)
            # waits on the same silent server, and the request has waited long enough.
            asking.cancel()
            asking.add_done_callback(_forget)
            raise UnansweredError(f"no answer to a quick read in {QUICK_SECONDS:g} s")
        return asking.result()

    async def _ask(self, statement: _Statement, given: dict[str, Any]) -> Any:
        try:
            async with self._pool.connection() as connection:
                found = await connection.execute(statement.sql, statement.parameters(given),
                                                 prepare=True)  # fmt: skip
                return await found.fetchone()
        except (psycopg.Error, PoolTimeout, OSError) as error:
            # The connection goes back broken or mid-answer, and the pool discards it.
            raise UnansweredError(f"no answer to a quick read: {type(error).__name__}") from None


def _forget(asked: asyncio.Future[Any]) -> None:
    """Retrieves what a quick read given up on ended with, so that nothing is logged for it."""
    if not asked.cancelled():
        asked.exception()


class _Statement:
    """A Core statement as psycopg is sent it: its SQL, and every parameter it binds (literal
    values such as a session's kind included) with the caller's given values in place."""

    def __init__(self, engine: Engine, statement: Select[Any]) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self._bound = dict(compiled.params)

    def parameters(self, given: dict[str, Any]) -> dict[str, Any]:
        return {**self._bound, **given}


class SqliteQuickReads:
    """Quick reads on SQLite, on an engine of their own: each statement is its own read (no
    BEGIN IMMEDIATE, so never in line behind a writer: a reader of a WAL database reads the
    last commit), sent from the event loop itself, since a read of one indexed row of a local
    file takes microseconds; a file busy past ``QUICK_SECONDS`` is ``Unanswered``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = create_engine(engine.url, isolation_level="AUTOCOMMIT",
                                     hide_parameters=True)  # fmt: skip
        event.listen(self._engine, "connect", _reading_only)

    async def open(self) -> None:
        """Nothing to open: a connection is opened at the first read."""

    async def close(self) -> None:
        self._engine.dispose()

    async def key_holder(self, key_id: str, loan_id: int | None) -> KeyHolder | None:
        row = self._first(KEY_HOLDER_AND_STAMP, {"key_id": key_id, "loan_id": loan_id})
        return None if row is None else key_holder_of(row, loan_id)

    async def session_holder(self, token_hash: str, loan_id: int | None) -> SessionHolder | None:
        row = self._first(SESSION_HOLDER_AND_STAMP, {"token_hash": token_hash, "loan_id": loan_id})
        return None if row is None else session_holder_of(row, loan_id)

    def _first(self, statement: Select[Any], given: dict[str, Any]) -> Any:
        try:
            with self._engine.connect() as connection:
                return connection.execute(statement, given).first()
        except DBAPIError as error:
            raise UnansweredError(
                f"no answer to a quick read: {type(error.orig).__name__}"
            ) from None


def _reading_only(connection: sqlite3.Connection, _entry: ConnectionPoolEntry) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={round(QUICK_SECONDS * 1000)}")
        cursor.execute("PRAGMA query_only=ON")
    finally:
        cursor.close()
