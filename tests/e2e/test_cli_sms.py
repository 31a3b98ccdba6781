"""``fenqi sms`` end to end, through the real command: the outbox as JSON, a dispatch at a given
local time, and the refusals of text that is not a time or a status."""

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from fenqi.store.schema import BorrowerRow, SmsOutboxRow
from tests.e2e.cli import fenqi, refused

MESSAGE_KEYS = {"loan_id", "day", "stage", "borrower_id", "phone", "text", "status", "sent_at"}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with three messages queued for one borrower on 2026-02-19."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sms') / 'f.sqlite3'}"
    assert fenqi("db", "init", "--db", url).code == 0
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        session.add(BorrowerRow(id=1, name="张三", phone="13800138000", credit_limit=0,
                                created_at=datetime(2026, 1, 1, tzinfo=UTC)))  # fmt: skip
        for loan, stage in ((1, "overdue"), (2, "due"), (3, "reminder")):
            session.add(SmsOutboxRow(loan_id=loan, day=date(2026, 2, 19), stage=stage,
                                     borrower_id=1, phone="13800138000",
                                     text=f"【fenqi分期】订单{loan}", status="pending"))  # fmt: skip
    engine.dispose()
    return url


def test_the_outbox_is_dispatched_under_the_daily_cap(url: str) -> None:
    queued = fenqi("sms", "outbox", "--db", url, "--json").json()
    assert [(row["loan_id"], row["stage"], row["status"]) for row in queued] == [
        (1, "overdue", "pending"), (2, "due", "pending"), (3, "reminder", "pending")]  # fmt: skip
    assert all(set(row) == MESSAGE_KEYS for row in queued)
    assert queued[0]["text"] == "【fenqi分期】订单1"

    report = fenqi("sms", "dispatch", "--now", "2026-02-19T10:00", "--db", url, "--json").json()
    assert report == {"now": "2026-02-19T10:00:00+08:00", "sent": 2, "held_window": 0,
                      "held_cap": 1, "pending": 1}  # fmt: skip

    sent = fenqi("sms", "outbox", "--status", "sent", "--db", url, "--json").json()
    assert [(row["loan_id"], row["sent_at"]) for row in sent] == [
        (1, "2026-02-19T10:00:00+08:00"), (2, "2026-02-19T10:00:00+08:00")]  # fmt: skip
    table = fenqi("sms", "outbox", "--db", url)
    assert table.code == 0, table.err
    assert "SMS outbox" in table.out
    assert "pending" in table.out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("sms", "dispatch", "--now", "tomorrow"), '--now: "tomorrow" is not a time'),
        (("sms", "dispatch", "--now", "2026-02-19"), "write YYYY-MM-DDTHH:MM"),
        (("sms", "dispatch", "--now", "2026-02-19T25:00"), "--now"),
        (("sms", "outbox", "--status", "lost"), '--status: "lost" is not one of: pending, sent'),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(url: str, args: tuple[str, ...], says: str) -> None:
    refused(fenqi(*args, "--db", url), says)
