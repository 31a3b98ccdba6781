"""The tables, as SQLAlchemy 2 declarative models (the migrations create them; these map them).

A model is named for one row of its table (``LoanRow``, ``PostingRow``), so it never shadows the
domain's own ``Loan`` or ``Posting``: services turn rows into domain values and back.

- Money is a ``BigInteger`` count of fen, never a float or a decimal column.
- Every servicing table has ``loan_id`` in its primary key and no foreign key into another big
  table, so on PostgreSQL they can be hash-partitioned by ``loan_id`` and on Citus distributed
  and co-located by it: a loan's events, receipts, journal entries and postings share a shard.
  Accounts and products are small reference tables.
- Constraint names come from one naming convention, so migrations can name what they alter.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    MetaData,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fenqi.loans.aggregate import MAX_ID

__all__ = ["MAX_ID"]  # ids are 32-bit integers, as the services check

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

Document = dict[str, Any]


class Timestamp(TypeDecorator[datetime]):
    """An aware datetime, read back in UTC on every database.

    PostgreSQL stores the instant; SQLite stores text without a zone, so the value is turned to
    UTC before it is written. A naive datetime is refused: its instant is unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give one with a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Reference data ---------------------------------------------------------------------------------


class AccountRow(Base):
    """The chart of accounts (科目表), seeded by the first migration."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("kind IN ('asset', 'liability', 'income', 'expense')", "kind"),
    )

    code: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    kind: Mapped[str]


class ProductRow(Base):
    """A catalog product as loaded, kept so a loan's product can be read after the file changes."""

    __tablename__ = "products"

    code: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    definition: Mapped[Document] = mapped_column(JSON)  # the product's TOML table
    loaded_at: Mapped[datetime] = mapped_column(Timestamp)


# Borrowers and how they pay ---------------------------------------------------------------------


class BorrowerRow(Base):
    __tablename__ = "borrowers"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str]
    phone: Mapped[str] = mapped_column(unique=True)
    credit_limit: Mapped[int] = mapped_column(BigInteger)  # fen
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class PaymentMethodRow(Base):
    """A bound card or wallet; the channel holds the account itself behind ``token_ref``."""

    __tablename__ = "payment_methods"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrowers.id"), index=True)
    kind: Mapped[str]  # bank_card | alipay | wechat
    masked_account: Mapped[str]
    token_ref: Mapped[str] = mapped_column(unique=True)
    is_default: Mapped[bool]
    status: Mapped[str]  # active | unbound
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class SimAccountRow(Base):
    """A balance held by the payment-channel simulator, so a debit can succeed or bounce."""

    __tablename__ = "sim_accounts"

    token_ref: Mapped[str] = mapped_column(primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger)  # fen


class SimOrderRow(Base):
    """An order the in-process gateway simulator answered, kept as a gateway keeps its own: the
    same order id sent again gets the same answer, and a query finds it. A refund is an order
    too, under its refund id, that ``refers_to`` the debit it pays back."""

    __tablename__ = "sim_orders"

    order_id: Mapped[str] = mapped_column(primary_key=True)
    token_ref: Mapped[str]
    amount: Mapped[int] = mapped_column(BigInteger)  # fen
    outcome: Mapped[str]  # succeeded | failed
    reason: Mapped[str | None]
    refers_to: Mapped[str | None]  # a refund: the debit order it pays back


# Loans: every table below is keyed by the loan -------------------------------------------------


class OrderRow(Base):
    """A merchant's order, so a checkout retried with the same order finds its loan."""

    __tablename__ = "orders"

    order_id: Mapped[str] = mapped_column(primary_key=True)
    loan_id: Mapped[int]
    borrower_id: Mapped[int]


class LoanRow(Base):
    """A loan's terms and the state its events fold to, kept current for queries and the batch."""

    __tablename__ = "loans"
    # The batch reads only the loans with work on a day, in id order for its chunks.
    __table_args__ = (Index("ix_loans_next_action_date", "next_action_date", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    borrower_id: Mapped[int] = mapped_column(index=True)
    order_id: Mapped[str]
    merchant: Mapped[str]
    item: Mapped[str | None]  # what was bought (the mall may not say)
    product_code: Mapped[str]
    terms: Mapped[Document] = mapped_column(JSON)
    policy: Mapped[Document] = mapped_column(JSON)
    status: Mapped[str]
    outstanding_principal: Mapped[int] = mapped_column(BigInteger)  # fen
    dpd: Mapped[int]
    version: Mapped[int]  # bumped by every write; a write expecting another version is refused
    booked_through: Mapped[date]
    opened: Mapped[date]
    next_action_date: Mapped[date | None]  # the batch's next day of work on it (None: never)
    closed_through: Mapped[date | None]  # the last business day the batch closed for it
    # The fold as the batch last left it (domain.loan.Checkpoint) and the last event it holds.
    checkpoint: Mapped[Document | None] = mapped_column(JSON, deferred=True)
    checkpoint_seq: Mapped[int | None]
    # What the loan's journal adds up to, {"version": v, "balances": {account: fen}}, as the
    # batch left it; good while the loan is still at version v (every journal write bumps it).
    journal_balances: Mapped[Document | None] = mapped_column(JSON, deferred=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class ConsentRow(Base):
    """What the borrower was shown (cost, APR, schedule) when they agreed to the loan."""

    __tablename__ = "consents"

    loan_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    shown: Mapped[Document] = mapped_column(JSON)
    consented_at: Mapped[datetime] = mapped_column(Timestamp)


class LoanEventRow(Base):
    """One dated event in a loan's append-only history; replaying them gives the loan's state."""

    __tablename__ = "loan_events"

    loan_id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str]
    effective: Mapped[date]  # when it counts
    booked_at: Mapped[datetime] = mapped_column(Timestamp)  # when it was recorded
    payload: Mapped[Document] = mapped_column(JSON)


class ReceiptRow(Base):
    """A receipt issued to the borrower for a payment."""

    __tablename__ = "receipts"

    loan_id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    receipt_no: Mapped[str]
    payload: Mapped[Document] = mapped_column(JSON)


class JournalEntryRow(Base):
    """One balanced entry in the books, usually for one loan event."""

    __tablename__ = "journal_entries"

    loan_id: Mapped[int] = mapped_column(primary_key=True)
    entry_no: Mapped[int] = mapped_column(primary_key=True)
    booked_date: Mapped[date]
    event_seq: Mapped[int | None]
    memo: Mapped[str]


class PostingRow(Base):
    """One line of a journal entry: a debit or a credit, in fen, to one account.

    Each line is one-sided and positive (a CHECK on every database); the lines of an entry sum
    to zero (checked in the domain, and on PostgreSQL by a trigger when the transaction commits).
    """

    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint(
            "debit >= 0 AND credit >= 0 AND (debit = 0 OR credit = 0) AND debit + credit > 0",
            "one_sided_positive",
        ),
    )

    loan_id: Mapped[int] = mapped_column(primary_key=True)
    entry_no: Mapped[int] = mapped_column(primary_key=True)
    line_no: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(ForeignKey("accounts.code"), index=True)
    debit: Mapped[int] = mapped_column(BigInteger)  # fen
    credit: Mapped[int] = mapped_column(BigInteger)  # fen


class DebitRequestRow(Base):
    """A debit (or refund) a withholding gateway is asked for, committed before it is asked:
    ``order_id`` is the merchant order id it is sent under (it names its loan, so a notification
    finds the row by it alone), ``status`` pending | unknown | succeeded | failed."""

    __tablename__ = "debit_requests"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'unknown', 'succeeded', 'failed')", "status"),
        CheckConstraint("amount > 0", "amount"),
        # What the reconciler looks for: requests still open, oldest first.
        Index(
            "ix_debit_requests_open",
            "updated_at",
            postgresql_where=text("status IN ('pending', 'unknown')"),
            sqlite_where=text("status IN ('pending', 'unknown')"),
        ),
    )

    loan_id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str]  # pay | prepay | cob | refund
    amount: Mapped[int] = mapped_column(BigInteger)  # fen
    channel: Mapped[str]  # which gateway: bank_card | alipay | wechat
    method_id: Mapped[int | None]
    token_ref: Mapped[str]
    idempotency_key: Mapped[str]
    day: Mapped[date]  # the business day its payment is booked on
    status: Mapped[str]
    reference: Mapped[str | None]  # the gateway's own id for it
    reason: Mapped[str | None]  # why it failed
    refers_to: Mapped[str | None]  # a refund: the order id of the debit it pays back
    attempts: Mapped[int]  # how many answers came: the call's, notifications, queries
    mode: Mapped[str | None]  # a prepayment's mode
    due_date: Mapped[date | None]  # the batch's debit: the installment it is for
    debit_attempt: Mapped[int | None]  # the batch's debit: its attempt at that installment
    booked: Mapped[str | None]  # the outcome booked on the loan: succeeded | failed
    booked_seq: Mapped[int | None]  # the loan's event that booked it
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    settled_at: Mapped[datetime | None] = mapped_column(Timestamp)


# Cross-cutting ----------------------------------------------------------------------------------


class IdempotencyKeyRow(Base):
    """A request that moves money, remembered so a retry gets the first answer, not a second
    payment; ``fingerprint`` tells a retry from a different request reusing the key."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(primary_key=True)
    fingerprint: Mapped[str]
    result: Mapped[Document] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class AuditLogRow(Base):
    """Who changed what and why, with the before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    actor: Mapped[str]
    action: Mapped[str]
    target: Mapped[str]
    reason: Mapped[str]
    before: Mapped[Document | None] = mapped_column(JSON)
    after: Mapped[Document | None] = mapped_column(JSON)


# The nightly batch ----------------------------------------------------------------------------


_OPEN_RUN = text("status <> 'done'")


class CobRunRow(Base):
    """One close of business: a business date, when it ran, and what it did. A day has at most
    one run that is not done: a second start for it takes that one up."""

    __tablename__ = "cob_runs"
    __table_args__ = (
        Index("ix_cob_runs_open_day", "business_date", unique=True,
              postgresql_where=_OPEN_RUN, sqlite_where=_OPEN_RUN),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    business_date: Mapped[date]
    status: Mapped[str]  # running | done | failed
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    counts: Mapped[Document] = mapped_column(JSON)
    error: Mapped[str | None]  # why it failed: the first chunk that failed for good
    caught_up_from: Mapped[date | None]  # the first earlier day a catch-up closed before it


class CobJobRow(Base):
    """A chunk of a run: the loans with ids in [first_loan_id, last_loan_id], taken by one
    worker at a time (SKIP LOCKED on PostgreSQL) and marked done in the chunk's transaction; a
    chunk that raised is recorded with its error and queued again, a bounded number of times."""

    __tablename__ = "cob_jobs"
    __table_args__ = (Index("ix_cob_jobs_status", "status", "run_id", "chunk_no"),)

    run_id: Mapped[int] = mapped_column(primary_key=True)
    chunk_no: Mapped[int] = mapped_column(primary_key=True)
    business_date: Mapped[date]
    first_loan_id: Mapped[int]
    last_loan_id: Mapped[int]
    status: Mapped[str]  # queued | done | failed (after its last attempt)
    worker: Mapped[str | None]
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    counts: Mapped[Document | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(server_default="0")  # tries in all, done or raised
    failures: Mapped[int] = mapped_column(server_default="0")  # raised since last queued
    error: Mapped[str | None]  # the last failure's, while not done: its class and first line
    leased_until: Mapped[datetime | None] = mapped_column(Timestamp)  # its gateway calls run


class BucketMoveRow(Base):
    """A loan moving between delinquency buckets (M0 … M7) on a day."""

    __tablename__ = "bucket_moves"

    loan_id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    from_bucket: Mapped[str]
    to_bucket: Mapped[str]
    dpd: Mapped[int]


class SmsOutboxRow(Base):
    """A message the batch decided to send, written in the batch's transaction; the dispatcher
    sends it inside the contact window and under the daily cap."""

    __tablename__ = "sms_outbox"
    __table_args__ = (
        Index("ix_sms_outbox_status", "status", "day"),
        Index("ix_sms_outbox_sent_at", "sent_at"),  # the latest send: no dispatch goes back
        Index("ix_sms_outbox_borrower", "borrower_id", "day"),  # her message centre
    )

    loan_id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(primary_key=True)
    borrower_id: Mapped[int]
    phone: Mapped[str]
    text: Mapped[str]
    # pending | sending (being handed to the gateway) | sent | unknown (no outcome came: it may
    # have gone) | expired (its day long gone, never sent)
    status: Mapped[str]
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)  # handed to the gateway
    reference: Mapped[str | None]  # the gateway's, once it took the message
    reason: Mapped[str | None]  # why the last try did not send it, or its outcome is unknown


NO_LOAN = 0  # ``sms_sent.loan_id`` of a text about no loan: a sign-in code (loan ids start at 1)


class SmsSentRow(Base):
    """Every SMS handed to the gateway, whichever it is: the contact log, written by the
    dispatcher with the outbox row it sends, and by sign-in with each code it texts
    (``loan_id`` ``NO_LOAN``). The dunning daily cap (docs/domain.md#quiet-hours-and-daily-cap)
    counts the texts that name a loan only, so that asking for sign-in codes cannot use up a
    borrower's reminders."""

    __tablename__ = "sms_sent"
    __table_args__ = (Index("ix_sms_sent_borrower_id", "borrower_id", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    loan_id: Mapped[int]
    borrower_id: Mapped[int]
    phone: Mapped[str]
    text: Mapped[str]
    sent_at: Mapped[datetime] = mapped_column(Timestamp)


# Who may do what --------------------------------------------------------------------------------


class UserRow(Base):
    """An operator: a viewer, an agent or an admin, with a scrypt password hash. A disabled one
    (``disabled_at``) signs in no more, and her sessions and API keys stop working."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'agent', 'admin')", "role"),)

    username: Mapped[str] = mapped_column(primary_key=True)
    password_hash: Mapped[str]
    role: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    disabled_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ApiKeyRow(Base):
    """An operator's API key: its id in clear, a SHA-256 of its secret (never the secret)."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(primary_key=True)
    secret_hash: Mapped[str]
    username: Mapped[str] = mapped_column(ForeignKey("users.username"))
    revoked: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)  # to the hour


class SessionRow(Base):
    """A signed-in browser: an operator in the console or a borrower on her page."""

    __tablename__ = "sessions"
    # Disabling an operator ends her sessions: they are found by whose they are.
    __table_args__ = (Index("ix_sessions_kind_subject", "kind", "subject"),)

    token_hash: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str]  # operator | borrower
    subject: Mapped[str]
    csrf: Mapped[str]
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


class SignInCodeRow(Base):
    """The one-time code last sent to a phone, hashed, with the attempts made against it. A
    phone that is no borrower's gets a row too (a code nobody was sent), so that asking for a
    code and trying one do the same work, and answer the same, whoever the phone is."""

    __tablename__ = "sign_in_codes"
    __table_args__ = (Index("ix_sign_in_codes_expires_at", "expires_at"),)

    phone: Mapped[str] = mapped_column(primary_key=True)
    code_hash: Mapped[str]
    attempts: Mapped[int]
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


class SignInThrottleRow(Base):
    """How many tries one subject made in the current window of one limit (a user name's
    passwords, an address's codes…), counted by a single atomic upsert. ``key`` is a SHA-256 of
    the limit and the subject, so no phone, user name or address is kept here in clear."""

    __tablename__ = "sign_in_throttles"
    __table_args__ = (Index("ix_sign_in_throttles_window_start", "window_start"),)

    key: Mapped[str] = mapped_column(primary_key=True)
    window_start: Mapped[datetime] = mapped_column(Timestamp)
    hits: Mapped[int]
