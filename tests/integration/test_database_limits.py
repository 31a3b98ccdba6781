"""The engine's limits and manners, on SQLite and PostgreSQL: how long the service and the
commands wait on the database (and that the URL's own settings survive), that no error's text
carries a statement's parameters, and what each database failure is taken to mean."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from fenqi.store.database import (
    LOCK_TIMEOUT_VARIABLE,
    STATEMENT_TIMEOUT_VARIABLE,
    Limits,
    TimeoutSettingError,
    make_engine,
    trouble,
)

PHONE = "13911112222"


def settings(engine: Engine, *names: str) -> list[str]:
    ask = "PRAGMA" if engine.dialect.name == "sqlite" else "SHOW"
    with engine.connect() as connection:
        return [str(connection.execute(text(f"{ask} {name}")).scalar()) for name in names]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_service_waits_seconds_and_commands_as_long_as_it_takes(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATEMENT_TIMEOUT_VARIABLE, raising=False)
    monkeypatch.delenv(LOCK_TIMEOUT_VARIABLE, raising=False)
    service = make_engine(database_url, Limits.for_service())
    command = make_engine(database_url)
    try:
        schema = database_url.rsplit("search_path%3D", 1)[-1].rsplit("=", 1)[-1]
        assert settings(service, "statement_timeout", "lock_timeout", "search_path") == [
            "10s", "5s", schema]  # fmt: skip  # the URL's own options are kept
        assert settings(command, "statement_timeout", "lock_timeout") == ["0", "0"]
        with service.connect() as connection:
            given = connection.connection.dbapi_connection.info.get_parameters()
        assert (given["connect_timeout"], given["tcp_user_timeout"]) == ("2", "10000")
        assert given["keepalives"] == "1"
        # A connection for each of the 40 request threads; waiting for one takes at most 2 s.
        pool = service.pool
        assert (pool.size(), pool._max_overflow, pool.timeout()) == (10, 30, 2.0)
    finally:
        service.dispose()
        command.dispose()
    monkeypatch.setenv(STATEMENT_TIMEOUT_VARIABLE, "0.5")
    monkeypatch.setenv(LOCK_TIMEOUT_VARIABLE, "0")
    tuned = make_engine(database_url, Limits.for_service())
    try:
        assert settings(tuned, "statement_timeout", "lock_timeout") == ["500ms", "0"]
        with pytest.raises(OperationalError) as slow, tuned.connect() as connection:
            connection.execute(text("SELECT pg_sleep(3)"))
        assert trouble(slow.value) == "unavailable"  # a 503, to be sent again
    finally:
        tuned.dispose()


def test_sqlite_waits_for_its_write_lock_as_long_as_the_lock_timeout(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_VARIABLE, "2.5")
    service = make_engine(f"sqlite:///{tmp_path}/x.sqlite3", Limits.for_service())
    monkeypatch.delenv(LOCK_TIMEOUT_VARIABLE)
    command = make_engine(f"sqlite:///{tmp_path}/x.sqlite3")
    assert settings(service, "busy_timeout") == ["2500"]
    assert settings(command, "busy_timeout") == ["30000"]


@pytest.mark.parametrize("given", ["ten", "-1", "nan", "inf", "1e9"])
def test_a_timeout_setting_that_is_not_seconds_is_refused(
    given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATEMENT_TIMEOUT_VARIABLE, given)
    with pytest.raises(TimeoutSettingError, match=STATEMENT_TIMEOUT_VARIABLE):
        Limits.for_service()


def test_no_error_carries_a_statements_parameters(engine: Engine) -> None:
    with pytest.raises(DBAPIError) as failed, engine.connect() as connection:
        connection.execute(text("SELECT * FROM borrowers_gone WHERE phone = :phone"),
                           {"phone": PHONE})  # fmt: skip
    assert PHONE not in str(failed.value)
    assert PHONE not in repr(failed.value)
    assert trouble(failed.value) is None  # fenqi's own bug: a 500, not a 503


def test_what_a_database_failure_means(engine: Engine) -> None:
    assert trouble(PoolTimeoutError("no connection came free")) == "unavailable"
    assert trouble(ValueError("not a database error")) is None
    insert = text("INSERT INTO accounts (code, name, kind) VALUES ('9999', 'twice', 'asset')")
    with engine.begin() as connection:
        connection.execute(insert)
    with pytest.raises(IntegrityError) as duplicate, engine.begin() as connection:
        connection.execute(insert)
    assert trouble(duplicate.value) is None


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_lock_not_granted_in_time_is_contention(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_VARIABLE, "0.2")
    impatient = make_engine(database_url, Limits.for_service())
    try:
        with engine.connect() as holder, holder.begin():
            holder.execute(text("LOCK TABLE accounts IN EXCLUSIVE MODE"))
            with pytest.raises(OperationalError) as waited, impatient.begin() as connection:
                connection.execute(text("UPDATE accounts SET name = name"))
        assert trouble(waited.value) == "contended"  # a 409, to be sent again
    finally:
        impatient.dispose()
    with pytest.raises(ProgrammingError) as bad, engine.connect() as connection:
        connection.execute(text("SELEC 1"))
    assert trouble(bad.value) is None
