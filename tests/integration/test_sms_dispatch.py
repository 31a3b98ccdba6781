"""The SMS dispatcher on SQLite and PostgreSQL: it sends inside the contact window only, at most
two messages a borrower a local day, oldest first, and keeps a record of each
(docs/domain.md#quiet-hours-and-daily-cap); a message whose day is gone expires, and a
dispatch's time never goes back. The clock is a simulation's (FENQI_TODAY) unless a test says
otherwise: the dispatches are dated in 2026."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.channels.sms_simulator import SimulatedSms
from fenqi.ports import SmsRefusedError
from fenqi.services import audit, credentials, sms
from fenqi.services.context import Context
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import Principal
from fenqi.store.schema import BorrowerRow, SmsOutboxRow, SmsSentRow
from fenqi.wire import Document, document, documents, present
from tests.simulated import simulated_context

DAY = date(2026, 2, 19)
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def dispatch(context: Context, now: datetime, **options: Any) -> Document:
    """A dispatch's answer as the CLI's --json shows it."""
    return document(sms.dispatch(context, now, **options))


def outbox(context: Context, status: str | None = None, limit: int = 200) -> list[Document]:
    return documents(sms.outbox(context, status, limit))


@pytest.fixture(autouse=True)
def simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock on a day after every dispatch of these tests, whatever its time of day."""
    monkeypatch.setenv("FENQI_TODAY", "2026-12-02")


@pytest.fixture
def context(engine: Engine) -> Context:
    """Two borrowers: the first has four messages queued (one from the day before), the second
    one."""
    with Session(engine) as session, session.begin():
        for borrower, phone in ((1, "13800000001"), (2, "13800000002")):
            session.add(BorrowerRow(id=borrower, name="张三", phone=phone, credit_limit=0,
                                    created_at=CREATED))  # fmt: skip
        queue(session, 1, 3, DAY, "overdue")
        queue(session, 1, 1, DAY, "due")
        queue(session, 1, 5, date(2026, 2, 18), "reminder")
        queue(session, 1, 4, DAY, "reminder")
        queue(session, 2, 2, DAY, "due")
    return simulated_context(engine, "test", sms=SimulatedSms())


def queue(session: Session, borrower: int, loan: int, day: date, stage: str) -> None:
    session.add(SmsOutboxRow(loan_id=loan, day=day, stage=stage, borrower_id=borrower,
                             phone=f"1380000000{borrower}", text=f"loan {loan} {stage} {day}",
                             status="pending", sent_at=None))  # fmt: skip


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """China's wall clock, as the CLI passes it: naive."""
    return datetime(day.year, day.month, day.day, hour, minute, second)


def counts(report: dict[str, object]) -> tuple[object, ...]:
    return tuple(report[key] for key in ("sent", "held_window", "held_cap", "pending"))


def borrower(session: Session, number: int) -> None:
    session.add(BorrowerRow(id=number, name="张三", phone=f"1380000{number:04d}", credit_limit=0,
                            created_at=CREATED))  # fmt: skip


def sent_log(engine: Engine) -> list[tuple[int, int, str, datetime]]:
    with Session(engine) as session:
        rows = session.scalars(select(SmsSentRow).order_by(SmsSentRow.id))
        return [(row.borrower_id, row.loan_id, row.text, row.sent_at) for row in rows]


def test_inside_the_window_under_the_daily_cap_oldest_day_first(
    context: Context, engine: Engine
) -> None:
    early = dispatch(context, at(DAY, 7, 59))
    assert counts(early) == (0, 5, 0, 5)
    assert early["now"] == "2026-02-19T07:59:00+08:00"
    assert sent_log(engine) == []

    assert counts(dispatch(context, at(DAY, 8, 0))) == (3, 0, 2, 2)
    eight = datetime(2026, 2, 19, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert sent_log(engine) == [
        (1, 5, "loan 5 reminder 2026-02-18", eight),  # the day before's first
        (1, 1, "loan 1 due 2026-02-19", eight),
        (2, 2, "loan 2 due 2026-02-19", eight),
    ]
    assert counts(dispatch(context, at(DAY, 12, 0))) == (0, 0, 2, 2)  # still two today

    assert counts(dispatch(context, at(date(2026, 2, 20), 9, 0))) == (2, 0, 0, 0)
    assert [entry[1] for entry in sent_log(engine)[3:]] == [3, 4]
    # Each dispatch that sent anything is in the audit log with who ran it (no text, no phone).
    logged = present(audit.audit_log(context, "sms"))
    assert [(entry["action"], entry["actor"], entry["after"]["sent"]) for entry in logged] == [
        ("sms.dispatch", "test", 2), ("sms.dispatch", "test", 3)]  # fmt: skip
    assert "138" not in str(logged)


def test_sign_in_codes_do_not_use_up_her_reminders(
    context: Context, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who knows her phone may ask for codes; the codes go to her, but her reminders
    still go under the cap, which counts dunning only."""
    for minute in range(5):  # a code every minute from 07:00 on her day, five in all
        moment = datetime(2026, 2, 18, 23, minute, tzinfo=UTC)  # 07:0x in Shanghai
        monkeypatch.setattr(credentials, "now", lambda moment=moment: moment)
        credentials.send_sign_in_code(context, "13800000001")
    codes = [entry for entry in sent_log(engine) if entry[1] == 0]
    assert len(codes) == 5
    assert counts(dispatch(context, at(DAY, 8, 0))) == (3, 0, 2, 2)  # as with no codes at all
    reminders = [entry for entry in sent_log(engine) if entry[0] == 1 and entry[1] != 0]
    assert [entry[1] for entry in reminders] == [5, 1]


def test_outside_the_window_nothing_is_sent(context: Context, engine: Engine) -> None:
    assert counts(dispatch(context, at(DAY, 21, 1))) == (0, 5, 0, 5)
    assert counts(dispatch(context, at(DAY, 21, 0))) == (0, 5, 0, 5)
    assert counts(dispatch(context, datetime(2026, 2, 19, 13, 30, tzinfo=UTC))) == (0, 5, 0, 5)
    assert sent_log(engine) == []


def test_a_message_dated_after_today_waits_for_its_day(context: Context) -> None:
    with Session(context.engine) as session, session.begin():
        queue(session, 2, 9, date(2026, 2, 20), "reminder")
    assert counts(dispatch(context, at(DAY, 10))) == (3, 0, 2, 3)
    assert counts(dispatch(context, at(date(2026, 2, 20), 10))) == (3, 0, 0, 0)


def test_the_outbox_shows_what_was_sent_and_when(context: Context) -> None:
    dispatch(context, at(DAY, 8, 30))
    sent = outbox(context, "sent")
    assert [(row["loan_id"], row["stage"]) for row in sent] == [(5, "reminder"), (1, "due"),
                                                                (2, "due")]  # fmt: skip
    assert {row["sent_at"] for row in sent} == {"2026-02-19T08:30:00+08:00"}
    assert sent[0]["reference"].startswith("sim-sms:")  # the gateway's own
    assert sent[0] == {"loan_id": 5, "day": "2026-02-18", "stage": "reminder", "borrower_id": 1,
                       "phone": "13800000001", "text": "loan 5 reminder 2026-02-18",
                       "status": "sent", "sent_at": "2026-02-19T08:30:00+08:00",
                       "reference": sent[0]["reference"], "reason": None}  # fmt: skip
    assert [row["loan_id"] for row in outbox(context, "pending")] == [3, 4]
    assert len(outbox(context)) == 5
    assert len(outbox(context, limit=2)) == 2
    with pytest.raises(RefusedError, match="pending, sending, sent, unknown, expired"):
        outbox(context, "failed")


def test_her_messages_are_hers_the_latest_first_whatever_became_of_their_texts(
    context: Context, engine: Engine
) -> None:
    """Her message centre lists what the batch wrote to her up to a day, sent or not (three
    sent at 08:30 with their time, two still pending past the cap), the latest day first;
    never another borrower's, never a sign-in code; another borrower may not read them."""
    dispatch(context, at(DAY, 8, 30))
    credentials.send_sign_in_code(context, "13800000001")
    hers = documents(sms.messages_to(context, 1, DAY))
    assert [(row["day"], row["loan_id"], row["stage"], row["status"]) for row in hers] == [
        ("2026-02-19", 1, "due", "sent"), ("2026-02-19", 3, "overdue", "pending"),
        ("2026-02-19", 4, "reminder", "pending"), ("2026-02-18", 5, "reminder", "sent"),
    ]  # fmt: skip
    assert hers[0]["sent_at"] == "2026-02-19T08:30:00+08:00"
    assert [row["loan_id"] for row in documents(sms.messages_to(context, 1, DAY - timedelta(1)))] \
        == [5]  # fmt: skip
    assert [row["borrower_id"] for row in documents(sms.messages_to(context, 2, DAY))] == [2]
    stranger = replace(context, principal=Principal("borrower:2", borrower_id=2))
    with pytest.raises(NotFoundError):
        sms.messages_to(stranger, 1, DAY)
    with pytest.raises(NotFoundError):
        sms.messages_to(context, 99, DAY)


def test_without_a_gateway_nothing_is_sent(context: Context) -> None:
    bare = simulated_context(context.engine, "test")
    with pytest.raises(RefusedError, match="no SMS gateway"):
        dispatch(bare, at(DAY, 10))


def test_small_chunks_send_the_same_messages(
    context: Context, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms, "CHUNK", 2)
    assert counts(dispatch(context, at(DAY, 8, 0))) == (3, 0, 2, 2)
    assert [entry[1] for entry in sent_log(engine)] == [5, 1, 2]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_dispatchers_running_at_once_keep_every_borrower_under_the_cap(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four dispatchers at once, in chunks of three, over borrowers whose five messages each lie
    in five different chunks: no borrower gets more than two, and no message goes twice."""
    borrowers, per_borrower = 12, 5
    with Session(engine) as session, session.begin():
        for borrower in range(1, borrowers + 1):
            session.add(BorrowerRow(id=borrower, name="张三", phone=f"1380000{borrower:04d}",
                                    credit_limit=0, created_at=CREATED))  # fmt: skip
            for k in range(per_borrower):  # loan ids interleave the borrowers in the outbox
                queue(session, borrower, k * 100 + borrower, DAY, "overdue")
    context = simulated_context(engine, "test", sms=SimulatedSms())
    monkeypatch.setattr(sms, "CHUNK", 3)
    with ThreadPoolExecutor(4) as dispatchers:
        reports = list(dispatchers.map(lambda _: dispatch(context, at(DAY, 9)), range(4)))
    log = sent_log(engine)
    assert sum(report["sent"] for report in reports) == len(log) == 2 * borrowers
    assert Counter(entry[0] for entry in log) == dict.fromkeys(range(1, borrowers + 1), 2)
    assert len({entry[2] for entry in log}) == len(log)  # no message sent twice


def test_a_dispatch_ahead_of_the_clock_is_refused_beyond_a_minute(
    context: Context, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock_now = datetime(2026, 2, 19, 10, 0, tzinfo=sms.LOCAL)
    ahead = at(DAY, 10, 1)  # a minute ahead: clocks differ that much
    assert counts(dispatch(context, ahead, clock_now=clock_now))[0] == 3
    with pytest.raises(sms.FutureTimeError, match="2026-02-19T10:01:01 has not come yet"):
        dispatch(context, datetime(2026, 2, 19, 10, 1, 1), clock_now=clock_now)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-18")  # the clock's day, whatever its time
    with pytest.raises(sms.FutureTimeError, match=r"\(it is 2026-02-18T"):
        dispatch(context, at(DAY, 0, 0))
    assert len(sent_log(engine)) == 3  # only the first went


# -- time only moves forward, and a message whose day is gone is not sent -------------------------


def six_for_one(engine: Engine, day: date) -> Context:
    """Six messages queued on ``day`` for one borrower (six loans)."""
    with Session(engine) as session, session.begin():
        borrower(session, 7)
        for loan in range(1, 7):
            queue(session, 7, loan, day, "overdue")
    return simulated_context(engine, "test", sms=SimulatedSms())


def test_a_dispatch_before_the_latest_send_is_refused_so_a_days_cap_is_not_used_again(
    engine: Engine,
) -> None:
    context = six_for_one(engine, date(2026, 11, 30))
    assert dispatch(context, at(date(2026, 12, 1), 10))["sent"] == 2
    for earlier in (at(date(2026, 11, 30), 10), at(date(2026, 11, 29), 10),
                    at(date(2026, 12, 1), 9, 59)):  # fmt: skip
        with pytest.raises(sms.BeforeLastSentError, match=r"before 2026-12-01T10:00:00, when "):
            dispatch(context, earlier)
    assert counts(dispatch(context, at(date(2026, 12, 1), 10)))[:3] == (0, 0, 4)  # same time: fine
    assert [entry[3] for entry in sent_log(engine)] == [datetime(2026, 12, 1, 2, tzinfo=UTC)] * 2


def test_outside_a_simulation_a_dispatch_is_dated_now(engine: Engine) -> None:
    """Messages go out when the dispatcher sends them: without FENQI_TODAY, a time before the
    clock (beyond a minute of slack) is refused as much as one after it."""
    context = six_for_one(engine, date(2026, 11, 30))
    clock_now = datetime(2026, 11, 30, 10, 0, tzinfo=sms.LOCAL)
    with pytest.raises(sms.PastTimeError, match="2026-11-30T09:58:59 has passed"):
        dispatch(context, at(date(2026, 11, 30), 9, 58, 59), clock_now=clock_now,
                 simulation=False)  # fmt: skip
    assert sent_log(engine) == []
    late = dispatch(context, at(date(2026, 11, 30), 9, 59), clock_now=clock_now, simulation=False)
    assert late["sent"] == 2


def test_a_message_whose_day_is_gone_expires_unsent(context: Context, engine: Engine) -> None:
    """The fixture's messages are of 2026-02-18 and 02-19: on the 20th, the 18th's is more than
    a day gone and expires, even outside the window; the 19th's still go (the window or the cap
    held them over), and on the 21st the one the cap held expires."""
    early = dispatch(context, at(date(2026, 2, 20), 7))
    assert (early["sent"], early["expired"], early["held_window"]) == (0, 1, 4)
    morning = dispatch(context, at(date(2026, 2, 20), 8, 30))
    assert (morning["sent"], morning["expired"], morning["held_cap"]) == (3, 0, 1)
    later = dispatch(context, at(date(2026, 2, 21), 9))
    assert (later["sent"], later["expired"], later["pending"]) == (0, 1, 0)
    assert [entry[1] for entry in sent_log(engine)] == [1, 2, 3]
    expired = outbox(context, "expired")
    assert [(row["loan_id"], row["day"], row["sent_at"]) for row in expired] == [
        (5, "2026-02-18", None), (4, "2026-02-19", None)
    ]  # fmt: skip


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_dispatchers_at_once_at_different_times_never_send_out_of_order(engine: Engine) -> None:
    """Eight dispatchers at once, dated at eight times over two days: each sends in its turn,
    none sends at a time before one already sent, and each day's cap holds."""
    day = date(2026, 11, 30)
    with Session(engine) as session, session.begin():
        borrower(session, 7)
        for loan in range(1, 13):
            queue(session, 7, loan, day, "overdue")
    context = simulated_context(engine, "test", sms=SimulatedSms())
    times = [at(day + timedelta(days=k // 4), 9 + k % 4) for k in range(8)]

    def send(moment: datetime) -> int:
        try:
            return int(dispatch(context, moment)["sent"])
        except sms.BeforeLastSentError:
            return 0

    with ThreadPoolExecutor(8) as dispatchers:
        sent = sum(dispatchers.map(send, reversed(times)))
    log = sent_log(engine)
    assert sent == len(log) <= 4
    stamps = [entry[3] for entry in log]
    assert stamps == sorted(stamps)  # in the order they were sent, time never went back
    assert max(Counter(stamp.astimezone(sms.LOCAL).date() for stamp in stamps).values()) <= 2


class Stops:
    """An SMS gateway in a process killed while it hands messages over: the first message
    stops it (KeyboardInterrupt, as a signal would)."""

    def send(self, phone: str, text: str) -> str:
        raise KeyboardInterrupt


class Refuses:
    def send(self, phone: str, text: str) -> str:
        raise SmsRefusedError("blacklisted number")


def test_a_dispatcher_killed_while_handing_over_never_texts_anyone_twice(
    context: Context, engine: Engine
) -> None:
    """The claim is committed before the gateway is called: the messages a killed dispatcher
    claimed count against the cap, stay sending while it might still record them, and are then
    marked unknown, never sent again."""
    with pytest.raises(KeyboardInterrupt):
        dispatch(replace(context, sms=Stops()), at(DAY, 8, 0))
    assert [row["status"] for row in outbox(context, "sending")] == ["sending"] * 3
    assert len(sent_log(engine)) == 3  # the contact log holds what may have gone
    soon = dispatch(context, at(DAY, 8, 5))
    assert (soon["sent"], soon["unknown"], soon["held_cap"]) == (0, 0, 2)
    later = dispatch(context, at(DAY, 8, 11))
    assert (later["sent"], later["unknown"], later["held_cap"]) == (0, 3, 2)
    unknown = outbox(context, "unknown")
    assert [row["reason"] for row in unknown] == [sms.NO_OUTCOME] * 3
    assert len(sent_log(engine)) == 3


def test_a_message_the_gateway_refuses_goes_back_to_pending_and_out_of_the_contact_log(
    context: Context, engine: Engine
) -> None:
    refused = dispatch(replace(context, sms=Refuses()), at(DAY, 8, 0))
    assert (refused["sent"], refused["refused"], refused["pending"]) == (0, 3, 5)
    assert sent_log(engine) == []
    assert {row["reason"] for row in outbox(context, "pending")} == {None, "blacklisted number"}
    assert counts(dispatch(context, at(DAY, 8, 1))) == (3, 0, 2, 2)  # the cap was not used
