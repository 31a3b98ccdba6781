"""The nightly batch on SQLite and PostgreSQL: a loan whose card holds too little, closed day by
day — reminder, failed debits and their retries, grace, penalty from the day after the due date,
DPD and buckets, dunning messages — then paid up; and a loan written off at 180 DPD whose later
payment is a recovery. The books are checked after every day."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.services import audit, books, borrowers, products, servicing
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context
from fenqi.store.schema import BucketMoveRow, CobRunRow, LoanEventRow, LoanRow, SmsOutboxRow
from fenqi.wire import document, documents, present
from tests.batch_faults import MESSAGE, allow_closing, loans_with_work, refuse_to_close, tries
from tests.simulated import simulated_context


@pytest.fixture
def shop(engine: Engine) -> Context:
    context = simulated_context(engine, actor="batch")
    products.load_products(context)
    return context


def short_card_loan(shop: Context, balance: str = "100") -> int:
    """10,000 over 12 months at 12% (the cash product), on a card holding ``balance``."""
    who = borrowers.create_borrower(shop, "王小明", "13500135000", Money.parse("50000"))
    borrowers.bind_method(shop, who.id, "bank_card", "6222020000009876543",
                          sim_balance=Money.parse(balance))  # fmt: skip
    order = servicing.Order(who.id, "JD-9", "京东", Money.parse("10000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    return int(present(servicing.checkout(shop, order))["id"])


def close_days(shop: Context, first: date, last: date) -> list[dict[str, object]]:
    days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    results = []
    for day in days:
        results.append(document(cob.close(shop, day, chunk_size=7)))
        assert present(books.check_books(shop))["consistent"], day
        assert present(books.trial_balance(shop))["balanced"], day
    return results


def events(engine: Engine, loan: int) -> list[tuple[str, date, dict[str, object]]]:
    with Session(engine) as session:
        rows = session.execute(select(LoanEventRow.kind, LoanEventRow.effective, LoanEventRow.payload)
                               .where(LoanEventRow.loan_id == loan).order_by(LoanEventRow.seq))  # fmt: skip
        return [tuple(row) for row in rows]  # type: ignore[misc]


def outbox(engine: Engine, loan: int) -> list[tuple[date, str]]:
    with Session(engine) as session:
        rows = session.execute(select(SmsOutboxRow.day, SmsOutboxRow.stage)
                               .where(SmsOutboxRow.loan_id == loan).order_by(SmsOutboxRow.day))  # fmt: skip
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_short_card_fails_its_debits_falls_overdue_and_is_brought_current(
    shop: Context, engine: Engine
) -> None:
    loan = short_card_loan(shop)
    close_days(shop, date(2026, 1, 16), date(2026, 2, 11))
    assert outbox(engine, loan) == []  # nothing to say before the reminder
    close_days(shop, date(2026, 2, 12), date(2026, 2, 18))
    assert [(kind, day) for kind, day, _ in events(engine, loan)] == [
        ("debit_failed", date(2026, 2, 15)),  # on the due date
        ("debit_failed", date(2026, 2, 16)),  # and the three retries
        ("debit_failed", date(2026, 2, 17)),
        ("debit_failed", date(2026, 2, 18)),
    ]
    in_grace = present(servicing.show_loan(shop, loan, date(2026, 2, 18)))
    assert (in_grace["dpd"], in_grace["bucket"], in_grace["outstanding_penalty"]) == (
        0,
        "M0",
        "0.00",
    )

    closed = date(2026, 2, 18)
    for day, dpd, penalty in [
        (date(2026, 2, 19), 4, "1.58"),  # 788.49 × 12% × 1.5 / 360 × 4 days = 1.577
        (date(2026, 2, 20), 5, "1.97"),
        (date(2026, 2, 25), 10, "3.94"),  # docs/domain.md#penalty-interest
    ]:
        close_days(shop, closed + timedelta(days=1), day)
        closed = day
        shown = present(servicing.show_loan(shop, loan, day))
        assert (shown["dpd"], shown["bucket"], shown["outstanding_penalty"]) == (dpd, "M1", penalty)
        assert shown["outstanding_fee"] == "44.42"  # the late fee, once
    assert [kind for kind, _, _ in events(engine, loan)].count("debit_failed") == 4  # no more
    stages = [stage for _, stage in outbox(engine, loan)]
    assert stages == ["reminder", "due", "overdue-1", "overdue-3", "overdue-7"]
    with Session(engine) as session:
        moves = session.execute(select(BucketMoveRow.day, BucketMoveRow.to_bucket)
                                .where(BucketMoveRow.loan_id == loan)).all()  # fmt: skip
        row = session.get(LoanRow, loan)
        assert row is not None
        assert (row.dpd, row.closed_through, row.next_action_date) == (
            10,
            date(2026, 2, 25),
            date(2026, 2, 26),
        )
    assert [tuple(move) for move in moves] == [(date(2026, 2, 19), "M1")]

    due = present(servicing.show_loan(shop, loan, date(2026, 2, 26)))["amount_due"]
    servicing.pay(shop, loan, Money.parse(due), servicing.Source(manual=True), date(2026, 2, 26))
    close_days(shop, date(2026, 2, 26), date(2026, 2, 27))
    current = present(servicing.show_loan(shop, loan, date(2026, 2, 27)))
    assert (current["status"], current["dpd"], current["bucket"]) == ("active", 0, "M0")
    with Session(engine) as session:
        row = session.get(LoanRow, loan)
        assert row is not None
        assert row.next_action_date == date(2026, 3, 12)  # the next reminder


def test_a_rerun_of_a_closed_day_changes_nothing(shop: Context, engine: Engine) -> None:
    loan = short_card_loan(shop)
    close_days(shop, date(2026, 2, 12), date(2026, 2, 20))
    before = (events(engine, loan), outbox(engine, loan), present(books.trial_balance(shop)))
    again = document(cob.close(shop, date(2026, 2, 20)))
    assert again["loans"] == 0
    assert (
        events(engine, loan),
        outbox(engine, loan),
        present(books.trial_balance(shop)),
    ) == before


def test_a_loan_180_days_past_due_is_written_off_and_a_later_payment_is_a_recovery(
    shop: Context, engine: Engine
) -> None:
    loan = short_card_loan(shop, balance="0")
    results = close_days(shop, date(2026, 2, 12), date(2026, 8, 14))
    assert sum(int(str(result["write_offs"])) for result in results) == 1
    written = present(servicing.show_loan(shop, loan, date(2026, 8, 14)))
    assert (written["status"], written["written_off_on"]) == ("written_off", "2026-08-14")
    kind, day, payload = events(engine, loan)[-1]  # recorded by the run of that day
    assert (kind, day, payload) == ("write_off", date(2026, 8, 14),
                                    {"reason": "180 days past due (write-off at 180)"})  # fmt: skip
    with Session(engine) as session:
        row = session.get(LoanRow, loan)
        assert row is not None
        assert row.next_action_date is None  # nothing more for the batch
    servicing.pay(shop, loan, Money.parse("500"), servicing.Source(manual=True), date(2026, 9, 1))
    accounts = {line["account"]: line for line in present(books.trial_balance(shop))["accounts"]}
    assert accounts["recoveries"]["credit"] == "500.00"
    assert Money.parse(accounts["write_off_expense"]["debit"]) > Money.parse("10000")
    assert present(books.check_books(shop))["consistent"]


# -- which days the batch closes ------------------------------------------------------------------


def run_count(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.scalars(select(CobRunRow.id)).all())


def watermark(engine: Engine, loan: int) -> date | None:
    with Session(engine) as session:
        row = session.get(LoanRow, loan)
        assert row is not None
        return row.closed_through


@pytest.mark.parametrize("day", [date(2026, 2, 16), date(2027, 1, 1), date.max])
def test_a_day_that_has_not_come_is_refused_and_nothing_is_recorded(
    shop: Context, engine: Engine, day: date
) -> None:
    loan = short_card_loan(shop)
    today = date(2026, 2, 15)
    for attempt in (
        lambda: cob.close(shop, day, today=today),
        lambda: cob.close_through(shop, day, today=today),
        lambda: cob.days_to_close(shop, day, today=today),
        lambda: cob.start_run(shop, day, today=today),
    ):
        with pytest.raises(cob.BusinessDayError, match=f"{day} has not come yet") as refused:
            attempt()
        assert refused.value.field == "date"
    with pytest.raises(cob.BusinessDayError, match="has not come yet"):
        cob.close(shop, date.max)  # today by the clock, whatever it is
    assert (run_count(engine), watermark(engine, loan)) == (0, date(2026, 1, 15))


def test_the_clock_override_is_the_batchs_today(
    shop: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_card_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-11")
    with pytest.raises(cob.BusinessDayError, match=r"2026-02-12 has not come yet \(today is 2026"):
        cob.close(shop, date(2026, 2, 12))
    monkeypatch.setenv("FENQI_TODAY", "2026-02-12")
    assert document(cob.close(shop, date(2026, 2, 12)))["status"] == "done"


@pytest.mark.parametrize("day", [date.min, date(2026, 1, 14)])
def test_a_day_before_the_first_loan_was_opened_is_refused(shop: Context, day: date) -> None:
    short_card_loan(shop)
    with pytest.raises(cob.BusinessDayError, match="before the first loan was opened"):
        cob.close(shop, day)
    opened = document(cob.close(shop, date(2026, 1, 15)))  # opened: no work yet
    assert opened["status"] == "nothing_to_do"


def test_closing_a_day_catches_up_the_days_loans_are_behind_one_by_one(
    shop: Context, engine: Engine
) -> None:
    loan = short_card_loan(shop)
    closed = document(cob.close(shop, date(2026, 2, 25)))  # nothing closed since the checkout
    caught_up = closed["caught_up"]
    assert [day["business_date"] for day in caught_up] == [
        (date(2026, 2, 12) + timedelta(days=k)).isoformat() for k in [0, *range(3, 13)]
    ]  # the reminder, then the due date and each day after it: the days without work passed over
    assert all(day["id"] is not None for day in caught_up)
    assert closed["caught_up_from"] == "2026-02-12"
    assert document(cob.run_report(shop, closed["id"]))["caught_up_from"] == "2026-02-12"
    assert sum(day["debits_failed"] for day in [*caught_up, closed]) == 4
    assert [kind for kind, _, _ in events(engine, loan)] == ["debit_failed"] * 4
    assert [stage for _, stage in outbox(engine, loan)] == [
        "reminder", "due", "overdue-1", "overdue-3", "overdue-7"
    ]  # fmt: skip
    shown = present(servicing.show_loan(shop, loan, date(2026, 2, 25)))
    assert (shown["dpd"], shown["outstanding_penalty"]) == (10, "3.94")  # as day by day
    assert present(books.check_books(shop))["consistent"]


def test_only_loans_with_work_on_a_day_not_closed_are_behind(shop: Context, engine: Engine) -> None:
    loan = short_card_loan(shop)  # opened 2026-01-15, closed through it; next work 2026-02-12
    assert cob.days_to_close(shop, date(2026, 2, 12)) == [date(2026, 2, 12)]  # idle, not behind
    assert document(cob.close(shop, date(2026, 2, 12)))["caught_up"] == []
    assert cob.days_to_close(shop, date(2026, 2, 13)) == [date(2026, 2, 13)]  # one day ahead
    # Its next work is the due date: the days before it are not caught up, nor recorded.
    assert cob.days_to_close(shop, date(2026, 2, 16)) == [date(2026, 2, 15), date(2026, 2, 16)]
    days = [day["business_date"] for day in documents(cob.close_through(shop, date(2026, 2, 16)))]
    assert days == ["2026-02-15", "2026-02-16"]
    assert watermark(engine, loan) == date(2026, 2, 16)
    # Overdue from now on, it has work every day: closing a later day catches up each.
    assert cob.days_to_close(shop, date(2026, 2, 19))[0] == date(2026, 2, 17)


def test_each_run_is_in_the_audit_log_with_who_started_it(shop: Context) -> None:
    short_card_loan(shop, "1000000")
    close_days(shop, date(2026, 2, 14), date(2026, 2, 15))
    logged = present(audit.audit_log(shop, "cob:"))
    # Closing 2-14 closes 2-12 first (the reminder three days before the first due date); the
    # days with no work have no run.
    assert [(entry["action"], entry["target"], entry["actor"], entry["after"]["business_date"])
            for entry in logged] == [
        ("cob.run", "cob:2", "batch", "2026-02-15"), ("cob.run", "cob:1", "batch", "2026-02-12"),
    ]  # fmt: skip


def test_a_rerun_that_closes_nothing_records_no_run(shop: Context, engine: Engine) -> None:
    short_card_loan(shop)
    cob.close(shop, date(2026, 2, 20))
    runs, before = run_count(engine), present(books.trial_balance(shop))
    for again in (
        document(cob.close(shop, date(2026, 2, 20))),
        *documents(cob.close_through(shop, date(2026, 2, 20))),
        document(cob.close(shop, date(2026, 2, 1))),  # long closed
    ):
        assert (again["status"], again["id"], again["loans"]) == ("nothing_to_do", None, 0)
        assert "nothing to do" in again["detail"]
    assert cob.start_run(shop, date(2026, 2, 20)) is None
    assert (run_count(engine), present(books.trial_balance(shop))) == (runs, before)


# -- a batch whose chunks fail --------------------------------------------------------------------


def test_a_chunk_that_fails_fails_the_run_with_its_error_and_a_rerun_completes_it(
    shop: Context, engine: Engine
) -> None:
    loans = loans_with_work(shop, 3)
    refuse_to_close(engine, loans[1])
    failed = document(cob.close(shop, date(2026, 2, 12), chunk_size=1))
    assert (failed["status"], failed["chunks_done"], failed["chunks_failed"]) == ("failed", 2, 1)
    assert failed["error"].startswith(f"1 of 3 chunks failed; chunk 2 after {tries(engine)} ")
    assert MESSAGE in failed["error"]
    assert "UPDATE" not in failed["error"]  # never the statement
    assert "[SQL" not in failed["error"]
    assert failed["finished_at"] is not None
    chunks = document(cob.run_report(shop, failed["id"]))["chunks"]
    assert [(chunk["status"], chunk["attempts"]) for chunk in chunks] == [
        ("done", 1), ("failed", tries(engine)), ("done", 1)
    ]  # fmt: skip
    assert MESSAGE in chunks[1]["error"]
    assert documents(cob.runs(shop))[0]["status"] == "failed"
    assert [watermark(engine, loan) for loan in loans] == [
        date(2026, 2, 12), date(2026, 1, 15), date(2026, 2, 12)
    ]  # fmt: skip
    # A later day finds the failed day's loan behind, and stops at the failed day again.
    stopped = document(cob.close(shop, date(2026, 2, 13), chunk_size=1))
    assert (stopped["business_date"], stopped["status"], stopped["id"]) == (
        "2026-02-12", "failed", failed["id"]
    )  # fmt: skip

    allow_closing(engine)
    completed = document(cob.close(shop, date(2026, 2, 12), chunk_size=1))
    assert (completed["id"], completed["status"], completed["error"]) == (
        failed["id"],
        "done",
        None,
    )
    assert (completed["chunks_done"], completed["chunks_failed"], completed["loans"]) == (3, 0, 3)
    assert watermark(engine, loans[1]) == date(2026, 2, 12)
    assert run_count(engine) == 1
    assert present(books.check_books(shop))["consistent"]
    # Every chunk is done, with no error, and says how many tries it took: the failed one the
    # three that raised in each of the two runs that stopped at it, and the one that did it.
    chunks = document(cob.run_report(shop, failed["id"]))["chunks"]
    assert [(chunk["status"], chunk["attempts"], chunk["error"]) for chunk in chunks] == [
        ("done", 1, None), ("done", 2 * tries(engine) + 1, None), ("done", 1, None)
    ]  # fmt: skip


def test_a_chunk_that_fails_once_is_tried_again_and_the_run_is_done(
    shop: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    loans = loans_with_work(shop, 3)
    real, calls = cob._close_chunk, []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[3])
        if len(calls) == 1:
            raise RuntimeError("the connection dropped")
        return real(*args, **kwargs)

    monkeypatch.setattr(cob, "_close_chunk", flaky)
    closed = document(cob.close(shop, date(2026, 2, 12), chunk_size=1))
    assert (closed["status"], closed["chunks_done"], closed["loans"]) == ("done", 3, 3)
    assert calls == [loans[0], *loans]
    chunks = document(cob.run_report(shop, closed["id"]))["chunks"]
    assert [(chunk["attempts"], chunk["error"]) for chunk in chunks] == [(2, None), (1, None),
                                                                          (1, None)]  # fmt: skip


def test_a_chunk_keeps_the_first_line_of_its_failure_until_it_is_done(
    shop: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    loans = loans_with_work(shop, 2)
    real = cob._close_chunk

    def broken(*args: Any, **kwargs: Any) -> Any:
        if args[3] == loans[0]:
            raise RuntimeError("the connection dropped\nsecond line with 13500130000")
        return real(*args, **kwargs)

    monkeypatch.setattr(cob, "_close_chunk", broken)
    failed = document(cob.close(shop, date(2026, 2, 12), chunk_size=1))
    chunk = document(cob.run_report(shop, failed["id"]))["chunks"][0]
    assert (chunk["status"], chunk["attempts"]) == ("failed", cob.MAX_ATTEMPTS)
    assert chunk["error"] == "RuntimeError: the connection dropped"  # the first line only
    assert failed["error"].endswith("after 3 attempts: RuntimeError: the connection dropped")


def test_the_worker_that_settles_a_runs_last_chunk_settles_the_run(
    shop: Context, engine: Engine
) -> None:
    """No coordinator adds the run up (it died, or the chunks were left to `fenqi worker`s):
    the worker that settles the last chunk records the run failed, with the error, in that
    chunk's transaction; a rerun once the cause is fixed completes it."""
    loans = loans_with_work(shop, 3)
    refuse_to_close(engine, loans[1])
    run_id = cob.start_run(shop, date(2026, 2, 12), chunk_size=1)
    assert run_id is not None
    running = documents(cob.runs(shop))[0]  # how far it has got, while it runs
    assert (running["status"], running["chunks"], running["chunks_done"]) == ("running", 3, 0)
    worked = cob.work(shop)  # any run's chunks, as `fenqi worker` takes them
    assert (worked.done, len(worked.failed)) == (2, 1)
    failed = documents(cob.runs(shop))[0]
    assert (failed["status"], failed["chunks"], failed["chunks_done"], failed["chunks_failed"]) \
        == ("failed", 3, 2, 1)  # fmt: skip
    assert failed["error"].startswith(f"1 of 3 chunks failed; chunk 2 after {tries(engine)} ")
    assert MESSAGE in failed["error"]
    assert (failed["finished_at"] is not None, failed["loans"]) == (True, 2)

    allow_closing(engine)
    completed = document(cob.close(shop, date(2026, 2, 12), chunk_size=1))
    assert (completed["id"], completed["status"], completed["chunks_done"]) == (run_id, "done", 3)


def test_a_worker_that_does_a_runs_last_chunk_records_it_done(shop: Context) -> None:
    loans_with_work(shop, 3)
    run_id = cob.start_run(shop, date(2026, 2, 12), chunk_size=2)
    assert cob.work(shop, run_id) == cob.Worked(2, [])
    done = documents(cob.runs(shop))[0]
    assert (done["status"], done["error"], done["chunks_done"], done["loans"]) == ("done", None,
                                                                                 2, 3)  # fmt: skip


def test_a_run_left_running_with_its_chunks_settled_is_completed_by_the_first_rerun(
    shop: Context, engine: Engine
) -> None:
    """A run that an earlier version left "running" although no chunk is queued (a coordinator
    killed, its chunks finished by a worker that did not settle runs): the first rerun once the
    cause is fixed queues its failed chunks again and completes it."""
    loans = loans_with_work(shop, 3)
    refuse_to_close(engine, loans[2])
    failed = document(cob.close(shop, date(2026, 2, 12), chunk_size=1))
    with Session(engine) as session, session.begin():
        session.execute(update(CobRunRow).values(status="running", error=None, finished_at=None,
                                                 counts={}))  # fmt: skip
    allow_closing(engine)
    completed = document(cob.close(shop, date(2026, 2, 12), chunk_size=1))
    assert (completed["id"], completed["status"], completed["chunks_done"]) == (failed["id"],
                                                                              "done", 3)  # fmt: skip
    assert completed["loans"] == 3


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_workers_settling_the_last_two_chunks_at_once_settle_the_run(
    shop: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers each hold one of the run's last two chunks and finish them at the same
    moment: neither sees the other's chunk done before it commits, yet the run is settled."""
    loans_with_work(shop, 2)
    together = threading.Barrier(2, timeout=30)
    real = cob._close_chunk

    def in_step(*args: Any, **kwargs: Any) -> Any:
        counts = real(*args, **kwargs)
        together.wait()  # both chunks closed, neither marked done yet
        return counts

    monkeypatch.setattr(cob, "_close_chunk", in_step)
    run_id = cob.start_run(shop, date(2026, 2, 12), chunk_size=1)
    with ThreadPoolExecutor(2) as workers:
        worked = list(workers.map(lambda _: cob.work(shop, run_id), range(2)))
    assert [result.done for result in worked] == [1, 1]  # one chunk each, at the same time
    settled = documents(cob.runs(shop))[0]
    assert (settled["status"], settled["chunks_done"], settled["loans"]) == ("done", 2, 2)


def test_runs_started_at_once_for_a_day_share_one_run(shop: Context) -> None:
    loans_with_work(shop, 3)
    with ThreadPoolExecutor(8) as starters:
        started = set(starters.map(lambda _: cob.start_run(shop, date(2026, 2, 12)), range(8)))
    assert len(started) == 1
    assert [run["business_date"] for run in documents(cob.runs(shop))] == ["2026-02-12"]


def test_a_worker_never_takes_a_chunk_of_a_day_that_has_not_come(shop: Context) -> None:
    loans_with_work(shop, 3)
    ahead = cob.start_run(shop, date(2026, 2, 12), today=date(2026, 2, 12))
    assert ahead is not None
    with pytest.raises(cob.BusinessDayError, match="has not come yet"):
        cob.work(shop, ahead, today=date(2026, 2, 11))
    assert cob.work(shop, today=date(2026, 2, 11)) == cob.Worked(0, [])
    assert cob.finish_run(shop, ahead).record.status == "running"  # its chunks wait for the day
    assert cob.work(shop, today=date(2026, 2, 12)).done == 1
    assert cob.finish_run(shop, ahead).record.status == "done"


def test_a_failure_says_the_drivers_first_line_and_never_the_statement() -> None:
    error = DBAPIError("UPDATE loans SET phone=%(phone)s", {"phone": "13800138000"},
                       ValueError("value too long\nDETAIL: Failing row contains (13800138000)"))  # fmt: skip
    assert cob.failure(error) == "ValueError: value too long"
    assert cob.failure(KeyError()) == "KeyError"


# -- the aging report of a day ---------------------------------------------------------------------


def buckets(shop: Context, day: date) -> dict[str, tuple[int, str]]:
    report = present(cob.aging(shop, day))
    return {row["bucket"]: (row["loans"], row["outstanding_principal"])
            for row in report["buckets"] if row["loans"]}  # fmt: skip


def test_the_aging_of_a_past_day_is_the_loans_as_they_were_that_day(shop: Context) -> None:
    """A loan current on a day is in M0 in that day's report though it is in M3 now, and
    closing later days leaves a past day's report as it was."""
    loan = short_card_loan(shop, balance="0")
    paying = short_card_loan_of(shop, "13500135001", "JD-10")
    cob.close(shop, date(2026, 3, 1))
    first = buckets(shop, date(2026, 3, 1))
    owed = present(servicing.show_loan(shop, loan, date(2026, 3, 1)))
    assert owed["dpd"] == 14
    assert first["M1"] == (1, owed["outstanding_principal"])
    cob.close(shop, date(2026, 4, 20))
    assert buckets(shop, date(2026, 3, 1)) == first  # the days closed since change nothing
    assert buckets(shop, date(2026, 2, 10)) == {"M0": (2, "20000.00")}  # before anything fell due
    now = buckets(shop, date(2026, 4, 20))
    assert now["M3"][0] == 1  # the rows' own day: as the batch left them
    shown = present(servicing.show_loan(shop, loan, date(2026, 4, 20)))
    assert now["M3"][1] == shown["outstanding_principal"]
    assert paying > loan


def short_card_loan_of(shop: Context, phone: str, order: str) -> int:
    """Another borrower's plan as ``short_card_loan``'s, on a card that pays."""
    who = borrowers.create_borrower(shop, "李小红", phone, Money.parse("50000"))
    borrowers.bind_method(shop, who.id, "bank_card", "6222020000009876544",
                          sim_balance=Money.parse("100000"))  # fmt: skip
    order_ = servicing.Order(who.id, order, "京东", Money.parse("10000"), "cash", 12,
                             date(2026, 1, 15))  # fmt: skip
    return int(present(servicing.checkout(shop, order_))["id"])
