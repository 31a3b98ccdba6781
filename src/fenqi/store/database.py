"""Connecting to the database and bringing its schema to the current revision.

The URL comes from ``--db``, else ``FENQI_DATABASE_URL``, else a SQLite file in the working
directory. The Alembic revisions ship inside the package and run on the connection fenqi opened,
so no alembic.ini is needed and an installed fenqi can create its own schema.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.pool import ConnectionPoolEntry

DEFAULT_URL = "sqlite:///fenqi.sqlite3"
URL_VARIABLE = "FENQI_DATABASE_URL"
MIGRATIONS = Path(__file__).with_name("migrations")
UPGRADE_LOCK = int.from_bytes(b"fenqi")  # the PostgreSQL advisory lock held while migrating

# Checked foreign keys; readers that never block the writer; a writer that waits for the lock
# instead of failing at once; fsync at checkpoints only, which WAL keeps safe against corruption.
SQLITE_PRAGMAS = ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL")


class DatabaseNotReadyError(Exception):
    """The database has no fenqi schema, or an older one; ``fenqi db init`` brings it up to date."""


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


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite connections get fenqi's pragmas and real transactions;
    PostgreSQL connections are checked before use, so a restarted server costs no request."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url)
        event.listen(engine, "connect", _prepare_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    return create_engine(url)


def _prepare_sqlite(connection: sqlite3.Connection, _entry: ConnectionPoolEntry) -> None:
    # The sqlite3 module's own transaction handling skips BEGIN before SELECT, DDL and SAVEPOINT,
    # so reads were not repeatable and savepoints escaped their transaction; it is switched off
    # here and ``_begin_sqlite`` emits BEGIN itself.
    connection.isolation_level = None
    cursor = connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _begin_sqlite(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front, waiting up to busy_timeout for it. A deferred
    # transaction that reads and then writes fails at once if another writer committed in
    # between, which SQLite cannot wait out; SQLite writes one at a time either way.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine) -> None:
    """Brings the database to the newest revision (creating the schema on an empty one), in one
    transaction; a database already there is left as it is."""
    config = _alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Workers starting together wait here, then find the schema current; SQLite's
            # BEGIN IMMEDIATE already lets one writer in at a time.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it has no fenqi schema."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision this fenqi ships."""
    heads = ScriptDirectory.from_config(_alembic_config()).get_heads()
    with engine.connect() as connection:
        applied = MigrationContext.configure(connection).get_current_heads()
    return set(applied) == set(heads)


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
    config = Config()
    # Config values pass through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config
