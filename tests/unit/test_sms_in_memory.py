"""The SMS dispatcher's rules over an outbox kept in memory (``tests.memory``): the contact
window, the daily cap, expiry and time that only moves forward, and the documents its answers
are presented as. Turns between dispatchers at once are the database's to show
(tests/integration/test_sms_dispatch.py)."""

from datetime import date, datetime

import pytest

from fenqi.loans.ports import QueuedSms, SentSms
from fenqi.services import sms
from fenqi.services.errors import RefusedError
from fenqi.services.views import Dispatched
from fenqi.wire import present
from tests.memory import MemoryUnits

DAY = date(2026, 2, 19)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=sms.LOCAL)


@pytest.fixture
def units() -> MemoryUnits:
    """The first borrower has four messages queued (one from the day before), the second
    one."""
    units = MemoryUnits()
    queued = [(1, 1, DAY, "due"), (2, 1, DAY, "reminder"), (3, 1, DAY, "overdue_1"),
              (4, 1, date(2026, 2, 18), "due"), (5, 2, DAY, "due")]  # fmt: skip
    for loan, borrower, day, stage in queued:
        units.world.outbox[day, loan, stage] = QueuedSms(
            loan, day, stage, borrower, f"1380000000{borrower}", f"loan {loan}", "pending", None
        )
    return units


def test_a_dispatch_sends_in_the_window_under_the_cap_oldest_first(units: MemoryUnits) -> None:
    context = units.context()
    early = sms.dispatch(context, at(7, 59), simulation=True, clock_now=at(12))
    assert early == Dispatched(at(7, 59), 0, 0, 5, 0, 5)
    assert present(early) == {"now": "2026-02-19T07:59:00+08:00", "sent": 0, "expired": 0,
                              "held_window": 5, "held_cap": 0, "pending": 5}  # fmt: skip
    morning = sms.dispatch(context, at(8), simulation=True, clock_now=at(12))
    assert (morning.sent, morning.held_cap, morning.pending) == (3, 2, 2)
    assert units.world.handed == [("13800000001", "loan 4"), ("13800000001", "loan 1"),
                                  ("13800000002", "loan 5")]  # fmt: skip
    assert [(m.loan_id, m.status) for m in sms.outbox(context, "pending")] == [(2, "pending"),
                                                                             (3, "pending")]  # fmt: skip
    noon = sms.dispatch(context, at(12), simulation=True, clock_now=at(12))
    assert (noon.sent, noon.held_cap) == (0, 2)  # still two today


def test_messages_are_presented_with_china_times(units: MemoryUnits) -> None:
    context = units.context()
    sms.dispatch(context, at(8, 30), simulation=True, clock_now=at(12))
    sent = sms.outbox(context, "sent")
    assert present(sent[0]) == {
        "loan_id": 4, "day": "2026-02-18", "stage": "due", "borrower_id": 1,
        "phone": "13800000001", "text": "loan 4", "status": "sent",
        "sent_at": "2026-02-19T08:30:00+08:00",
    }  # fmt: skip
    delivered = sms.delivered(context, "13800000002")
    assert [type(text) for text in delivered] == [SentSms]
    assert present(delivered) == [{"phone": "13800000002", "borrower_id": 2, "text": "loan 5",
                                   "sent_at": "2026-02-19T08:30:00+08:00"}]  # fmt: skip
    with pytest.raises(RefusedError, match="not a message status"):
        sms.outbox(context, "failed")


def test_stale_messages_expire_and_time_never_runs_back(units: MemoryUnits) -> None:
    context = units.context()
    later = sms.dispatch(context, at(9, day=date(2026, 2, 21)), simulation=True,
                         clock_now=at(12, day=date(2026, 2, 21)))  # fmt: skip
    assert (later.sent, later.expired, later.pending) == (0, 5, 0)
    units.world.outbox[DAY, 9, "due"] = QueuedSms(9, DAY, "due", 2, "13800000002", "x",
                                                  "sent", at(10))  # fmt: skip
    with pytest.raises(sms.BeforeLastSentError):
        sms.dispatch(context, at(9, 59), simulation=True, clock_now=at(12))
    assert units.world.outbox[DAY, 9, "due"].status == "sent"  # the refused unit changed nothing
