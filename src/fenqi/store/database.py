"""Connecting to the database and bringing its schema to the current revision.

The URL comes from ``--db``, else ``FENQI_DATABASE_URL``, else a SQLite file in the working
directory. The Alembic revisions ship inside the package and run on the connection fenqi opened,
so no alembic.ini is needed and an installed fenqi can create its own schema.

Nothing waits on the database without a limit (``Limits``): opening a connection, waiting for
a pooled one, a statement, a lock, and an answer from a server that stopped answering. Engines
never put a statement's parameters (names, phones, tokens) into an error's text.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from fenqi.settings import SettingError
from fenqi.store.errors import BusyError

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_URL = "sqlite:///fenqi.sqlite3"
URL_VARIABLE = "FENQI_DATABASE_URL"
MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # where Alembic keeps the revision a database is at
UPGRADE_LOCK = int.from_bytes(b"fenqi")  # the PostgreSQL advisory lock held while migrating

# Checked foreign keys; readers that never block the writer; fsync at checkpoints only, which WAL
# keeps safe against corruption. A writer waits for the write lock (busy_timeout) instead of
# failing at once: ``Limits.lock``, else 30 s.
SQLITE_PRAGMAS = ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL")
SQLITE_BUSY_SECONDS = 30.0

STATEMENT_TIMEOUT_VARIABLE = "FENQI_STATEMENT_TIMEOUT"
LOCK_TIMEOUT_VARIABLE = "FENQI_LOCK_TIMEOUT"
SERVICE_STATEMENT_SECONDS = 10.0
SERVICE_LOCK_SECONDS = 5.0
CONNECT_SECONDS = 2  # libpq's shortest connect_timeout
CHECKOUT_SECONDS = 2.0
# A service process runs up to 40 requests at once (the thread pool its endpoints run in) and
# has a connection for each, 10 of them kept open while idle; a command, SQLAlchemy's 5 + 10.
SERVICE_CONNECTIONS, SERVICE_IDLE_CONNECTIONS = 40, 10
PING_SECONDS = 1.0
# How much longer than statement_timeout fenqi waits for an answer: the server's own
# "canceling statement" error comes in that time when the server is alive.
ANSWER_GRACE_SECONDS = 2.0
# TCP keepalives and tcp_user_timeout: a server whose host or network is gone is noticed in
# about 25 s while idle and 10 s while sending, not after the kernel's two hours.
TCP_SETTINGS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                "keepalives_count": 3, "tcp_user_timeout": 10_000}  # fmt: skip


class DatabaseNotReadyError(Exception):
    """The database has no fenqi schema, or an older one; ``fenqi db init`` brings it up to date."""


class TimeoutSettingError(SettingError):
    """FENQI_STATEMENT_TIMEOUT or FENQI_LOCK_TIMEOUT is not a number of seconds."""


@dataclass(frozen=True)
class Limits:
    """How long fenqi waits on the database, in seconds (None: as long as it takes), and how
    many PostgreSQL connections a process keeps.

    ``statement`` and ``lock`` are PostgreSQL's statement_timeout and lock_timeout (SQLite waits
    ``lock`` for its write lock). A server that stops answering altogether (frozen, or its
    network gone) enforces neither, so fenqi stops waiting for an answer itself: the ping that
    checks a pooled connection gets ``PING_SECONDS``, anything else ``statement`` plus
    ``ANSWER_GRACE_SECONDS``. Opening a connection takes at most ``connect`` and waiting for a
    pooled one at most ``checkout``."""

    statement: float | None = None
    lock: float | None = None
    connect: int = CONNECT_SECONDS
    checkout: float = CHECKOUT_SECONDS
    connections: int = 15  # at most, at once
    idle: int = 5  # kept open between uses

    @classmethod
    def for_service(cls) -> Limits:
        """The HTTP service: a request waits seconds, never minutes (FENQI_STATEMENT_TIMEOUT,
        default 10 s; FENQI_LOCK_TIMEOUT, default 5 s), and never for a pooled connection
        while its process has a request thread free."""
        return cls(
            statement=_seconds(STATEMENT_TIMEOUT_VARIABLE, SERVICE_STATEMENT_SECONDS),
            lock=_seconds(LOCK_TIMEOUT_VARIABLE, SERVICE_LOCK_SECONDS),
            connections=SERVICE_CONNECTIONS,
            idle=SERVICE_IDLE_CONNECTIONS,
        )

    @classmethod
    def for_commands(cls) -> Limits:
        """Commands (the batch, migrations, seeding, the book check): a statement and a lock
        wait as long as they take, unless the environment sets a limit."""
        return cls(
            statement=_seconds(STATEMENT_TIMEOUT_VARIABLE, None),
            lock=_seconds(LOCK_TIMEOUT_VARIABLE, None),
        )

    @property
    def answer(self) -> float | None:
        """How long to wait for the server's answer to a statement."""
        return None if self.statement is None else self.statement + ANSWER_GRACE_SECONDS


def _seconds(variable: str, default: float | None) -> float | None:
    given = os.environ.get(variable, "").strip()
    if not given:
        return default
    try:
        seconds = float(given)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 86_400:  # NaN and infinity fail this too
        raise TimeoutSettingError(
            f'{variable}="{given}" is not a number of seconds; write e.g. 10 or 0.5 (0: no limit)'
        )
    return seconds or None


def database_url(given: str | None) -> str:
    """The URL to use: ``given`` (from ``--db``), else ``FENQI_DATABASE_URL``, else a SQLite file
    in the working directory. A bare PostgreSQL URL is pointed at psycopg 3, the driver fenqi
    ships with, because SQLAlchemy would otherwise look for psycopg2."""
    url = given or os.environ.get(URL_VARIABLE) or DEFAULT_URL
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url.removeprefix(bare)
    return url


def url_without_password(url: str | URL) -> str:
    """The URL as it may be printed or logged: any password is shown as ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, limits: Limits | None = None) -> Engine:
    """An engine for ``url`` that waits on the database within ``limits`` (default: a
    command's, ``Limits.for_commands``). SQLite connections get fenqi's pragmas and real
    transactions; PostgreSQL connections are checked before use, so a restarted server costs no
    request. No engine puts a statement's parameters in its errors' text, where a log would
    keep borrowers' names, phones and tokens."""
    limits = limits or Limits.for_commands()
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, hide_parameters=True)
        busy = SQLITE_BUSY_SECONDS if limits.lock is None else limits.lock
        event.listen(engine, "connect", partial(_prepare_sqlite, round(busy * 1000)))
        event.listen(engine, "begin", _begin_sqlite)
        _SQLITE_TURNS[engine] = (threading.RLock(), busy)
        return engine
    if backend == "postgresql":
        engine = create_engine(url, hide_parameters=True, pool_pre_ping=True,
                               pool_timeout=limits.checkout, pool_size=limits.idle,
                               max_overflow=limits.connections - limits.idle)  # fmt: skip
        event.listen(engine, "do_connect", partial(_connect_postgres, limits))
        event.listen(engine, "checkout", partial(_answer_within, limits.answer))
        event.listen(engine, "checkin", _answer_ping_soon)
        return engine
    return create_engine(url, hide_parameters=True)


def _prepare_sqlite(
    busy_ms: int, connection: sqlite3.Connection, _entry: ConnectionPoolEntry
) -> None:
    # The sqlite3 module's own transaction handling skips BEGIN before SELECT, DDL and SAVEPOINT,
    # so reads were not repeatable and savepoints escaped their transaction; it is switched off
    # here and ``_begin_sqlite`` emits BEGIN itself.
    connection.isolation_level = None
    cursor = connection.cursor()
    try:
        for pragma in (*SQLITE_PRAGMAS, f"busy_timeout={busy_ms}"):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _connect_postgres(
    limits: Limits, _dialect: Dialect, _entry: ConnectionPoolEntry, cargs: Any, cparams: Any
) -> Any:
    """Opens a connection with fenqi's limits; what the URL itself sets wins."""
    from fenqi.store.postgres import AnswerWithin  # noqa: PLC0415 - psycopg loads for PostgreSQL only

    connection = AnswerWithin.connect(*cargs, **postgres_parameters(limits, cparams))
    connection.answer_within = limits.answer
    return connection


def postgres_parameters(limits: Limits, given: Mapping[str, Any]) -> dict[str, Any]:
    """psycopg's connection parameters: the URL's (``given``), with fenqi's limits (the
    connect timeout, TCP keepalives, the statement and lock timeouts) where it sets none."""
    parameters = {"connect_timeout": limits.connect, **TCP_SETTINGS, **given}
    limited = (("statement_timeout", limits.statement), ("lock_timeout", limits.lock))
    server = [f"-c {name}={round(seconds * 1000)}" for name, seconds in limited if seconds]
    # The URL's own options (a search_path, say) come last, so that they win.
    parameters["options"] = " ".join([*server, *filter(None, [given.get("options")])])
    return parameters


def _answer_within(
    seconds: float | None,
    dbapi_connection: Any,
    _entry: ConnectionPoolEntry,
    _proxy: PoolProxiedConnection,
) -> None:
    # Checked out for a unit of work: its statements may take up to the statement timeout.
    dbapi_connection.answer_within = seconds


def _answer_ping_soon(dbapi_connection: Any, _entry: ConnectionPoolEntry) -> None:
    # Back in the pool: the next thing it is asked is the ping before its next use, which a
    # live server answers at once; a frozen one must not hold the request that asked.
    if dbapi_connection is not None:
        dbapi_connection.answer_within = PING_SECONDS


def _begin_sqlite(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front, waiting up to busy_timeout for it. A deferred
    # transaction that reads and then writes fails at once if another writer committed in
    # between, which SQLite cannot wait out; SQLite writes one at a time either way.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# SQLite lets one transaction write at a time, and a writer that finds the file locked sleeps and
# polls (busy_timeout) rather than queueing: under load some wait seconds while later ones get
# in. The threads of one process therefore take turns on a lock of their own first, handed on
# as soon as it is released; other processes still meet at the file's lock.
_SQLITE_TURNS: weakref.WeakKeyDictionary[Engine, tuple[threading.RLock, float]] = (
    weakref.WeakKeyDictionary()
)


@contextmanager
def turn(engine: Engine) -> Iterator[None]:
    """This process's turn at ``engine``'s database for one transaction (on SQLite; anything
    else needs none), waited for at most the lock timeout."""
    held = _SQLITE_TURNS.get(engine)
    if held is None:
        yield
        return
    lock, seconds = held
    if not lock.acquire(timeout=seconds):
        raise BusyError(
            f"the database stayed busy with other requests for {seconds:g} s; this one changed "
            "nothing: send it again in a moment"
        )
    try:
        yield
    finally:
        lock.release()


def for_reading(session: Session) -> None:
    """Readies a new session for a unit of work that only reads. On PostgreSQL its statements
    run without a transaction around them (``AUTOCOMMIT``): at read committed, each statement of
    a transaction sees what was committed when it began anyway, so the BEGIN and COMMIT were two
    round trips that bought nothing. SQLite's readers keep their transaction (and their
    ``turn``: its threads taking turns serve them faster than contending)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def upgrade(engine: Engine) -> None:
    """Brings the database to the newest revision (creating the schema on an empty one), in one
    transaction; a database already there is left as it is. A migration may rewrite a big table,
    so it runs without the engine's statement and lock limits."""
    from alembic import command  # noqa: PLC0415 - Alembic loads to migrate, not for every command

    config = _alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL statement_timeout = 0"))
            connection.execute(text("SET LOCAL lock_timeout = 0"))
            _wait_for_answers(connection)
            # Workers starting together wait here, then find the schema current; SQLite's
            # BEGIN IMMEDIATE already lets one writer in at a time.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _wait_for_answers(connection: Connection) -> None:
    """Lifts the wait for answers on ``connection`` until it goes back to the pool."""
    raw: Any = connection.connection.dbapi_connection
    raw.answer_within = None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it has no fenqi schema."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision this fenqi ships (``head``). Every
    command asks, so it reads the version table itself: Alembic, and the migrations it would
    import to find its head, load only to migrate."""
    return current_revision(engine) == head()


@cache
def head() -> str:
    """The newest revision this fenqi ships. Migrations are numbered in order, each revising
    the one before (``0015_sms_in_phases.py`` is revision 0015); a test checks that this is
    Alembic's own head."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def require_current(engine: Engine) -> None:
    """Refuses a database whose schema is missing or behind, before anything reads from it
    (and before SQLite would create an empty file at a mistyped path)."""
    missing_file = engine.dialect.name == "sqlite" and not _sqlite_file_exists(engine)
    if missing_file or not schema_is_current(engine):
        raise DatabaseNotReadyError(
            f"database {url_without_password(engine.url)} is not initialised or not up to date; "
            "run: fenqi db init"
        )


def _sqlite_file_exists(engine: Engine) -> bool:
    database = engine.url.database
    return not database or database == ":memory:" or Path(database).exists()


def _alembic_config() -> Config:
    from alembic.config import Config  # noqa: PLC0415 - Alembic loads to migrate

    config = Config()
    # Config values pass through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


Trouble = Literal["unavailable", "contended"]
# PostgreSQL's SQLSTATEs for a server that cannot serve now: connection exceptions (class 08),
# insufficient resources (53, too many connections among them), shutting down or starting up
# (57P01-57P03), and a statement cancelled by statement_timeout (57014).
_UNAVAILABLE = ("08", "53", "57P01", "57P02", "57P03", "57014")
# Another transaction had what this one needed: a lock not granted within lock_timeout, a
# serialization failure, a deadlock.
_CONTENDED = ("55P03", "40001", "40P01")


def trouble(error: BaseException) -> Trouble | None:
    """What a database error says about the database rather than about the request:
    ``unavailable`` (down, unreachable, frozen, out of connections or too slow: the same request
    may succeed later), ``contended`` (another writer held what this one needed), or None (the
    statement itself failed, which is fenqi's bug)."""
    # No pooled connection came free in time, or the connection was lost under the statement.
    if isinstance(error, PoolTimeoutError) or getattr(error, "connection_invalidated", False):
        return "unavailable"
    if not isinstance(error, DBAPIError):
        return None
    if isinstance(error.orig, sqlite3.OperationalError):
        return _sqlite_trouble(str(error.orig))
    state = getattr(error.orig, "sqlstate", None)
    if state is None:
        # psycopg's own failures carry no SQLSTATE: refused, closed, or no answer in time.
        return "unavailable" if isinstance(error, OperationalError | InterfaceError) else None
    if state.startswith(_CONTENDED):
        return "contended"
    return "unavailable" if state.startswith(_UNAVAILABLE) else None


def _sqlite_trouble(message: str) -> Trouble | None:
    if "locked" in message:  # "database is locked": busy_timeout ran out
        return "contended"
    return "unavailable" if "unable to open" in message or "disk I/O" in message else None
