"""The SMS dispatcher's rules over an outbox kept in memory (``tests.memory``): the contact
window, the daily cap, expiry and time that only moves forward, and the documents its answers
are presented as. Turns between dispatchers at once are the database's to show
(tests/integration/test_sms_dispatch.py)."""

from datetime import date, datetime

import pytest

from fenqi.loans.ports import QueuedSms, SentSms
from fenqi.ports import SmsRefusedError
from fenqi.services import sms
from fenqi.services.errors import RefusedError
from fenqi.services.views import Dispatched
from fenqi.wire import present
from tests.memory import MemoryUnits

DAY = date(2026, 2, 19)
DATE_BEFORE = date(2026, 2, 18)


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
                              "held_window": 5, "held_cap": 0, "pending": 5, "refused": 0,
                              "unknown": 0}  # fmt: skip
    morning = sms.dispatch(context, at(8), simulation=True, clock_now=at(12))
    assert (morning.sent, morning.held_cap, morning.pending) == (3, 2, 2)
    assert units.sms.handed == [("13800000001", "loan 4"), ("13800000001", "loan 1"),
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
        "sent_at": "2026-02-19T08:30:00+08:00", "reference": "mem-sms:1", "reason": None,
    }  # fmt: skip
    delivered = sms.delivered(context, "13800000002")
    assert [type(text) for text in delivered] == [SentSms]
    assert present(delivered) == [{"phone": "13800000002", "borrower_id": 2, "text": "loan 5",
                                   "sent_at": "2026-02-19T08:30:00+08:00"}]  # fmt: skip
    with pytest.raises(RefusedError, match="not a message status"):
        sms.outbox(context, "delivered")


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


def test_a_message_the_gateway_refuses_is_pending_again_with_its_reason(
    units: MemoryUnits,
) -> None:
    context = units.context()
    units.sms.failing["13800000002"] = SmsRefusedError("number not in service")
    first = sms.dispatch(context, at(8), simulation=True, clock_now=at(12))
    assert (first.sent, first.refused, first.unknown) == (2, 1, 0)
    refused = units.world.outbox[DAY, 5, "due"]
    assert (refused.status, refused.sent_at, refused.reason) == ("pending", None,
                                                                 "number not in service")  # fmt: skip
    assert [text.loan_id for text in units.world.sent] == [4, 1]  # the refused one is no contact
    del units.sms.failing["13800000002"]
    again = sms.dispatch(context, at(9), simulation=True, clock_now=at(12))
    assert (again.sent, again.refused) == (1, 0)
    assert units.world.outbox[DAY, 5, "due"].status == "sent"


def test_a_message_handed_over_with_no_answer_is_unknown_counted_and_never_sent_again(
    units: MemoryUnits,
) -> None:
    context = units.context()
    units.sms.failing["13800000001"] = TimeoutError()
    first = sms.dispatch(context, at(8), simulation=True, clock_now=at(12))
    assert (first.sent, first.unknown, first.held_cap) == (1, 2, 2)
    unknown = units.world.outbox[DATE_BEFORE, 4, "due"]
    assert (unknown.status, unknown.reason) == ("unknown", "TimeoutError")
    assert sorted(text.loan_id for text in units.world.sent) == [1, 4, 5]  # it may have gone
    del units.sms.failing["13800000001"]
    later = sms.dispatch(context, at(12), simulation=True, clock_now=at(12))
    assert (later.sent, later.held_cap) == (0, 2)  # the unknown two used the day's cap
    assert units.sms.handed == [("13800000002", "loan 5")]


def test_a_dispatcher_stopped_mid_hand_over_leaves_messages_unknown_not_sent_twice(
    units: MemoryUnits,
) -> None:
    """The claim is committed before the gateway is called: a dispatcher killed while handing
    messages over leaves them sending; a dispatch within ``STALE_AFTER`` leaves them be (the
    first may still record them), a later one marks them unknown and never sends them."""
    context = units.context()
    units.sms.failing["13800000001"] = KeyboardInterrupt()  # the process stops at this message
    with pytest.raises(KeyboardInterrupt):
        sms.dispatch(context, at(8), simulation=True, clock_now=at(12))
    sending = [key for key, m in units.world.outbox.items() if m.status == "sending"]
    assert sorted(sending) == [(DATE_BEFORE, 4, "due"), (DAY, 1, "due"), (DAY, 5, "due")]
    del units.sms.failing["13800000001"]
    soon = sms.dispatch(context, at(8, 5), simulation=True, clock_now=at(12))
    assert (soon.sent, soon.unknown, soon.held_cap) == (0, 0, 2)  # the claims hold the cap
    later = sms.dispatch(context, at(8, 11), simulation=True, clock_now=at(12))
    assert (later.sent, later.unknown) == (0, 3)
    assert units.sms.handed == []
    assert {m.status for m in units.world.outbox.values()} == {"unknown", "pending"}
