"""What the service answers when something fails that is not the caller's fault, on SQLite and
PostgreSQL: an unexpected error is a 500 problem document with the request id, logged once
without its text (no SQL parameters: no name, phone or account) and counted, on a connection
that stays open; a database that cannot be reached is a 503 ``database-not-ready``; a request
that cannot get its turn is a 409 with ``Retry-After``; the pages say the same calmly in HTML."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, make_url, text

from fenqi.domain.money import Money
from fenqi.http.app import create_app
from fenqi.services import borrowers, credentials, products, servicing
from fenqi.services.policy import Role
from fenqi.settings import SettingError
from fenqi.web.words import WORDS
from fenqi.wire import present
from tests.e2e.cli import free_port
from tests.e2e.serving import fenqi_serve
from tests.simulated import simulated_context

NAME, PHONE = "王秘密", "13987654321"  # what must never reach a log
TODAY = "2026-02-10"


def agent_key(engine: Engine) -> str:
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    credentials.create_user(context, "agent", "a long password", Role.AGENT)
    return str(credentials.create_api_key(context, "agent").api_key)


def open_loan(engine: Engine) -> int:
    context = simulated_context(engine, actor="setup")
    who = borrowers.create_borrower(context, "李雷", "13800000001", Money.parse("50000"))
    order = servicing.Order(who.id, "F-1", "m", Money.parse("1000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    return int(present(servicing.checkout(context, order))["id"])


def exchange(connection: HTTPConnection, method: str, path: str, **options: Any) -> Any:
    connection.request(method, path, **options)
    answer = connection.getresponse()
    answer.body = answer.read()
    return answer


def test_an_unexpected_error_is_a_problem_logged_once_and_the_connection_stays_open(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    key = agent_key(engine)
    with engine.begin() as connection:  # every statement on borrowers now fails
        connection.execute(text("ALTER TABLE borrowers RENAME TO borrowers_away"))
    log = tmp_path / "serve.log"
    with fenqi_serve(database_url, log, FENQI_TODAY=TODAY) as base:
        connection = HTTPConnection(base.removeprefix("http://"), timeout=30)
        body = json.dumps({"name": NAME, "phone": PHONE, "credit_limit": "1000"})
        headers = {"X-API-Key": key, "Content-Type": "application/json", "X-Request-ID": "boom-1"}
        failed = exchange(connection, "POST", "/api/borrowers", body=body, headers=headers)
        assert failed.status == 500
        assert failed.getheader("Content-Type") == "application/problem+json"
        problem = json.loads(failed.body)
        assert problem["type"] == "urn:fenqi:problem:internal-error"
        assert problem["request_id"] == failed.getheader("X-Request-ID") == "boom-1"
        assert NAME not in failed.body.decode()
        assert PHONE not in failed.body.decode()
        assert not failed.will_close
        held = connection.sock
        metrics = exchange(connection, "GET", "/metrics")  # on the same connection
        assert connection.sock is held
        assert metrics.status == 200
        counted = metrics.body.decode()
        assert (
            'fenqi_http_requests_total{method="POST",route="/api/borrowers",status="500"} 1.0'
            in counted
        )
        assert 'fenqi_http_errors_total{error="' in counted
        connection.close()
    logged = log.read_text()
    lines = [line for line in logged.splitlines() if "boom-1" in line]
    assert len(lines) == 1, logged  # once
    line = json.loads(lines[0])
    assert line["status"] == 500
    assert line["error"] in ("OperationalError", "ProgrammingError")  # SQLite, PostgreSQL
    assert "Traceback" not in logged
    assert NAME not in logged
    assert PHONE not in logged


def _down_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'fenqi.sqlite3'}"
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"  # nothing listens


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_that_is_down_is_a_503_problem_and_a_calm_page(
    kind: str, tmp_path: Path
) -> None:
    with TestClient(create_app(_down_url(kind, tmp_path))) as client:
        answer = client.get("/api/products", headers={"X-API-Key": "fq_any"})
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["Retry-After"] == "2"
        problem = answer.json()
        assert problem["type"] == "urn:fenqi:problem:database-not-ready"
        assert problem["request_id"] == answer.headers["X-Request-ID"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/metrics").status_code == 200  # the figures are there when needed
        for lang in ("zh-CN", "en"):
            page = client.post(f"/console/login?lang={lang}",
                               data={"username": "someone", "password": "a long password"})  # fmt: skip
            assert page.status_code == 503
            assert page.headers["content-type"].startswith("text/html")
            assert WORDS["error.busy"][lang] in page.text
            assert page.headers["X-Request-ID"] in page.text  # a reference to quote


def test_an_unexpected_error_on_a_page_is_a_calm_page(engine: Engine, database_url: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE users RENAME TO users_away"))
    with TestClient(create_app(database_url)) as client:
        page = client.post("/console/login?lang=en",
                           data={"username": "someone", "password": "a long password"})  # fmt: skip
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert WORDS["error.unexpected"]["en"] in page.text
    assert "Traceback" not in page.text


@contextmanager
def loan_held(engine: Engine, loan: int) -> Iterator[None]:
    """Another writer holding the loan: its row lock on PostgreSQL, the write lock on SQLite."""
    if engine.dialect.name == "sqlite":
        with closing(sqlite3.connect(str(make_url(engine.url).database))) as other:
            other.isolation_level = None
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
        return
    with engine.connect() as other, other.begin():
        other.execute(text("SELECT id FROM loans WHERE id = :id FOR UPDATE"), {"id": loan})
        yield


def test_a_write_that_cannot_get_its_turn_is_a_409_to_retry(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", TODAY)
    monkeypatch.setenv("FENQI_LOCK_TIMEOUT", "0.5")
    key = agent_key(engine)
    loan = open_loan(engine)
    with TestClient(create_app(database_url)) as client:
        pay = {"X-API-Key": key, "Idempotency-Key": "turn-1"}
        with loan_held(engine, loan):
            began = time.monotonic()
            waited = client.post(f"/api/loans/{loan}/payments", headers=pay,
                                 json={"amount": "10.00", "channel": "manual"})  # fmt: skip
            took = time.monotonic() - began
        assert waited.status_code == 409, waited.text
        assert waited.json()["type"] == "urn:fenqi:problem:conflict"
        assert waited.headers["Retry-After"] == "1"
        assert took < 5
        again = client.post(f"/api/loans/{loan}/payments", headers=pay,
                            json={"amount": "10.00", "channel": "manual"})  # fmt: skip
        assert again.status_code == 201, again.text  # sent again, it goes through


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_twin_request_in_flight_is_a_409_with_retry_after(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", TODAY)
    key = agent_key(engine)
    loan = open_loan(engine)
    with engine.connect() as twin, TestClient(create_app(database_url)) as client:
        name = f"loan:{loan}\x1ftwin-1"  # the key's lock, as the unit of work takes it
        twin.execute(text("SELECT pg_advisory_lock(hashtextextended(:name, 0))"), {"name": name})
        answer = client.post(f"/api/loans/{loan}/payments",
                             headers={"X-API-Key": key, "Idempotency-Key": "twin-1"},
                             json={"amount": "10.00", "channel": "manual"})  # fmt: skip
    assert answer.status_code == 409
    assert answer.json()["type"] == "urn:fenqi:problem:in-flight"
    assert answer.headers["Retry-After"] == "1"


def test_the_request_log_line_of_an_error_is_one_line_per_request(
    engine: Engine, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """In-process, every logger captured: one line, at ERROR, naming the class, never the
    parameters (which hide_parameters keeps out of the error's own text too)."""
    key = agent_key(engine)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE borrowers RENAME TO borrowers_away"))
    caplog.set_level("DEBUG")
    with TestClient(create_app(database_url)) as client:
        answer = client.post("/api/borrowers", headers={"X-API-Key": key},
                             json={"name": NAME, "phone": PHONE, "credit_limit": "1000"})  # fmt: skip
    assert answer.status_code == 500
    request_id = answer.headers["X-Request-ID"]
    mentions = [record for record in caplog.records if request_id in record.getMessage()]
    assert len(mentions) == 1
    assert mentions[0].levelname == "ERROR"
    everything = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert NAME not in everything
    assert PHONE not in everything


def test_readyz_answers_within_a_second_while_its_check_hangs(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = threading.Event()

    def hangs(_engine: Engine) -> bool:
        released.wait(10)
        return True

    monkeypatch.setattr("fenqi.http.app.schema_is_current", hangs)
    with TestClient(create_app(database_url)) as client:
        # Probes share the one check in flight and answer on the probe's own one-second
        # deadline, never the ten seconds the check hangs (the margin is for a busy machine).
        for _ in range(3):
            began = time.monotonic()
            assert client.get("/readyz").status_code == 503
            assert time.monotonic() - began < 4
        released.set()
        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "/readyz stayed unready after its check ended"
            time.sleep(0.1)


def test_a_bad_fenqi_today_is_the_servers_fault_never_the_clients(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service refuses to start on a clock override it cannot use; one set under a running
    service makes every request that needs today a 500 ``misconfigured`` (logged, naming the
    setting), never a 422 that tells the client its request was wrong."""
    key = {"X-API-Key": agent_key(engine)}
    loan = open_loan(engine)
    for bad in ("garbage", "9999-12-31", "0001-01-01"):
        monkeypatch.setenv("FENQI_TODAY", bad)
        with pytest.raises(SettingError, match="FENQI_TODAY"):
            create_app(database_url)
    monkeypatch.setenv("FENQI_TODAY", TODAY)
    with TestClient(create_app(database_url), raise_server_exceptions=False) as client:
        signed_in = client.post("/console/login", data={"username": "agent",
                                "password": "a long password"}, follow_redirects=False)  # fmt: skip
        assert signed_in.status_code == 303
        for bad in ("garbage", "9999-12-31"):
            monkeypatch.setenv("FENQI_TODAY", bad)
            asked = [
                client.get(f"/api/loans/{loan}", headers=key),
                client.post(f"/api/loans/{loan}/payments", json={"amount": "1", "date": TODAY},
                            headers={**key, "Idempotency-Key": f"k-{bad}"}),
                client.post("/api/quotes", json={"principal": "1000", "product": "cash",
                                                 "periods": 12}, headers=key),
            ]  # fmt: skip
            for answer in asked:
                assert answer.status_code == 500, answer.text
                assert answer.json()["type"] == "urn:fenqi:problem:misconfigured"
            page = client.get(f"/console/loans/{loan}?lang=en")
            assert page.status_code == 500
            assert WORDS["error.unexpected"]["en"] in page.text
