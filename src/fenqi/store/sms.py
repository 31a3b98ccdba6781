"""The SMS outbox and the contact log (``fenqi.loans.ports.Outbox``) in a session's
transaction: the messages the batch queued in ``sms_outbox``, and every text handed to a gateway
in ``sms_sent``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, text, tuple_, update
from sqlalchemy.orm import Session

from fenqi.loans.ports import QueuedSms, SentSms
from fenqi.store.schema import NO_LOAN, SmsOutboxRow, SmsSentRow

# An outbox message's status: sending while a dispatcher hands it to the gateway, outside any
# transaction; unknown when no outcome came (it may have gone, so it is never sent again).
PENDING, SENDING, SENT, UNKNOWN, EXPIRED = "pending", "sending", "sent", "unknown", "expired"
_ORDER = (SmsOutboxRow.day, SmsOutboxRow.loan_id, SmsOutboxRow.stage)  # oldest day first


def _queued(row: SmsOutboxRow) -> QueuedSms:
    return QueuedSms(row.loan_id, row.day, row.stage, row.borrower_id, row.phone, row.text,
                     row.status, row.sent_at, row.reference, row.reason)  # fmt: skip


def _key(message: QueuedSms) -> tuple[int, date, str]:
    return message.loan_id, message.day, message.stage


@dataclass(frozen=True)
class DatabaseOutbox:
    """The outbox and the contact log in a session's transaction."""

    session: Session

    def take_turn(self) -> datetime | None:
        """On PostgreSQL a lock held to the commit; SQLite writes one at a time."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended('fenqi sms', 0))")
            )
        return self.session.scalar(select(func.max(SmsOutboxRow.sent_at)))

    def expire(self, before: date) -> int:
        expired = self.session.execute(
            update(SmsOutboxRow)
            .where(SmsOutboxRow.status == PENDING, SmsOutboxRow.day < before)
            .values(status=EXPIRED)
            .execution_options(synchronize_session=False)
        )
        return int(cast(CursorResult[Any], expired).rowcount)

    def due(self, through: date, after: tuple[date, int, str] | None,
            limit: int) -> list[QueuedSms]:  # fmt: skip
        query = select(SmsOutboxRow).where(
            SmsOutboxRow.status == PENDING, SmsOutboxRow.day <= through
        )
        if after is not None:
            query = query.where(tuple_(*_ORDER) > tuple_(*after))
        rows = self.session.scalars(query.order_by(*_ORDER).limit(limit).with_for_update())
        return [_queued(row) for row in rows]

    def sent_between(self, borrowers: set[int], start: datetime, end: datetime) -> dict[int, int]:
        if not borrowers:
            return {}
        query = (
            select(SmsSentRow.borrower_id, func.count())
            .where(
                SmsSentRow.borrower_id.in_(borrowers),
                SmsSentRow.loan_id != NO_LOAN,  # a sign-in code is no reminder
                SmsSentRow.sent_at >= start,
                SmsSentRow.sent_at < end,
            )
            .group_by(SmsSentRow.borrower_id)
        )
        return {borrower: int(count) for borrower, count in self.session.execute(query)}

    def claim(self, message: QueuedSms, at: datetime) -> None:
        row = self._row(message)
        assert row.status == PENDING, "a message due was read in this transaction, its row locked"
        row.status, row.sent_at, row.reason = SENDING, at, None
        self.session.add(SmsSentRow(loan_id=row.loan_id, borrower_id=row.borrower_id,
                                    phone=row.phone, text=row.text, sent_at=at))  # fmt: skip

    def settle(self, message: QueuedSms, status: str, reference: str | None,
               reason: str | None) -> bool:  # fmt: skip
        row = self.session.get(SmsOutboxRow, _key(message), with_for_update=True,
                               populate_existing=True)  # fmt: skip
        if row is None or row.status != SENDING:
            return False
        if status == PENDING:  # refused: nothing went, and the claim's contact is taken back
            self.session.execute(delete(SmsSentRow).where(
                SmsSentRow.loan_id == row.loan_id, SmsSentRow.borrower_id == row.borrower_id,
                SmsSentRow.text == row.text, SmsSentRow.sent_at == row.sent_at,
            ))  # fmt: skip
            row.sent_at = None
        row.status, row.reference, row.reason = status, reference, reason
        return True

    def stale(self, claimed_before: datetime) -> list[QueuedSms]:
        query = select(SmsOutboxRow).where(
            SmsOutboxRow.status == SENDING, SmsOutboxRow.sent_at < claimed_before
        )
        return [_queued(row) for row in self.session.scalars(query.order_by(*_ORDER))]

    def _row(self, message: QueuedSms) -> SmsOutboxRow:
        row = self.session.get(SmsOutboxRow, _key(message))
        assert row is not None, "an outbox message is never deleted"
        return row

    def pending(self, through: date) -> tuple[int, int]:
        pending = SmsOutboxRow.status == PENDING
        count = select(func.count()).select_from(SmsOutboxRow)
        due = self.session.scalar(count.where(pending, SmsOutboxRow.day <= through)) or 0
        return int(due), int(self.session.scalar(count.where(pending)) or 0)

    def messages(self, status: str | None, limit: int) -> list[QueuedSms]:
        query = select(SmsOutboxRow)
        if status is not None:
            query = query.where(SmsOutboxRow.status == status)
        return [_queued(row) for row in self.session.scalars(query.order_by(*_ORDER).limit(limit))]

    def of_borrower(self, borrower_id: int, through: date, limit: int) -> list[QueuedSms]:
        query = select(SmsOutboxRow).where(SmsOutboxRow.borrower_id == borrower_id,
                                           SmsOutboxRow.day <= through)  # fmt: skip
        latest = query.order_by(SmsOutboxRow.day.desc(), SmsOutboxRow.loan_id,
                                SmsOutboxRow.stage).limit(limit)  # fmt: skip
        return [_queued(row) for row in self.session.scalars(latest)]

    def delivered(self, phone: str | None, limit: int) -> list[SentSms]:
        query = select(SmsSentRow).order_by(SmsSentRow.id.desc()).limit(limit)
        if phone is not None:
            query = query.where(SmsSentRow.phone == phone)
        return [SentSms(row.loan_id, row.borrower_id, row.phone, row.text, row.sent_at)
                for row in self.session.scalars(query)]  # fmt: skip

    def log_sign_in_code(self, borrower_id: int, phone: str, text: str, sent_at: datetime) -> None:
        self.session.add(SmsSentRow(loan_id=NO_LOAN, borrower_id=borrower_id, phone=phone,
                                    text=text, sent_at=sent_at))  # fmt: skip
