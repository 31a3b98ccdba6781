"""Crash test: ``fenqi cob`` killed with SIGKILL at random points, then run again, leaves exactly
the events, journal and outbox of a run that was never interrupted; and a day already closed
closes to nothing."""

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path

import pytest

from fenqi.domain.money import Money
from fenqi.services import borrowers, products, servicing
from fenqi.services import close_of_business as cob
from fenqi.store.database import make_engine, upgrade
from tests.batch_writes import snapshot
from tests.e2e.cli import fenqi
from tests.simulated import simulated_context

TRIALS = 20
LOANS = 100
CHUNK = 2  # loans a chunk: many commits, so many places to be killed between
CHUNKS = LOANS // CHUNK  # every loan has work on DAY
DAY = date(2026, 2, 15)  # a due date: debits, failures and dunning for the whole portfolio
# Under pytest-xdist both tests run on one worker, so the portfolio is built once.
pytestmark = pytest.mark.xdist_group("cob-crash")


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with LOANS loans due on DAY, closed through the day before, half on cards too
    short to pay."""
    path = tmp_path_factory.mktemp("crash") / "portfolio.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    shop = simulated_context(engine, actor="crash-test")
    products.load_products(shop)
    for number in range(LOANS):
        who = borrowers.create_borrower(shop, f"测试{number}", f"1390000{number:04d}", Money(10**9))
        balance = "100000" if number % 2 else "10"
        borrowers.bind_method(shop, who.id, "bank_card", f"62220200000{number:08d}",
                              sim_balance=Money.parse(balance))  # fmt: skip
        product, periods = ("cash", 12) if number % 3 else ("mall-6", None)
        order = servicing.Order(who.id, f"C-{number}", "m", Money.parse("6000"), product,
                                periods, date(2026, 1, 15))  # fmt: skip
        servicing.checkout(shop, order)
    cob.close(shop, DAY - timedelta(days=1))  # the reminders: only DAY's work is left to close
    engine.dispose()
    return path


def close(path: Path, chunk_size: int = CHUNK) -> None:
    done = fenqi("cob", "--date", DAY.isoformat(), "--chunk-size", str(chunk_size),
                 "--db", f"sqlite:///{path}", "--json")  # fmt: skip
    assert done.code == 0, done.err


def chunks_done(path: Path) -> int:
    """Chunks the running batch has committed (SQLite lets a reader in between its commits)."""
    with closing(sqlite3.connect(path, timeout=30)) as database:
        found = database.execute("SELECT count(*) FROM cob_jobs WHERE status = 'done'")
        return int(found.fetchone()[0])


def test_a_killed_close_of_business_rerun_matches_an_uninterrupted_one(
    portfolio: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.sqlite3"
    shutil.copy(portfolio, reference)
    began = time.perf_counter()
    close(reference, chunk_size=3)  # the trials' chunks are smaller: chunking changes nothing
    chunk_time = (time.perf_counter() - began) / CHUNKS  # more than one: it counts start-up
    expected = snapshot(make_engine(f"sqlite:///{reference}"))
    assert any(kind == "debit_failed" for _, _, kind, _, _ in expected["events"])
    assert any(kind == "payment" for _, _, kind, _, _ in expected["events"])
    assert expected["outbox"]

    # Each kill waits for a random number of chunks to be committed, then a random part of a
    # chunk's time: it lands inside some chunk's transaction, whatever the machine's load.
    chance = random.Random(20260215)
    killed_midway = partly_closed = 0
    for trial in range(TRIALS):
        path = tmp_path / f"trial-{trial}.sqlite3"
        shutil.copy(portfolio, path)
        command = [sys.executable, "-m", "fenqi", "cob", "--date", DAY.isoformat(),
                   "--chunk-size", str(CHUNK), "--db", f"sqlite:///{path}", "--json"]  # fmt: skip
        committed = chance.randrange(CHUNKS - 1)
        worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while worker.poll() is None and chunks_done(path) < committed:
            time.sleep(0.002)
        time.sleep(chance.uniform(0, chunk_time))
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            killed_midway += 1
        worker.wait()
        closed = [
            row for row in snapshot(make_engine(f"sqlite:///{path}"))["loans"] if row[5] == DAY
        ]
        partly_closed += 0 < len(closed) < len(expected["loans"])
        close(path)
        assert snapshot(make_engine(f"sqlite:///{path}")) == expected, f"trial {trial}"
    assert killed_midway >= TRIALS * 3 // 4  # the kills landed while the batch was running
    assert partly_closed >= TRIALS // 2  # most of them between one chunk's commit and the next


def test_a_closed_day_closes_to_nothing(portfolio: Path, tmp_path: Path) -> None:
    path = tmp_path / "again.sqlite3"
    shutil.copy(portfolio, path)
    close(path)
    engine = make_engine(f"sqlite:///{path}")
    before = snapshot(engine)
    again = fenqi("cob", "--date", DAY.isoformat(), "--db", f"sqlite:///{path}", "--json").json()
    assert again["loans"] == 0
    assert snapshot(engine) == before
