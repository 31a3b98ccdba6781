"""Alembic's environment: migrates on the connection ``fenqi db init`` passes in, or on one it
opens from ``sqlalchemy.url`` (else ``FENQI_DATABASE_URL``, else the default SQLite file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from fenqi.store.database import database_url, make_engine
from fenqi.store.schema import Base

config = context.config
target_metadata = Base.metadata


def run_offline() -> None:
    """Writes the SQL instead of running it (``alembic upgrade --sql``), for a DBA to review."""
    context.configure(
        url=database_url(config.get_main_option("sqlalchemy.url")),
        target_metadata=target_metadata,
        literal_binds=True,
        # "named" leaves the "%" in the PL/pgSQL function as written, where "format" doubles it.
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _migrate(given)
        return
    engine = make_engine(database_url(config.get_main_option("sqlalchemy.url")))
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters a table by copying it; batch mode lets later revisions do that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
