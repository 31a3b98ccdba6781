"""Sending the messages the nightly batch queued (docs/design.md#the-business-day-batch: SMS go
to an outbox in the batch's transaction, and a dispatcher sends them inside the contact window
and under the daily cap; docs/domain.md#quiet-hours-and-daily-cap).

Times are China's: a naive ``now`` is the wall clock in Asia/Shanghai, and what is stored is the
UTC instant. A borrower's daily cap counts the dunning messages ``sms_sent`` holds for her on
that local date, the record this dispatcher keeps of every message it hands to the gateway; the
sign-in codes texted to her (which name no loan) are not dunning and do not count, or anyone
who knows her phone could use up her reminders by asking for codes.

A dispatch is dated when it sends, and its time only moves forward: never after the clock, never
before the latest message sent (or a day's cap could be used again by going back to it), and,
unless the clock is a simulation's (``FENQI_TODAY``), never before the clock either. A message
says what was true on its day (the amount due, the days overdue): one whose day is more than
``FRESH_DAYS`` gone — a batch that caught up on past days queued it, or no dispatch ran — is
marked expired, never sent.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import partial
from typing import NamedTuple
from zoneinfo import ZoneInfo

from fenqi import clock
from fenqi.loans.ports import QueuedSms, SentSms, UnitOfWork
from fenqi.services.context import Context, permitted, transact
from fenqi.services.errors import RefusedError
from fenqi.services.policy import Permission
from fenqi.services.views import Dispatched

LOCAL = ZoneInfo("Asia/Shanghai")
# docs/domain.md#quiet-hours-and-daily-cap: 08:00-21:00 local, the stricter reading: 21:00 is out.
WINDOW_OPENS, WINDOW_CLOSES = time(8), time(21)
DAILY_CAP = 2  # SMS a borrower may receive on one local date
SLACK = timedelta(minutes=1)  # how far a dispatch time may be off the clock (clock skew)
FRESH_DAYS = 1  # a message goes on its day or the next (the window or the cap held it over)
CHUNK = 500  # messages sent per transaction


class SmsStatus(StrEnum):
    PENDING = "pending"  # queued by the batch, not sent yet
    SENT = "sent"
    EXPIRED = "expired"  # its day more than FRESH_DAYS gone before it could be sent: never sent


def local_time(now: datetime) -> datetime:
    """``now`` on China's wall clock: a naive time is taken to be one already."""
    return now.replace(tzinfo=LOCAL) if now.utcoffset() is None else now.astimezone(LOCAL)


def in_window(local: datetime) -> bool:
    return WINDOW_OPENS <= local.time() < WINDOW_CLOSES


class DispatchTimeError(RefusedError):
    """A time a dispatch may not be dated: its messages would be recorded as sent when they
    were not."""


class FutureTimeError(DispatchTimeError):
    """A dispatch said to happen at a time that has not come: its messages would be recorded as
    sent, and counted against the borrower's cap, on a day still ahead."""


class PastTimeError(DispatchTimeError):
    """A dispatch dated before the clock outside a simulation: its messages go out now."""


class BeforeLastSentError(DispatchTimeError):
    """A dispatch dated before the latest message sent: time would run backwards in the outbox,
    and a day whose cap was used up could be used again."""


def _stamp(moment: datetime) -> str:
    return f"{local_time(moment):%Y-%m-%dT%H:%M:%S}"


def dispatch(context: Context, now: datetime, *, clock_now: datetime | None = None,
             simulation: bool | None = None) -> Dispatched:  # fmt: skip
    """Expires the pending messages whose day is more than ``FRESH_DAYS`` before ``now``'s
    local date, then sends those of that date and before, oldest day first, if ``now`` is
    inside the contact window: each borrower gets at most ``DAILY_CAP`` on that date, and the
    rest stay pending for the next window. Outside the window nothing is sent. Refused: a
    ``now`` later than the clock's (``clock_now``, default ``fenqi.clock.now()``) beyond
    ``SLACK``; earlier than it beyond ``SLACK`` unless this is a ``simulation`` (default:
    ``FENQI_TODAY`` is set); earlier than the latest message sent. Admins only."""
    permitted(context, Permission.ADMINISTER)
    if context.sms is None:
        raise RefusedError("no SMS gateway is configured; nothing can be sent")
    local = local_time(now)
    present = local_time(clock.now() if clock_now is None else clock_now)
    if local > present + SLACK:
        raise FutureTimeError(
            f"{_stamp(local)} has not come yet (it is {_stamp(present)} in Beijing): messages "
            "are sent when they go out, never ahead; give a time up to now"
        )
    if local < present - SLACK and not (clock.simulated() if simulation is None else simulation):
        raise PastTimeError(
            f"{_stamp(local)} has passed (it is {_stamp(present)} in Beijing): messages go out "
            "now and are recorded as sent now; leave --now out (an earlier time is for "
            "simulations, with FENQI_TODAY set)"
        )
    expired = transact(context, partial(_expire, local=local))
    sent, held_cap = _send_due(context, local) if in_window(local) else (0, 0)
    due, pending = transact(context, lambda unit: unit.outbox.pending(local.date()))
    held_window = 0 if in_window(local) else due
    return Dispatched(local, sent, expired, held_window, held_cap, pending)


def _take_turn(unit: UnitOfWork, local: datetime) -> None:
    """Dispatchers take turns, a transaction at a time (on PostgreSQL a lock held to its
    commit; SQLite writes one at a time), and each turn refuses a time before the latest
    message sent: two dispatchers at once cannot send at times out of order."""
    latest = unit.outbox.take_turn()
    if latest is not None and local < latest:
        raise BeforeLastSentError(
            f"{_stamp(local)} is before {_stamp(latest)}, when messages were last sent: time "
            "never runs backwards in the outbox (a day's cap would be used again); give a "
            f"time from {_stamp(latest)} on"
        )


def _expire(unit: UnitOfWork, local: datetime) -> int:
    """Marks expired the pending messages whose day is more than ``FRESH_DAYS`` before
    ``local``'s date: what they say (the amount due, the days overdue) is no longer true."""
    _take_turn(unit, local)
    return unit.outbox.expire(local.date() - timedelta(days=FRESH_DAYS))


def outbox(context: Context, status: str | None = None, limit: int = 200) -> list[QueuedSms]:
    """The queued messages (``status`` pending, sent or expired, else all) in the order they
    are sent, their times China's."""
    permitted(context, Permission.READ)
    if limit < 1:
        raise RefusedError(f"limit {limit} is not a number of messages; give 1 or more")
    chosen = None if status is None else _status(status).value
    messages = transact(context, lambda unit: unit.outbox.messages(chosen, limit))
    return [message._replace(sent_at=_local(message.sent_at)) for message in messages]


def _local(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(LOCAL)


def _status(text: str) -> SmsStatus:
    try:
        return SmsStatus(text)
    except ValueError:
        accepted = ", ".join(SmsStatus)
        raise RefusedError(f'"{text}" is not a message status; accepted: {accepted}') from None


def _send_due(context: Context, local: datetime) -> tuple[int, int]:
    """Sends what is due, a chunk per transaction; returns how many were sent and how many
    held over the daily cap."""
    sent = held = 0
    after: tuple[date, int, str] | None = None
    while True:
        chunk = transact(context, partial(_send_chunk, local=local, after=after))
        sent, held = sent + chunk.sent, held + chunk.held
        if chunk.last is None:
            return sent, held
        after = chunk.last


class _Chunk(NamedTuple):
    sent: int
    held: int  # over the daily cap
    last: tuple[date, int, str] | None  # where the next chunk starts, or None: nothing is left


def _send_chunk(unit: UnitOfWork, local: datetime, after: tuple[date, int, str] | None) -> _Chunk:
    """Sends the next ``CHUNK`` pending messages after ``after``, in one transaction with the
    record of each, in this dispatcher's turn: a dispatcher running at the same time waits, and
    then counts what this one sent. (The gateway's reference is not kept: no table has a column
    for it yet.)"""
    _take_turn(unit, local)
    messages = unit.outbox.due(local.date(), after, CHUNK)
    start = datetime.combine(local.date(), time(), LOCAL)
    counts = unit.outbox.sent_between({message.borrower_id for message in messages}, start,
                                      start + timedelta(days=1))  # fmt: skip
    sender, sent_at, sent = unit.sms(), local.astimezone(UTC), 0
    for message in messages:
        if counts.get(message.borrower_id, 0) >= DAILY_CAP:
            continue
        sender.send(message.phone, message.text)
        unit.outbox.mark_sent(message, sent_at)
        counts[message.borrower_id] = counts.get(message.borrower_id, 0) + 1
        sent += 1
    last = messages[-1] if len(messages) == CHUNK else None
    return _Chunk(sent, len(messages) - sent,
                  None if last is None else (last.day, last.loan_id, last.stage))  # fmt: skip


def delivered(context: Context, phone: str | None = None, limit: int = 20) -> list[SentSms]:
    """What the SMS gateway simulator delivered, newest first (sign-in codes included), their
    times China's: where a tester or a demo reads the code a borrower would receive. Admins
    only."""
    permitted(context, Permission.ADMINISTER)
    texts = transact(context, lambda unit: unit.outbox.delivered(phone, limit))
    return [text._replace(sent_at=text.sent_at.astimezone(LOCAL)) for text in texts]
