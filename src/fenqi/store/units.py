"""The loans' repository and the unit of work on a database session (the ports in
``fenqi.loans.ports``): rows are read and written here, and only values leave. ``DatabaseUnits``
runs units of work on a database: a session in one transaction, run again on a known conflict."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

from sqlalchemy import JSON, Boolean, Engine, String, bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.domain.products import Product, parse_definition
from fenqi.domain.withholding import DebitRequest
from fenqi.loans.aggregate import Loan
from fenqi.loans.booking import Booking
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.ports import (
    AuditEntry,
    History,
    Stamp,
    StoredEntry,
    StoredEvent,
    StoredLine,
    UnitOfWork,
)
from fenqi.loans.receipts import Receipt, parse_stored
from fenqi.ports import PaymentChannel
from fenqi.store.batch import BatchStore
from fenqi.store.borrowers import DatabaseBorrowers, method_of
from fenqi.store.credentials import DatabaseCredentials
from fenqi.store.database import for_reading, turn
from fenqi.store.debit_requests import (
    add_request,
    find_request,
    in_flight,
    loan_requests,
    open_requests,
    save_answer,
    unpaid_refunds,
)
from fenqi.store.documents import Document
from fenqi.store.errors import (
    BrokenConstraintError,
    ContendedError,
    MissingError,
    StaleError,
    is_known_conflict,
)
from fenqi.store.loans import (
    NewLoan,
    account_names,
    add_loan,
    book_balances,
    load_loan,
    now,
    read_loan,
    save_bookings,
)
from fenqi.store.schema import (
    AuditLogRow,
    Base,
    BorrowerRow,
    ConsentRow,
    IdempotencyKeyRow,
    JournalEntryRow,
    LoanEventRow,
    LoanRow,
    OrderRow,
    PaymentMethodRow,
    PostingRow,
    ProductRow,
    ReceiptRow,
)
from fenqi.store.sms import DatabaseOutbox
from fenqi.store.throttles import DatabaseCounters

T = TypeVar("T")
# What a ``Context`` names to have its units of work run here, without knowing the database's
# own types: the engine, and the payment channel built per transaction.
Database = Engine
ChannelFactory = Callable[[Session], PaymentChannel]
ATTEMPTS = 12
BACKOFF_SECONDS = 0.002
_LOANS = Base.metadata.tables[LoanRow.__tablename__]
# A Core statement, compiled once: a bill view asks it on every request.
_STAMP = select(_LOANS.c.borrower_id, _LOANS.c.version).where(_LOANS.c.id == bindparam("loan_id"))
# Core statements, compiled once: every payment from a bound method asks one, its answer another.
_METHODS = Base.metadata.tables[PaymentMethodRow.__tablename__]
_METHOD = select(_METHODS).where(_METHODS.c.id == bindparam("method_id"))
_DEFAULT_METHOD = (
    select(_METHODS)
    .where(_METHODS.c.borrower_id == bindparam("borrower_id"), _METHODS.c.status == "active",
           _METHODS.c.is_default)
    .order_by(_METHODS.c.id)
    .limit(1)
)  # fmt: skip


def available_limit(session: Session, borrower_id: int, credit_limit: int) -> Money:
    """The credit limit less the principal every plan still holds: repaid or refunded principal
    is available again."""
    query = select(func.coalesce(func.sum(LoanRow.outstanding_principal), 0))
    held = int(session.scalar(query.where(LoanRow.borrower_id == borrower_id)) or 0)
    return Money(max(credit_limit - held, 0))


def product_named(session: Session, code: str) -> tuple[Product, Document]:
    """A product and its defining table, or a refusal that lists what there is."""
    row = session.get(ProductRow, code)
    if row is None:
        known = ", ".join(session.scalars(select(ProductRow.code).order_by(ProductRow.code)))
        hint = (f"choose one of: {known}" if known else
                "no products are loaded: fenqi product load [FILE] loads the shipped catalog or "
                "another")  # fmt: skip
        raise MissingError(f'unknown product "{code}"; {hint}')
    return parse_definition(row.definition, code), row.definition


def _serves(loan: Loan, as_of: date | None) -> bool:
    """Whether ``loan``, as read, serves replays to ``as_of`` and later days (None: any day)."""
    return loan.since is None or (as_of is not None and as_of >= loan.since.day)


_KEYS = Base.metadata.tables[IdempotencyKeyRow.__tablename__]
# Core statements built once: every keyed request asks the first and writes the second.
_RECALL = select(_KEYS.c.fingerprint, _KEYS.c.result).where(
    _KEYS.c.scope == bindparam("scope"), _KEYS.c.key == bindparam("key")
)
_REMEMBER = insert(_KEYS)
# One round trip: the lock, and the key's row (its snapshot may just miss a row committed as
# the lock was let go; inserting the key again then fails as a known conflict, and is retried).
_HOLD = text(
    "SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0)) AS held, "
    "k.fingerprint, k.result FROM (SELECT 1) AS one "
    "LEFT JOIN idempotency_keys AS k ON k.scope = :scope AND k.key = :key"
).columns(held=Boolean, fingerprint=String, result=JSON)


@dataclass(frozen=True)
class DatabaseLoans:
    """The loans' repository in a session's transaction. A loan read for update is kept for
    the rest of the transaction (its row lock is held until then): asked for again, as a
    payment's guard and then its decision do, it is the same aggregate, not another read."""

    session: Session
    locked: dict[int, Loan] = field(default_factory=dict)

    def get(self, loan_id: int, *, for_update: bool = False, as_of: date | None = None) -> Loan:
        kept = self.locked.get(loan_id)
        if kept is not None and for_update and _serves(kept, as_of):
            return kept
        loan = load_loan(self.session, loan_id, for_update=for_update, as_of=as_of)
        if for_update:
            self.locked[loan_id] = loan
        return loan

    def read(self, loan_id: int, as_of: date) -> Loan:
        return read_loan(self.session, loan_id, as_of)

    def add(self, loan: Loan, opening: Booking, consent: Document) -> None:
        add_loan(self.session, NewLoan(loan, opening, consent, now()))

    def save(self, loan: Loan, booking: Booking) -> None:
        save_bookings(self.session, [(loan, booking)])

    def ids(self) -> list[int]:
        return list(self.session.scalars(select(LoanRow.id).order_by(LoanRow.id)))

    def ids_of(self, borrower_id: int) -> list[int]:
        if self.session.get(BorrowerRow, borrower_id) is None:
            raise MissingError(f"no borrower {borrower_id}")
        query = select(LoanRow.id).where(LoanRow.borrower_id == borrower_id).order_by(LoanRow.id)
        return list(self.session.scalars(query))

    def borrower_of(self, loan_id: int) -> int:
        owner = self.session.scalar(select(LoanRow.borrower_id).where(LoanRow.id == loan_id))
        if owner is None:
            raise MissingError(f"no loan {loan_id}")
        return owner

    def stamp(self, loan_id: int) -> Stamp:
        row = self.session.connection().execute(_STAMP, {"loan_id": loan_id}).first()
        if row is None:
            raise MissingError(f"no loan {loan_id}")
        return Stamp(row.borrower_id, row.version)

    def for_order(self, order_id: str) -> int | None:
        existing = self.session.get(OrderRow, order_id)
        return None if existing is None else existing.loan_id

    def consent(self, loan_id: int) -> Document | None:
        consent = self.session.get(ConsentRow, loan_id)
        return None if consent is None else consent.shown

    def receipt(self, loan_id: int, seq: int) -> Receipt | None:
        row = self.session.get(ReceiptRow, (loan_id, seq))
        return None if row is None else parse_stored(row.payload)

    def receipts(self, loan_id: int) -> list[Receipt]:
        query = (
            select(ReceiptRow.payload).where(ReceiptRow.loan_id == loan_id).order_by(ReceiptRow.seq)
        )
        return [parse_stored(payload) for payload in self.session.scalars(query)]

    def history(self, loan_id: int) -> History:
        session, event, entry, line = self.session, LoanEventRow, JournalEntryRow, PostingRow
        events = select(event.seq, event.kind, event.effective, event.booked_at, event.payload)
        entries = select(entry.entry_no, entry.booked_date, entry.memo, entry.event_seq)
        lines = select(line.entry_no, line.account, line.debit, line.credit)
        return History(
            [StoredEvent(*row) for row in session.execute(
                events.where(event.loan_id == loan_id).order_by(event.seq))],
            [StoredEntry(*row) for row in session.execute(
                entries.where(entry.loan_id == loan_id).order_by(entry.entry_no))],
            [StoredLine(*row) for row in session.execute(
                lines.where(line.loan_id == loan_id).order_by(line.entry_no, line.line_no))],
            account_names(session),
        )  # fmt: skip

    def books(self, loan_id: int) -> dict[str, int]:
        return book_balances(self.session, loan_id)


class DatabaseUnitOfWork:
    """One database transaction (``session``'s), with the payment channel built for it."""

    def __init__(self, session: Session, channel: ChannelFactory) -> None:
        self.session = session
        self.loans = DatabaseLoans(session)
        self.credentials = DatabaseCredentials(session)  # one, for the credentials it checked
        self._channel = channel

    def channel(self) -> PaymentChannel:
        return self._channel(self.session)

    def trial_balance(self) -> list[tuple[str, int, int]]:
        query = (
            select(PostingRow.account, func.sum(PostingRow.debit), func.sum(PostingRow.credit))
            .group_by(PostingRow.account)
            .order_by(PostingRow.account)
        )
        return [(account, int(debit), int(credit))
                for account, debit, credit in self.session.execute(query)]  # fmt: skip

    def account_names(self) -> dict[str, str]:
        return account_names(self.session)

    def method(self, method_id: int) -> PaymentMethod | None:
        row = self.session.execute(_METHOD, {"method_id": method_id}).first()
        return None if row is None else method_of(row)

    def default_method(self, borrower_id: int) -> PaymentMethod | None:
        row = self.session.execute(_DEFAULT_METHOD, {"borrower_id": borrower_id}).first()
        return None if row is None else method_of(row)

    def available_limit(self, borrower_id: int, *, lock: bool = False) -> Money:
        query = select(BorrowerRow.credit_limit).where(BorrowerRow.id == borrower_id)
        limit = self.session.scalar(query.with_for_update() if lock else query)
        if limit is None:
            raise MissingError(f"no borrower {borrower_id}")
        return available_limit(self.session, borrower_id, limit)

    def product(self, code: str) -> tuple[Product, Document]:
        return product_named(self.session, code)

    def products(self) -> dict[str, Document]:
        query = select(ProductRow.code, ProductRow.definition).order_by(ProductRow.code)
        return dict(self.session.execute(query).all())

    def keep_product(self, code: str, name: str, table: Document) -> Document | None:
        row = self.session.get(ProductRow, code)
        if row is None:
            self.session.add(ProductRow(code=code, name=name, definition=table, loaded_at=now()))
            return None
        before = row.definition
        row.name, row.definition, row.loaded_at = name, table, now()
        return before

    def audit_entries(self, target: str | None, limit: int) -> list[AuditEntry]:
        query = select(AuditLogRow).order_by(AuditLogRow.id.desc()).limit(limit)
        if target is not None:  # a whole id exactly (loan:1 is not loan:12), else a beginning
            about = AuditLogRow.target
            query = query.where(about == target if target[-1:].isdigit() else
                                about.startswith(target, autoescape=True))  # fmt: skip
        rows = self.session.scalars(query)
        return [AuditEntry(row.id, row.at, row.actor, row.action, row.target, row.reason,
                           row.before, row.after) for row in rows]  # fmt: skip

    def audit(self, actor: str, action: str, target: str, reason: str, *,
              before: Document | None = None, after: Document | None = None) -> None:  # fmt: skip
        self.session.add(AuditLogRow(at=now(), actor=actor, action=action, target=target,
                                     reason=reason, before=before, after=after))  # fmt: skip

    def hold(self, scope: str, key: str) -> tuple[bool, tuple[str, Document] | None]:
        """On PostgreSQL, an advisory lock for the transaction, taken by the statement that
        reads the key's row; SQLite runs one writer at a time, so a second request simply
        finds the first's result."""
        if self.session.get_bind().dialect.name != "postgresql":
            return True, self.recall(scope, key)
        found = self.session.execute(_HOLD, {"name": f"{scope}\x1f{key}", "scope": scope,
                                             "key": key}).one()  # fmt: skip
        seen = None if found.fingerprint is None else (found.fingerprint, found.result)
        return bool(found.held), seen

    def recall(self, scope: str, key: str) -> tuple[str, Document] | None:
        seen = self.session.execute(_RECALL, {"scope": scope, "key": key}).one_or_none()
        return None if seen is None else (seen.fingerprint, seen.result)

    def remember(self, scope: str, key: str, fingerprint: str, result: Document) -> None:
        self.session.execute(_REMEMBER, {"scope": scope, "key": key, "fingerprint": fingerprint,
                                         "result": result, "created_at": now()})  # fmt: skip

    def debit_request(self, loan_id: int, order_id: str, *,
                      for_update: bool = False) -> DebitRequest | None:  # fmt: skip
        return find_request(self.session, loan_id, order_id, for_update=for_update)

    def add_debit_request(self, request: DebitRequest) -> DebitRequest:
        return add_request(self.session, request, now())

    def save_debit_request(self, request: DebitRequest) -> None:
        save_answer(self.session, request, now())

    def in_flight(self, loan_id: int) -> Money:
        return in_flight(self.session, loan_id)

    @property
    def counters(self) -> DatabaseCounters:
        return DatabaseCounters(self.session)

    @property
    def borrowers(self) -> DatabaseBorrowers:
        return DatabaseBorrowers(self.session)

    @property
    def outbox(self) -> DatabaseOutbox:
        return DatabaseOutbox(self.session)

    @property
    def batch(self) -> BatchStore:
        return BatchStore(self.session)

    def debit_requests(self, loan_id: int) -> list[DebitRequest]:
        return loan_requests(self.session, loan_id)

    def open_debit_requests(self, untouched_since: datetime, limit: int) -> list[DebitRequest]:
        return open_requests(self.session, untouched_since, limit)

    def unpaid_refunds(self, limit: int) -> list[DebitRequest]:
        return unpaid_refunds(self.session, limit)


@dataclass(frozen=True)
class DatabaseUnits:
    """Units of work (``fenqi.loans.ports.Units``) on ``engine``'s database, each with the
    payment channel built for its transaction."""

    engine: Engine
    channel: ChannelFactory

    def __call__(self, work: Callable[[UnitOfWork], T], *, reading: bool = False) -> T:
        return self.on_session(
            lambda session: work(DatabaseUnitOfWork(session, self.channel)), reading=reading
        )

    def on_session(self, work: Callable[[Session], T], *, reading: bool = False) -> T:
        """Runs ``work`` in one transaction, again on fresh state if another writer got there
        first (a known conflict, ``is_known_conflict``: a stale version, a key another writer
        took; on PostgreSQL, a deadlock or a serialization failure). Writers that collided wait
        a random, growing while before trying again, so that they stop colliding; after
        ``ATTEMPTS`` it raises ``ContendedError``, having changed nothing. Nothing else is
        retried: a constraint the database refused for another reason is a broken invariant
        (``BrokenConstraintError``), raised at once. On SQLite the unit first waits for its
        process's turn at the database (``turn``). Work that only reads (``reading``: no more
        than a credential's hourly note of its use besides) runs on PostgreSQL with no
        transaction around its statements (``for_reading``)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with (
                    turn(self.engine),
                    Session(self.engine, expire_on_commit=False) as session,
                    session.begin(),
                ):
                    if reading:
                        for_reading(session)
                    return work(session)
            except (StaleError, IntegrityError, OperationalError) as error:
                if not is_known_conflict(error):
                    if isinstance(error, IntegrityError):
                        raise BrokenConstraintError.of(error) from error
                    raise
                if attempt == ATTEMPTS:
                    raise ContendedError(
                        f"other requests kept changing the same records through {ATTEMPTS} "
                        "tries; this one changed nothing: send it again in a moment"
                    ) from error
                time.sleep(random.uniform(0, BACKOFF_SECONDS * 2 ** min(attempt, 6)))
        raise AssertionError("unreachable")  # pragma: no cover


def session_of(unit: UnitOfWork) -> Session:
    """The session a unit of work on the database runs in, for work written in rows on the
    database only (the seeder's bulk rows)."""
    assert isinstance(unit, DatabaseUnitOfWork), "this work runs on the database only"
    return unit.session
