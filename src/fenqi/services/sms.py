"""Sending the messages the nightly batch queued (DESIGN.md "Close of business": SMS go to an
outbox in the batch's transaction, and a dispatcher sends them inside the contact window and
under the frequency caps; DOMAIN.md §7).

Times are China's: a naive ``now`` is the wall clock in Asia/Shanghai, and what is stored is the
UTC instant. A borrower's daily cap counts the dunning messages ``sms_sent`` holds for her on
that local date, the record this dispatcher keeps of every message it hands to the gateway; the
sign-in codes texted to her (which name no loan) are not dunning and do not count, or anyone
who knows her phone could use up her reminders by asking for codes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import partial
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from fenqi import clock
from fenqi.services.context import Context, Document, run
from fenqi.services.errors import RefusedError
from fenqi.services.ports import SmsGateway
from fenqi.store.schema import NO_LOAN, SmsOutboxRow, SmsSentRow

LOCAL = ZoneInfo("Asia/Shanghai")
# DOMAIN.md §7: 08:00-21:00 local; sources differ, so the stricter reading: 21:00 is outside.
WINDOW_OPENS, WINDOW_CLOSES = time(8), time(21)
DAILY_CAP = 2  # SMS a borrower may receive on one local date
SLACK = timedelta(minutes=1)  # how far a dispatch time may be ahead of the clock (clock skew)
CHUNK = 500  # messages sent per transaction
_ORDER = (SmsOutboxRow.day, SmsOutboxRow.loan_id, SmsOutboxRow.stage)  # oldest day first


class SmsStatus(StrEnum):
    PENDING = "pending"  # queued by the batch, not sent yet
    SENT = "sent"


def local_time(now: datetime) -> datetime:
    """``now`` on China's wall clock: a naive time is taken to be one already."""
    return now.replace(tzinfo=LOCAL) if now.utcoffset() is None else now.astimezone(LOCAL)


def in_window(local: datetime) -> bool:
    return WINDOW_OPENS <= local.time() < WINDOW_CLOSES


class FutureTimeError(RefusedError):
    """A dispatch said to happen at a time that has not come: its messages would be recorded as
    sent, and counted against the borrower's cap, on a day still ahead."""


def dispatch(context: Context, now: datetime, *, clock_now: datetime | None = None) -> Document:
    """Sends the pending messages of ``now``'s local date and before, oldest day first, if
    ``now`` is inside the contact window: each borrower gets at most ``DAILY_CAP`` on that date,
    and the rest stay pending for the next window. Outside the window nothing is sent. A ``now``
    later than the clock's (``clock_now``, default ``fenqi.clock.now()``), beyond ``SLACK``, is
    refused."""
    if context.sms is None:
        raise RefusedError("no SMS gateway is configured; nothing can be sent")
    local = local_time(now)
    present = local_time(clock.now() if clock_now is None else clock_now)
    if local > present + SLACK:
        raise FutureTimeError(
            f"{local:%Y-%m-%dT%H:%M:%S} has not come yet (it is {present:%Y-%m-%dT%H:%M:%S} in "
            "Beijing): messages are sent when they go out, never ahead; give a time up to now"
        )
    sent, held_cap = _send_due(context, context.sms, local) if in_window(local) else (0, 0)
    due, pending = run(context, partial(_pending, today=local.date()))
    return {
        "now": local.isoformat(),
        "sent": sent,
        "held_window": 0 if in_window(local) else due,
        "held_cap": held_cap,
        "pending": pending,
    }


def outbox(context: Context, status: str | None = None, limit: int = 200) -> list[Document]:
    """The queued messages (``status`` pending or sent, else all) in the order they are sent."""
    if limit < 1:
        raise RefusedError(f"limit {limit} is not a number of messages; give 1 or more")
    query = select(SmsOutboxRow)
    if status is not None:
        query = query.where(SmsOutboxRow.status == _status(status))
    rows = run(context, lambda session: list(session.scalars(query.order_by(*_ORDER).limit(limit))))
    return [_message(row) for row in rows]


def _status(text: str) -> SmsStatus:
    try:
        return SmsStatus(text)
    except ValueError:
        accepted = ", ".join(SmsStatus)
        raise RefusedError(f'"{text}" is not a message status; accepted: {accepted}') from None


def _send_due(
    context: Context, gateway: Callable[[Session], SmsGateway], local: datetime
) -> tuple[int, int]:
    """Sends what is due, a chunk per transaction; returns how many were sent and how many
    held over the daily cap."""
    sent = held = 0
    after: tuple[date, int, str] | None = None
    while True:
        chunk = run(context, partial(_send_chunk, gateway=gateway, local=local, after=after))
        sent, held = sent + chunk.sent, held + chunk.held
        if chunk.last is None:
            return sent, held
        after = chunk.last


class _Chunk(NamedTuple):
    sent: int
    held: int  # over the daily cap
    last: tuple[date, int, str] | None  # where the next chunk starts, or None: nothing is left


def _send_chunk(
    session: Session,
    gateway: Callable[[Session], SmsGateway],
    local: datetime,
    after: tuple[date, int, str] | None,
) -> _Chunk:
    """Sends the next ``CHUNK`` pending messages after ``after``, in one transaction with the
    record of each. The rows are locked before the borrowers' counts are read, so a dispatcher
    running at the same time waits and then counts what this one sent."""
    query = select(SmsOutboxRow).where(
        SmsOutboxRow.status == SmsStatus.PENDING, SmsOutboxRow.day <= local.date()
    )
    if after is not None:
        query = query.where(tuple_(*_ORDER) > tuple_(*after))
    rows = session.scalars(query.order_by(*_ORDER).limit(CHUNK).with_for_update()).all()
    counts = _sent_on(session, {row.borrower_id for row in rows}, local.date())
    sender, sent_at, sent = gateway(session), local.astimezone(UTC), 0
    for row in rows:
        if counts.get(row.borrower_id, 0) >= DAILY_CAP:
            continue
        _deliver(session, sender, row, sent_at)
        counts[row.borrower_id] = counts.get(row.borrower_id, 0) + 1
        sent += 1
    last = (rows[-1].day, rows[-1].loan_id, rows[-1].stage) if len(rows) == CHUNK else None
    return _Chunk(sent, len(rows) - sent, last)


def _sent_on(session: Session, borrowers: set[int], day: date) -> dict[int, int]:
    """How many dunning messages each borrower was sent on the local date ``day``."""
    if not borrowers:
        return {}
    start = datetime.combine(day, time(), LOCAL)
    query = (
        select(SmsSentRow.borrower_id, func.count())
        .where(
            SmsSentRow.borrower_id.in_(borrowers),
            SmsSentRow.loan_id != NO_LOAN,  # a sign-in code is no reminder
            SmsSentRow.sent_at >= start,
            SmsSentRow.sent_at < start + timedelta(days=1),
        )
        .group_by(SmsSentRow.borrower_id)
    )
    return dict(session.execute(query).all())


def _deliver(session: Session, gateway: SmsGateway, row: SmsOutboxRow, sent_at: datetime) -> None:
    """Hands one message to the gateway, records it and marks it sent. (The gateway's reference
    is not kept: no table has a column for it yet.)"""
    gateway.send(row.phone, row.text)
    row.status, row.sent_at = SmsStatus.SENT, sent_at
    session.add(SmsSentRow(loan_id=row.loan_id, borrower_id=row.borrower_id, phone=row.phone,
                           text=row.text, sent_at=sent_at))  # fmt: skip


def _pending(session: Session, today: date) -> tuple[int, int]:
    """Pending messages: those of ``today`` and before (due to go), and all of them."""
    pending = SmsOutboxRow.status == SmsStatus.PENDING
    count = select(func.count()).select_from(SmsOutboxRow)
    due = session.scalar(count.where(pending, SmsOutboxRow.day <= today)) or 0
    return due, session.scalar(count.where(pending)) or 0


def _message(row: SmsOutboxRow) -> Document:
    return {
        "loan_id": row.loan_id,
        "day": row.day.isoformat(),
        "stage": row.stage,
        "borrower_id": row.borrower_id,
        "phone": row.phone,
        "text": row.text,
        "status": row.status,
        "sent_at": None if row.sent_at is None else row.sent_at.astimezone(LOCAL).isoformat(),
    }


def delivered(context: Context, phone: str | None = None, limit: int = 20) -> list[Document]:
    """What the SMS gateway simulator delivered, newest first (sign-in codes included): where a
    tester or a demo reads the code a borrower would receive."""

    def read(session: Session) -> list[Document]:
        query = select(SmsSentRow).order_by(SmsSentRow.id.desc()).limit(limit)
        if phone is not None:
            query = query.where(SmsSentRow.phone == phone)
        return [
            {"phone": row.phone, "borrower_id": row.borrower_id, "text": row.text,
             "sent_at": row.sent_at.astimezone(LOCAL).isoformat()}
            for row in session.scalars(query)
        ]  # fmt: skip

    return run(context, read)
