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

The gateway is called outside any transaction, in phases as every call out of fenqi is: a chunk
of messages is claimed (``sending``, counted against each borrower's cap from then) and
committed; each is handed to the gateway with no transaction open; what came of it is recorded
in a last transaction: sent (with the gateway's reference, and in the contact log), refused
(pending again, with the gateway's reason, for a later dispatch while it is fresh), or unknown
(no answer: it may have gone, so it is logged as sent and never sent again). A dispatcher that
stopped between claiming and recording leaves messages sending; the next dispatch marks those
claimed more than ``STALE_AFTER`` before its time unknown: a borrower is never texted twice.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import partial
from typing import NamedTuple
from zoneinfo import ZoneInfo

from fenqi import clock
from fenqi.loans.ports import QueuedSms, SentSms, UnitOfWork
from fenqi.ports import SmsGateway, SmsRefusedError
from fenqi.services.context import Context, caller, permitted, transact
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import Permission, sees
from fenqi.services.views import Dispatched

log = logging.getLogger("fenqi")
LOCAL = ZoneInfo("Asia/Shanghai")
# docs/domain.md#quiet-hours-and-daily-cap: 08:00-21:00 local, the stricter reading: 21:00 is out.
WINDOW_OPENS, WINDOW_CLOSES = time(8), time(21)
DAILY_CAP = 2  # SMS a borrower may receive on one local date
SLACK = timedelta(minutes=1)  # how far a dispatch time may be off the clock (clock skew)
FRESH_DAYS = 1  # a message goes on its day or the next (the window or the cap held it over)
CHUNK = 500  # messages claimed per transaction, then handed over one by one
# A message claimed this long before a dispatch and still sending was left by a dispatcher that
# stopped: far longer than a gateway takes to answer one message.
STALE_AFTER = timedelta(minutes=10)
MESSAGES_SHOWN = 100  # a borrower's latest messages, in her message centre
NO_OUTCOME = "no outcome was recorded: the dispatcher stopped while handing it over"


class SmsStatus(StrEnum):
    PENDING = "pending"  # queued by the batch, not sent yet
    SENDING = "sending"  # being handed to the gateway
    SENT = "sent"
    UNKNOWN = "unknown"  # handed over with no answer: it may have gone, and is never sent again
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
    who = permitted(context, Permission.ADMINISTER)
    gateway = context.sms
    if gateway is None:
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
    expired, unknown = transact(context, partial(_expire, local=local))
    handed = _send_due(context, gateway, local) if in_window(local) else _Handed()
    due, pending = transact(context, lambda unit: unit.outbox.pending(local.date()))
    held_window = 0 if in_window(local) else due
    done = Dispatched(local, handed.sent, expired, held_window, handed.held, pending,
                      handed.refused, unknown + handed.unknown)  # fmt: skip
    if done.sent or done.expired or done.refused or done.unknown:  # a dispatch that did anything
        after = {"now": local.isoformat(), "sent": done.sent, "expired": done.expired,
                 "refused": done.refused, "unknown": done.unknown,
                 "pending": done.pending}  # fmt: skip
        transact(context, lambda unit: unit.audit(who.name, "sms.dispatch", "sms", "",
                                                  after=after))  # fmt: skip
    return done


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


def _expire(unit: UnitOfWork, local: datetime) -> tuple[int, int]:
    """Marks expired the pending messages whose day is more than ``FRESH_DAYS`` before
    ``local``'s date (what they say, the amount due and the days overdue, is no longer true),
    and unknown those a dispatcher that stopped left sending; how many of each."""
    _take_turn(unit, local)
    left = unit.outbox.stale(local.astimezone(UTC) - STALE_AFTER)
    for message in left:
        unit.outbox.settle(message, SmsStatus.UNKNOWN, None, NO_OUTCOME)
    return unit.outbox.expire(local.date() - timedelta(days=FRESH_DAYS)), len(left)


def outbox(context: Context, status: str | None = None, limit: int = 200) -> list[QueuedSms]:
    """The queued messages (only those of ``status``: pending, sending, sent, unknown or
    expired) in the order they are sent, their times China's."""
    permitted(context, Permission.READ)
    if limit < 1:
        raise RefusedError(f"limit {limit} is not a number of messages; give 1 or more")
    chosen = None if status is None else _status(status).value
    messages = transact(context, lambda unit: unit.outbox.messages(chosen, limit))
    return [message._replace(sent_at=_local(message.sent_at)) for message in messages]


def messages_to(context: Context, borrower_id: int, today: date,
                limit: int = MESSAGES_SHOWN) -> list[QueuedSms]:  # fmt: skip
    """What fenqi wrote to a borrower (reminders, notices of a bill due or overdue), up to
    ``today``, the latest first, each with what became of its text (sent, and when; expired
    unsent; still to go): her message centre, and the console's list of what she was sent.
    Sign-in codes are not among them. To herself, or to staff."""

    def hers(unit: UnitOfWork) -> list[QueuedSms]:
        sees(caller(context, unit), borrower_id, f"borrower {borrower_id}")
        if unit.borrowers.get(borrower_id) is None:
            raise NotFoundError(f"no borrower {borrower_id}")
        return unit.outbox.of_borrower(borrower_id, today, limit)

    messages = transact(context, hers)
    return [message._replace(sent_at=_local(message.sent_at)) for message in messages]


def _local(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(LOCAL)


def _status(text: str) -> SmsStatus:
    try:
        return SmsStatus(text)
    except ValueError:
        accepted = ", ".join(SmsStatus)
        raise RefusedError(f'"{text}" is not a message status; accepted: {accepted}') from None


class _Handed(NamedTuple):
    """What handing messages over came to."""

    sent: int = 0
    refused: int = 0  # by the gateway: pending again
    unknown: int = 0  # no answer
    held: int = 0  # over the daily cap, not handed over


class _Outcome(NamedTuple):
    message: QueuedSms
    status: SmsStatus  # sent, pending (refused) or unknown
    reference: str | None
    reason: str | None


def _send_due(context: Context, gateway: SmsGateway, local: datetime) -> _Handed:
    """Sends what is due, a chunk at a time: claimed in one transaction, handed over with none
    open, the outcomes recorded in another."""
    counted: Counter[SmsStatus] = Counter()
    held = 0
    after: tuple[date, int, str] | None = None
    while True:
        chunk = transact(context, partial(_claim_chunk, local=local, after=after))
        outcomes = [_hand_over(gateway, message) for message in chunk.claimed]
        transact(context, partial(_record, outcomes=outcomes))
        counted.update(outcome.status for outcome in outcomes)
        held += chunk.held
        if chunk.last is None:
            return _Handed(counted[SmsStatus.SENT], counted[SmsStatus.PENDING],
                           counted[SmsStatus.UNKNOWN], held)  # fmt: skip
        after = chunk.last


class _Chunk(NamedTuple):
    claimed: list[QueuedSms]
    held: int  # over the daily cap
    last: tuple[date, int, str] | None  # where the next chunk starts, or None: nothing is left


def _claim_chunk(unit: UnitOfWork, local: datetime,
                 after: tuple[date, int, str] | None) -> _Chunk:  # fmt: skip
    """Claims the next ``CHUNK`` pending messages after ``after`` that their borrowers' caps
    allow, in this dispatcher's turn: a dispatcher running at the same time waits, and then
    counts these against the caps."""
    _take_turn(unit, local)
    messages = unit.outbox.due(local.date(), after, CHUNK)
    start = datetime.combine(local.date(), time(), LOCAL)
    counts = unit.outbox.sent_between({message.borrower_id for message in messages}, start,
                                      start + timedelta(days=1))  # fmt: skip
    claimed, at = [], local.astimezone(UTC)
    for message in messages:
        if counts.get(message.borrower_id, 0) >= DAILY_CAP:
            continue
        unit.outbox.claim(message, at)
        claimed.append(message)
        counts[message.borrower_id] = counts.get(message.borrower_id, 0) + 1
    last = messages[-1] if len(messages) == CHUNK else None
    return _Chunk(claimed, len(messages) - len(claimed),
                  None if last is None else (last.day, last.loan_id, last.stage))  # fmt: skip


def _hand_over(gateway: SmsGateway, message: QueuedSms) -> _Outcome:
    """One message handed to the gateway, no transaction open. A failure that is not the
    gateway's refusal leaves it unknown whether the message went."""
    try:
        return _Outcome(message, SmsStatus.SENT, gateway.send(message.phone, message.text), None)
    except SmsRefusedError as refused:
        return _Outcome(message, SmsStatus.PENDING, None, str(refused) or "refused")
    except Exception as failure:  # any other failure: the outcome is not known
        log.warning(json.dumps({"event": "sms-no-answer", "loan_id": message.loan_id,
                                "error": type(failure).__name__}))  # fmt: skip
        return _Outcome(message, SmsStatus.UNKNOWN, None, type(failure).__name__)


def _record(unit: UnitOfWork, outcomes: list[_Outcome]) -> None:
    for outcome in outcomes:
        unit.outbox.settle(outcome.message, outcome.status, outcome.reference, outcome.reason)


def delivered(context: Context, phone: str | None = None, limit: int = 20) -> list[SentSms]:
    """What the SMS gateway simulator delivered, newest first (sign-in codes included), their
    times China's: where a tester or a demo reads the code a borrower would receive. Admins
    only."""
    permitted(context, Permission.ADMINISTER)
    texts = transact(context, lambda unit: unit.outbox.delivered(phone, limit))
    return [text._replace(sent_at=text.sent_at.astimezone(LOCAL)) for text in texts]
