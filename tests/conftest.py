"""Databases for integration and end-to-end tests: each test gets a fresh SQLite file, and a fresh schema on
the PostgreSQL server at 127.0.0.1:5432 (or ``FENQI_TEST_POSTGRES_URL``), dropped afterwards.

Where no PostgreSQL answers, its tests are skipped with a loud reason, never passed silently.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from fenqi.store.database import database_url as resolve_url
from fenqi.store.database import make_engine, upgrade

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_VARIABLE = "FENQI_TEST_POSTGRES_URL"

# `make test` explores new examples on every run; CI (HYPOTHESIS_PROFILE=ci) runs the same ones
# each time, so that what it judges is the change, not the luck of the draw. Nor does it judge
# the machine's load: with a worker per core beside servers and browsers, an example may take
# longer than Hypothesis' deadline or health check allow, and the same examples are still run.
# Loaded here, before any test module builds its own settings on top of the default.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Engine]:
    """An engine on the test server's default schema, to create and drop test schemas; asked once
    per session, so an absent server costs one connection timeout, not one per test."""
    url = resolve_url(os.environ.get(POSTGRES_VARIABLE) or POSTGRES_URL)
    server = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with server.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        server.dispose()
        reason = str(error.orig or error).strip().splitlines()[0]
        where = f"{server.url.host}:{server.url.port or 5432}"
        pytest.skip(f"PostgreSQL not reachable at {where} — PostgreSQL tests SKIPPED: {reason}")
    yield server
    server.dispose()


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a new SQLite file, or a new PostgreSQL schema that the
    URL's ``search_path`` points at."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fenqi.sqlite3'}"
        return
    server: Engine = request.getfixturevalue("postgres_server")
    schema = f"fenqi_test_{uuid4().hex[:12]}"
    with server.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(server.url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with server.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def empty_engine(database_url: str) -> Iterator[Engine]:
    """An engine on the empty database, before any migration."""
    empty = make_engine(database_url)
    yield empty
    empty.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file brought to the newest revision once a session (under pytest-xdist, once a
    worker): the migrations run the same way every time, so each test's copy is what running
    them again would make."""
    path = tmp_path_factory.mktemp("migrated") / "fenqi.sqlite3"
    template = make_engine(f"sqlite:///{path}")
    upgrade(template)
    template.dispose()  # the last connection closed: the file holds every page, no WAL beside it
    return path


@pytest.fixture
def engine(request: pytest.FixtureRequest, database_url: str) -> Iterator[Engine]:
    """An engine on a database brought to the newest revision: a copy of the migrated SQLite
    file, or a PostgreSQL schema migrated for the test."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), str(url.database))
    migrated = make_engine(database_url)
    upgrade(migrated)  # on the copy, finds the newest revision there and leaves it as it is
    yield migrated
    migrated.dispose()
