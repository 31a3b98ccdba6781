"""``fenqi sms`` end to end, through the real command: the outbox as JSON, a dispatch at a given
local time (in a simulation: FENQI_TODAY), the refusals of a time before the last send or, outside
a simulation, before now, and of text that is not a time or a status."""

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from fenqi.store.schema import BorrowerRow, SmsOutboxRow
from tests.e2e.cli import fenqi, on, refused

MESSAGE_KEYS = {"loan_id", "day", "stage", "borrower_id", "phone", "text", "status", "sent_at",
                "reference", "reason"}  # fmt: skip


def queued(path: Path, day: date, stages: Sequence[tuple[int, str]]) -> str:
    """A database at ``path`` with one borrower's messages queued on ``day``, a (loan, stage)
    each."""
    url = f"sqlite:///{path}"
    assert fenqi("db", "init", "--db", url).code == 0
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        session.add(BorrowerRow(id=1, name="张三", phone="13800138000", credit_limit=0,
                                created_at=datetime(2026, 1, 1, tzinfo=UTC)))  # fmt: skip
        for loan, stage in stages:
            session.add(SmsOutboxRow(loan_id=loan, day=day, stage=stage, borrower_id=1,
                                     phone="13800138000", text=f"【fenqi分期】订单{loan}",
                                     status="pending"))  # fmt: skip
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with three messages queued for one borrower on 2026-02-19."""
    stages = ((1, "overdue"), (2, "due"), (3, "reminder"))
    return queued(tmp_path_factory.mktemp("sms") / "f.sqlite3", date(2026, 2, 19), stages)


def six_for_one(tmp_path: Path, day: date) -> str:
    """A database with six messages queued on ``day`` for one borrower."""
    return queued(tmp_path / "six.sqlite3", day, [(loan, "overdue-1") for loan in range(1, 7)])


def test_the_outbox_is_dispatched_under_the_daily_cap(url: str) -> None:
    queued = fenqi("sms", "outbox", "--db", url, "--json").json()
    assert [(row["loan_id"], row["stage"], row["status"]) for row in queued] == [
        (1, "overdue", "pending"), (2, "due", "pending"), (3, "reminder", "pending")]  # fmt: skip
    assert all(set(row) == MESSAGE_KEYS for row in queued)
    assert queued[0]["text"] == "【fenqi分期】订单1"

    report = fenqi("sms", "dispatch", "--now", "2026-02-19T10:00", "--db", url, "--json",
                   env=on("2026-02-20")).json()  # fmt: skip
    assert report == {"now": "2026-02-19T10:00:00+08:00", "sent": 2, "expired": 0,
                      "held_window": 0, "held_cap": 1, "pending": 1, "refused": 0,
                      "unknown": 0}  # fmt: skip

    sent = fenqi("sms", "outbox", "--status", "sent", "--db", url, "--json").json()
    assert [(row["loan_id"], row["sent_at"]) for row in sent] == [
        (1, "2026-02-19T10:00:00+08:00"), (2, "2026-02-19T10:00:00+08:00")]  # fmt: skip
    table = fenqi("sms", "outbox", "--db", url)
    assert table.code == 0, table.err
    assert "SMS outbox" in table.out
    assert "pending" in table.out


def test_a_dispatch_never_goes_back_before_the_last_send(tmp_path: Path) -> None:
    """Six messages queued on 11-30 for one borrower: two sent on 12-01 (a day late: the cap
    held them), then 11-30 and 11-29 are refused — going back would use those days' caps again
    and record times the messages were not sent. On 12-02 the rest are too old to go."""
    url = six_for_one(tmp_path, date(2026, 11, 30))
    simulated = on("2026-12-02")
    sent = fenqi("sms", "dispatch", "--now", "2026-12-01T10:00", "--db", url, "--json",
                 env=simulated).json()  # fmt: skip
    assert (sent["sent"], sent["expired"], sent["held_cap"]) == (2, 0, 4)
    for earlier in ("2026-11-30T10:00", "2026-11-29T10:00", "2026-12-01T09:59"):
        refused(fenqi("sms", "dispatch", "--now", earlier, "--db", url, env=simulated),
                f"--now: {earlier}:00 is before 2026-12-01T10:00:00, when messages were last "
                "sent")  # fmt: skip
    log = fenqi("sms", "sent", "--db", url, "--json").json()
    assert [entry["sent_at"] for entry in log] == ["2026-12-01T10:00:00+08:00"] * 2

    gone = fenqi("sms", "dispatch", "--now", "2026-12-02T10:00", "--db", url, "--json",
                 env=on("2026-12-03")).json()  # fmt: skip
    assert (gone["sent"], gone["expired"], gone["pending"]) == (0, 4, 0)  # 11-30's: long gone
    expired = fenqi("sms", "outbox", "--status", "expired", "--db", url, "--json").json()
    assert [(row["status"], row["sent_at"]) for row in expired] == [("expired", None)] * 4


def test_outside_a_simulation_a_dispatch_is_not_dated_in_the_past(tmp_path: Path) -> None:
    url = six_for_one(tmp_path, date(2026, 11, 29))
    refused(fenqi("sms", "dispatch", "--now", "2026-11-29T10:00", "--db", url),
            "--now: 2026-11-29T10:00:00 has passed")  # fmt: skip
    assert fenqi("sms", "sent", "--db", url, "--json").json() == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("sms", "dispatch", "--now", "tomorrow"), '--now: "tomorrow" is not a time'),
        (("sms", "dispatch", "--now", "2026-02-19"), "write YYYY-MM-DDTHH:MM"),
        (("sms", "dispatch", "--now", "2026-02-19T25:00"), "--now"),
        (
            ("sms", "outbox", "--status", "lost"),
            '"lost" is not one of: pending, sending, sent, unknown, expired',
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(url: str, args: tuple[str, ...], says: str) -> None:
    refused(fenqi(*args, "--db", url), says)
