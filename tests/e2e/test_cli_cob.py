"""The nightly batch through the command line, on SQLite and on PostgreSQL: a 10,000 / 12 / 12%
loan on a card too short to pay, closed day by day with `fenqi cob`, its messages sent only inside
the contact window, then paid up; the runs and the aging report."""

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from fenqi.http.app import create_app
from fenqi.services import close_of_business as cob
from fenqi.shown import beijing
from fenqi.store.database import make_engine
from fenqi.store.schema import CobJobRow
from tests.batch_faults import (
    MESSAGE,
    REMINDED,
    allow_closing,
    failed_for_good,
    loans_with_work,
    refuse_to_close,
    tries,
)
from tests.e2e.cli import Run, fenqi, on, refused
from tests.simulated import simulated_context


class Shop:
    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, *args: str, today: str | None = None) -> Run:
        return fenqi(*args, "--db", self.url, env=None if today is None else on(today))

    def json(self, *args: str, today: str | None = None) -> Any:
        return self.run(*args, "--json", today=today).json()


@pytest.fixture
def shop(database_url: str) -> Shop:
    store = Shop(database_url)
    assert store.run("db", "init").code == 0
    return store


def test_a_short_card_through_the_batch_and_back_to_current(shop: Shop) -> None:
    who = shop.json(
        "borrower", "create", "--name", "赵敏", "--phone", "13700000001", "--limit", "20000"
    )
    shop.json("method", "bind", "--borrower", str(who["id"]), "--kind", "bank_card",
              "--account", "6222020000001111", "--sim-balance", "50")  # fmt: skip
    loan = shop.json("checkout", "--borrower", str(who["id"]), "--order", "JD-77", "--merchant", "京东",
                     "--amount", "10000", "--product", "cash", "--periods", "12",
                     "--date", "2026-01-15", today="2026-01-15")["id"]  # fmt: skip

    runs = shop.json("cob", "--through", "2026-02-19", today="2026-02-19")
    outbox = shop.json("sms", "outbox")
    assert [(message["day"], message["stage"]) for message in outbox] == [
        ("2026-02-12", "reminder"), ("2026-02-15", "due"), ("2026-02-19", "overdue-1")
    ]  # fmt: skip
    assert all(message["status"] == "pending" for message in outbox)
    night = shop.json("sms", "dispatch", "--now", "2026-02-19T22:30", today="2026-02-20")
    assert (night["sent"], night["held_window"]) == (0, 1)  # outside 08:00–21:00
    assert night["expired"] == 2  # the reminder and the due-day message: their days are gone
    morning = shop.json("sms", "dispatch", "--now", "2026-02-20T08:30", today="2026-02-21")
    assert (morning["sent"], morning["expired"]) == (1, 0)  # overdue-1, a day late
    assert [message["status"] for message in shop.json("sms", "outbox")] == [
        "expired", "expired", "sent"
    ]  # fmt: skip

    runs += shop.json("cob", "--through", "2026-02-25", today="2026-02-25")
    assert [run["business_date"] for run in runs][-1] == "2026-02-25"
    assert sum(run["debits_failed"] for run in runs) == 4  # the due date and three retries
    assert sum(run["debits_succeeded"] for run in runs) == 0
    assert sum(run["newly_overdue"].get("M1", 0) for run in runs) == 1
    shown = shop.json("loan", "show", str(loan), "--as-of", "2026-02-25")
    assert (shown["dpd"], shown["bucket"], shown["outstanding_penalty"]) == (10, "M1", "3.94")
    today = shop.json("sms", "dispatch", "--now", "2026-02-25T09:00", today="2026-02-26")
    assert (today["sent"], today["expired"]) == (1, 1)  # overdue-7 goes; overdue-3 (02-21) not
    assert len(shop.json("sms", "sent")) == 2

    aging = shop.json("report", "aging", "--date", "2026-02-25")
    assert next(row for row in aging["buckets"] if row["bucket"] == "M1")["loans"] == 1

    due = shop.json("loan", "show", str(loan), "--as-of", "2026-02-26")["amount_due"]
    shop.json("pay", str(loan), "--amount", due, "--channel", "manual", "--date", "2026-02-26",
              today="2026-02-26")  # fmt: skip
    shop.json("cob", "--date", "2026-02-26")
    current = shop.json("loan", "show", str(loan), "--as-of", "2026-02-26")
    assert (current["status"], current["dpd"], current["bucket"]) == ("active", 0, "M0")
    assert shop.json("ledger", "check")["consistent"]

    status = shop.json("cob", "status")
    assert status[0]["business_date"] == "2026-02-26"
    assert status[0]["status"] == "done"
    report = shop.json("report", "cob", str(status[0]["id"]))
    assert report["loans"] == 1
    # People read the runs in Beijing time (the JSON keeps UTC), to the second.
    people = shop.run("cob", "status")
    assert people.code == 0, people.err
    assert beijing(status[0]["started_at"]) in people.out
    assert status[0]["started_at"][:19].replace("T", " ") not in people.out
    assert "…" not in people.out  # no value cut off


def test_cob_needs_a_day(shop: Shop) -> None:
    refused(shop.run("cob"), "give --date D to close one business day, or --through D")


# -- which days `fenqi cob` closes, on the clock FENQI_TODAY sets ---------------------------------


@pytest.fixture
def portfolio(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Three loans opened on 2026-01-15 with work from 2026-02-12, made by the services on the
    database the commands use; the clock stands on 2026-02-12."""
    engine = make_engine(shop.url)
    loans = loans_with_work(simulated_context(engine, actor="setup"), 3)
    engine.dispose()
    monkeypatch.setenv("FENQI_TODAY", REMINDED.isoformat())
    return loans


def test_a_day_that_has_not_come_is_refused(shop: Shop, portfolio: list[int]) -> None:
    refused(shop.run("cob", "--date", "2026-02-13"), "--date: business day 2026-02-13 has not come")
    refused(shop.run("cob", "--through", "2026-02-13"), "--through: business day 2026-02-13")
    for absurd in ("9999-12-31", "0001-01-01"):
        refused(shop.run("cob", "--date", absurd), "--date")
    refused(
        shop.run("cob", "--date", "2026-01-14"), "before the first loan was opened (2026-01-15)"
    )
    assert shop.json("cob", "status") == []  # nothing recorded
    assert shop.json("cob", "--date", "2026-02-12")["status"] == "done"  # today may be closed


def test_closing_a_day_catches_up_the_loans_behind_and_says_so(
    shop: Shop, portfolio: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", "2026-02-15")
    closed = shop.json("cob", "--date", "2026-02-15")  # nothing closed since the checkouts
    assert closed["caught_up_from"] == "2026-02-12"
    assert [day["business_date"] for day in closed["caught_up"]] == ["2026-02-12"]  # the reminder
    assert closed["debits_succeeded"] == 3  # the due date's, not skipped
    stages = [message["stage"] for message in shop.json("sms", "outbox")]
    assert stages == ["reminder"] * 3  # paid on the due date: nothing more to say
    assert shop.json("report", "cob", str(closed["id"]))["caught_up_from"] == "2026-02-12"
    # The catch-up queued the reminders of 02-12, whose day is long gone: they are not sent.
    told = shop.json("sms", "dispatch", "--now", "2026-02-15T09:00", today="2026-02-16")
    assert (told["sent"], told["expired"], told["pending"]) == (0, 3, 0)
    assert shop.json("sms", "sent") == []

    # Paid, the loans next have work on the next reminder: a later day catches up nothing.
    monkeypatch.setenv("FENQI_TODAY", "2026-03-12")
    told = shop.run("cob", "--date", "2026-03-12")
    assert told.code == 0, told.err
    assert "Caught up" not in told.out
    assert "Close of business 2026-03-12" in told.out


def test_the_output_says_when_days_were_caught_up(
    shop: Shop, portfolio: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", "2026-02-13")
    told = shop.run("cob", "--date", "2026-02-13")
    assert told.code == 0, told.err
    assert "Caught up: loans with work were closed only through 2026-02-11; each day with work " \
           "from 2026-02-12 on was closed, in turn, before 2026-02-13." in told.out  # fmt: skip
    assert "Close of business 2026-02-12" in told.out
    assert "Close of business 2026-02-13: nothing to do" in told.out
    assert told.err == ""


def test_a_rerun_that_closes_nothing_records_no_run(shop: Shop, portfolio: list[int]) -> None:
    shop.json("cob", "--date", "2026-02-12")
    runs = shop.json("cob", "status")
    again = shop.json("cob", "--date", "2026-02-12")
    assert (again["status"], again["id"], again["caught_up"]) == ("nothing_to_do", None, [])
    assert [day["status"] for day in shop.json("cob", "--through", "2026-02-12")] == [
        "nothing_to_do"
    ]
    told = shop.run("cob", "--date", "2026-02-12")
    assert told.code == 0, told.err
    assert "Close of business 2026-02-12: nothing to do" in told.out
    assert "no run was recorded" in told.out
    assert shop.json("cob", "status") == runs


def test_sms_dispatch_at_a_time_that_has_not_come_is_refused(
    shop: Shop, portfolio: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    shop.json("cob", "--date", "2026-02-12")
    monkeypatch.setenv("FENQI_TODAY", "2026-02-13")  # whatever the time of day
    refused(
        shop.run("sms", "dispatch", "--now", "2026-02-14T09:00"),
        "--now: 2026-02-14T09:00:00 has not come",
    )
    assert len(shop.json("sms", "outbox", "--status", "pending")) == 3  # nothing went
    sent = shop.json("sms", "dispatch", "--now", "2026-02-12T09:00")  # a day gone: fine
    assert (sent["sent"], sent["pending"]) == (3, 0)


# -- a batch that fails ---------------------------------------------------------------------------


def test_a_failing_batch_exits_1_naming_the_run_and_a_rerun_completes_it(
    shop: Shop, portfolio: list[int]
) -> None:
    engine = make_engine(shop.url)
    refuse_to_close(engine, portfolio[1])
    failed = shop.run("cob", "--date", "2026-02-12", "--chunk-size", "1", "--json")
    assert failed.code == 1
    assert failed.err.count("\n") == 1, failed.err
    assert failed.err.startswith("fenqi: error: close of business 2026-02-12 failed (run 1): "
                                 f"1 of 3 chunks failed; chunk 2 after {tries(engine)} attempts: ")  # fmt: skip
    assert MESSAGE in failed.err
    assert "`fenqi cob --date 2026-02-12` takes up the failed chunks" in failed.err
    assert json.loads(failed.out)["status"] == "failed"
    listed = shop.json("cob", "status")[0]
    assert (listed["id"], listed["status"], listed["chunks_failed"]) == (1, "failed", 1)
    assert MESSAGE in listed["error"]
    report = shop.json("report", "cob", "1")
    assert report["status"] == "failed"
    assert MESSAGE in report["error"]
    assert [chunk["status"] for chunk in report["chunks"]] == ["done", "failed", "done"]
    human = shop.run("cob", "status")
    assert "failed" in human.out

    allow_closing(engine)
    engine.dispose()
    again = shop.json("cob", "--date", "2026-02-12", "--chunk-size", "1")
    assert (again["id"], again["status"], again["error"], again["loans"]) == (1, "done", None, 3)


def test_a_worker_whose_chunks_fail_says_so_and_exits_1(shop: Shop, portfolio: list[int]) -> None:
    engine = make_engine(shop.url)
    refuse_to_close(engine, portfolio[0])
    run_id = cob.start_run(simulated_context(engine, actor="seed"), REMINDED, chunk_size=2)
    engine.dispose()
    worker = shop.run("worker", "--run", str(run_id), "--until-idle")
    assert worker.code == 1
    assert worker.err.startswith(
        f"fenqi: error: run {run_id} chunk 1 failed {failed_for_good(engine)}: "
    )
    assert worker.err.count("\n") == 1, worker.err
    assert [chunk["status"] for chunk in shop.json("report", "cob", str(run_id))["chunks"]] == [
        "failed", "done"
    ]  # fmt: skip
    # No coordinator was there: the worker that settled the last chunk settled the run.
    listed = shop.json("cob", "status")[0]
    assert (listed["status"], listed["chunks"], listed["chunks_done"], listed["chunks_failed"]) \
        == ("failed", 2, 1, 1)  # fmt: skip
    assert MESSAGE in listed["error"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_run_whose_coordinator_died_is_settled_by_the_worker_that_finishes_it(
    shop: Shop, portfolio: list[int]
) -> None:
    """`fenqi cob` killed (SIGKILL) in the middle of the chunk whose loan cannot be closed; a
    `fenqi worker` finishes the run: the run is failed with the error, in `cob status` and
    `/metrics`; once the cause is fixed, the first rerun completes it."""
    engine = make_engine(shop.url)
    refuse_to_close(engine, portfolio[2], after_seconds=1)
    command = [sys.executable, "-m", "fenqi", "cob", "--date", "2026-02-12", "--workers", "1",
               "--chunk-size", "1", "--db", shop.url, "--json"]  # fmt: skip
    batch = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until(lambda: chunk_statuses(engine) == ["done", "done", "queued"]
          and closing_unleased(engine, 3), batch)  # fmt: skip
    batch.kill()  # in the third chunk: its statement sleeps, then fails
    assert batch.wait(timeout=30) == -signal.SIGKILL
    until(lambda: not chunk_held(engine))  # the server ends the dead coordinator's transaction

    worker = shop.run("worker", "--until-idle")
    assert worker.code == 1, worker.err
    assert worker.err.startswith("fenqi: error: run 1 chunk 3 failed 3 times: RaiseException: ")
    listed = shop.json("cob", "status")[0]
    assert (listed["status"], listed["chunks"], listed["chunks_done"], listed["chunks_failed"]) \
        == ("failed", 3, 2, 1)  # fmt: skip
    assert listed["error"].startswith("1 of 3 chunks failed; chunk 3 after 3 attempts: ")
    assert listed["finished_at"] is not None
    with TestClient(create_app(shop.url)) as service:
        metrics = service.get("/metrics").text
    assert 'fenqi_cob_chunks_failed{business_date="2026-02-12",status="failed"} 1.0' in metrics
    human = shop.run("cob", "status")
    assert "failed" in human.out
    assert "running" not in human.out

    allow_closing(engine)
    engine.dispose()
    again = shop.run("cob", "--date", "2026-02-12", "--json")
    assert again.code == 0, again.err
    assert (again.json()["id"], again.json()["status"], again.json()["error"]) == (1, "done", None)
    chunks = shop.json("report", "cob", "1")["chunks"]
    assert [(chunk["status"], chunk["attempts"], chunk["error"]) for chunk in chunks] == [
        ("done", 1, None), ("done", 1, None), ("done", 4, None)
    ]  # fmt: skip


def until(condition: Callable[[], bool], process: subprocess.Popen[bytes] | None = None) -> None:
    """Waits (up to a minute) for ``condition``; a ``process`` it waits on may not end first."""
    deadline = time.monotonic() + 60
    while not condition():
        assert process is None or process.poll() is None, "the process ended first"
        assert time.monotonic() < deadline, "waited a minute"
        time.sleep(0.05)


def chunk_statuses(engine: Engine) -> list[str]:
    with Session(engine) as session:
        query = select(CobJobRow.status).order_by(CobJobRow.run_id, CobJobRow.chunk_no)
        return list(session.scalars(query))


def closing_unleased(engine: Engine, chunk_no: int) -> bool:
    """Whether a transaction holds chunk ``chunk_no`` while no lease of it is committed: it is
    being taken (a lease not yet committed dies with its process) or closed (its lease given
    back), not between the two, where a process killed would leave it leased to no one alive
    for the whole lease, and a worker would find nothing to do."""
    with Session(engine) as session:
        chunk = select(CobJobRow).where(CobJobRow.chunk_no == chunk_no)
        if session.scalars(chunk).one().leased_until is not None:
            return False
        try:
            session.execute(chunk.with_for_update(nowait=True)).all()
        except OperationalError:
            return True
        return False


def chunk_held(engine: Engine) -> bool:
    """Whether a transaction (the dead coordinator's) still holds a chunk."""
    with Session(engine) as session:
        try:
            session.execute(select(CobJobRow.chunk_no).with_for_update(nowait=True)).all()
        except OperationalError:
            return True
        return False


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_worker_processes_whose_chunks_fail_fail_the_run_and_a_rerun_completes_it(
    shop: Shop, portfolio: list[int]
) -> None:
    engine = make_engine(shop.url)
    refuse_to_close(engine, portfolio[2])
    command = [sys.executable, "-m", "fenqi", "cob", "--date", "2026-02-12", "--workers", "2",
               "--chunk-size", "1", "--db", shop.url, "--json"]  # fmt: skip
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = batch.communicate(timeout=120)
    assert batch.returncode == 1, err
    assert err.count("\n") == 1, err
    assert err.startswith("fenqi: error: close of business 2026-02-12 failed (run 1): 1 of 3 "
                          "chunks failed; chunk 3 after 3 attempts: RaiseException: ")  # fmt: skip
    assert json.loads(out)["status"] == "failed"
    report = shop.json("report", "cob", "1")
    assert [chunk["status"] for chunk in report["chunks"]] == ["done", "done", "failed"]
    workers = {chunk["worker"].rsplit(":", 1)[1] for chunk in report["chunks"]}
    assert str(batch.pid) not in workers  # the worker processes did the chunks, not `fenqi cob`

    allow_closing(engine)
    engine.dispose()
    again = shop.run("cob", "--date", "2026-02-12", "--workers", "2", "--json")
    assert again.code == 0, again.err
    assert (again.json()["id"], again.json()["status"], again.json()["chunks_done"]) == (
        1,
        "done",
        3,
    )
