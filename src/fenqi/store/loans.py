"""Reading and writing a loan's rows: its terms and policy, its events, its journal, its
receipts — the ``Loan`` aggregate's store.

Every statement here is keyed by ``loan_id``, so on a distributed database each runs on one
shard. A writer reads the loan with its row locked (``load_loan(..., for_update=True)``), and
every change to a loan, online or by the batch, one loan or a chunk of them, is written by
``save_bookings``, which refuses (``StaleError``) when another writer changed a loan since it
was read: optimistic locking on ``loans.version``, a second guard behind the lock. Every write
keeps the loan's fold on its booking day in the row (its checkpoint), so a reader
(``read_loan``) replays only the events after it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from fractions import Fraction
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Row, TextClause, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from fenqi.clock import stamp
from fenqi.domain.events import Event
from fenqi.domain.ledger import Balances
from fenqi.domain.loan import Checkpoint, LoanStatus, resumable
from fenqi.domain.products import Product, parse_definition
from fenqi.domain.rates import Rate
from fenqi.loans.aggregate import Loan
from fenqi.loans.booking import Booking, Entry, saved
from fenqi.loans.receipts import Receipt, stored
from fenqi.store.bulk import insert_rows
from fenqi.store.documents import Document, event_document, event_from, terms_document, terms_from
from fenqi.store.errors import MissingError, StaleError
from fenqi.store.schema import (
    AccountRow,
    AuditLogRow,
    Base,
    JournalEntryRow,
    LoanEventRow,
    LoanRow,
    PostingRow,
    ReceiptRow,
)

now = stamp  # the moment a row is written

_LOANS = LoanRow.__table__
# A loan is read with a Core statement: the ORM's identity map and change tracking would only
# cost a request that builds the aggregate from the values and never writes the row object.
_LOAN_COLUMNS = tuple(_LOANS.c[name] for name in (
    "id", "borrower_id", "order_id", "merchant", "item", "product_code", "terms", "policy",
    "status", "outstanding_principal", "dpd", "version", "booked_through", "opened",
    "next_action_date", "closed_through", "checkpoint", "journal_balances",
))  # fmt: skip
_LOAN = select(*_LOAN_COLUMNS).where(_LOANS.c.id == bindparam("loan_id"))
_LOAN_LOCKED = _LOAN.with_for_update()


def loan_of(row: LoanRow | Row[Any], events: list[Event], *, since: Checkpoint | None = None,
            journal: Balances | None = None) -> Loan:  # fmt: skip
    """The aggregate of a loan's row and its events (those after ``since``, if given)."""
    return Loan(
        id=row.id, borrower_id=row.borrower_id, order_id=row.order_id, merchant=row.merchant,
        item=row.item, product_code=row.product_code, terms=terms_from(row.terms),
        policy=policy_of(row.policy), definition=row.policy, cap=cap_of(row), events=events,
        status=LoanStatus(row.status), outstanding_principal=row.outstanding_principal,
        dpd=row.dpd, version=row.version, opened=row.opened, booked_through=row.booked_through,
        closed_through=row.closed_through, next_action_date=row.next_action_date, since=since,
        journal=journal,
    )  # fmt: skip


def journal_balances_of(row: LoanRow | Row[Any]) -> Balances | None:
    """What the row says its journal adds up to, if nothing has been written since it said so."""
    kept = row.journal_balances
    if not kept or kept.get("version") != row.version:
        return None
    balances: Balances = kept["balances"]
    return balances


def load_loan(session: Session, loan_id: int, *, for_update: bool = False,
              as_of: date | None = None) -> Loan:  # fmt: skip
    """The loan with its events. A unit of work that will write the loan asks ``for_update``:
    on PostgreSQL its row is locked (``SELECT … FOR UPDATE``) before anything is read, so
    writers of one loan wait their turn in order and each reads what the one before it wrote,
    instead of all reading the same version and all but one failing the version check. SQLite
    has one writer at a time already (``BEGIN IMMEDIATE``). Readers take no lock.

    With ``as_of``, the loan is read from the checkpoint its row keeps, with only the events
    recorded after it, when a replay to ``as_of`` (or any later day) may start there
    (``resumable``: ``as_of`` is on or after the checkpoint's day, and no later event reaches
    back before it or takes a payment back); otherwise from its first event. Its ``events``
    are then only those after the checkpoint: enough for its state, not its history."""
    query = _LOAN_LOCKED if for_update else _LOAN
    row = session.execute(query, {"loan_id": loan_id}).one_or_none()
    if row is None:
        raise MissingError(f"no loan {loan_id}")
    journal = journal_balances_of(row)
    kept = None if as_of is None else Checkpoint.from_document(row.checkpoint)
    if kept is not None and as_of is not None and as_of >= kept.day:
        later = _events(session, loan_id, after=kept.seq)
        if resumable(kept, later, as_of):
            return loan_of(row, later, since=kept, journal=journal)
    return loan_of(row, _events(session, loan_id), journal=journal)


def read_loan(session: Session, loan_id: int, as_of: date) -> Loan:
    """The loan for reading its state on ``as_of`` (no lock; nothing is written with it): from
    its checkpoint when one serves (``load_loan`` with ``as_of``)."""
    return load_loan(session, loan_id, as_of=as_of)


def _events(session: Session, loan_id: int, after: int = 0) -> list[Event]:
    """The loan's events numbered after ``after``, in the order they were recorded."""
    found = session.execute(_EVENTS, {"loan_id": loan_id, "after": after})
    return [event_from(*event) for event in found]


_EVENT_COLUMNS = LoanEventRow.__table__.c
_EVENTS = (
    select(_EVENT_COLUMNS.kind, _EVENT_COLUMNS.seq, _EVENT_COLUMNS.effective,
           _EVENT_COLUMNS.payload)
    .where(_EVENT_COLUMNS.loan_id == bindparam("loan_id"), _EVENT_COLUMNS.seq > bindparam("after"))
    .order_by(_EVENT_COLUMNS.seq)
)  # fmt: skip


def loans_closed_past(session: Session, day: date) -> list[Loan]:
    """The loans opened by ``day`` that the batch has closed past it, with their events from
    the first: a report of ``day`` replays them to it (their rows and checkpoints hold a later
    day). Read in two statements, the events of all of them in one."""
    rows = session.execute(_LOAN_PAST, {"day": day}).all()
    events: dict[int, list[Event]] = {row.id: [] for row in rows}
    found = session.execute(_EVENTS_PAST, {"day": day})
    for loan_id, *event in found:
        events[loan_id].append(event_from(*event))
    return [loan_of(row, events[row.id]) for row in rows]


_LOAN_PAST = select(*_LOAN_COLUMNS).where(
    _LOANS.c.opened <= bindparam("day"), _LOANS.c.closed_through > bindparam("day")
)
_EVENTS_PAST = (
    select(_EVENT_COLUMNS.loan_id, _EVENT_COLUMNS.kind, _EVENT_COLUMNS.seq,
           _EVENT_COLUMNS.effective, _EVENT_COLUMNS.payload)
    .join(_LOANS, _LOANS.c.id == _EVENT_COLUMNS.loan_id)
    .where(_LOANS.c.opened <= bindparam("day"), _LOANS.c.closed_through > bindparam("day"))
    .order_by(_EVENT_COLUMNS.loan_id, _EVENT_COLUMNS.seq)
)  # fmt: skip


def policy_of(definition: Document) -> Product:
    """A loan's product, as it was when the loan was made."""
    return _policy(json.dumps(definition, sort_keys=True))


def cap_of(row: LoanRow | Row[Any]) -> Rate | None:
    """The APR cap fixed at the loan's contract date (penalty interest stays under it)."""
    cap = row.terms.get("apr_cap")
    return None if cap is None else Fraction(cap)


@lru_cache(maxsize=256)
def _policy(definition: str) -> Product:
    """Loans share a few products: each stored definition is parsed and checked once."""
    return parse_definition(json.loads(definition), "a loan's product")


def event_row(loan_id: int, event: Event, booked_at: datetime) -> Document:
    """The ``loan_events`` row of an event, for a statement that writes one or many."""
    kind, payload = event_document(event)
    return {"loan_id": loan_id, "seq": event.seq, "kind": kind, "effective": event.effective,
            "booked_at": booked_at, "payload": payload}  # fmt: skip


class NewLoan(NamedTuple):
    """A loan to store: the aggregate (its events all new), its opening booking, what the
    borrower consented to, when it was made, and when each of its events was booked."""

    loan: Loan
    opening: Booking
    consent: Document
    made_at: datetime
    booked_at: tuple[datetime, ...] = ()


NEW_LOAN_TABLES = ("loans", "orders", "consents", "loan_events", "journal_entries", "postings",
                   "receipts")  # fmt: skip


def add_loan(session: Session, new: NewLoan) -> None:
    """Stores a new loan as checkout made it, the database giving it its id."""
    row = LoanRow(**_new_loan_columns(new))
    session.add(row)
    session.flush()
    new.loan.id = row.id
    for name, rows in new_loan_rows([new]).items():
        if name != "loans" and rows:
            session.execute(insert(Base.metadata.tables[name]), rows)
    saved(new.loan, new.opening)


def new_loan_rows(new: Sequence[NewLoan]) -> dict[str, list[Document]]:
    """The rows of new loans whose ids are given (``NEW_LOAN_TABLES``), to write in bulk with
    ``insert_tables``; made apart from any session, so worker processes can make them."""
    rows: dict[str, list[Document]] = {name: [] for name in NEW_LOAN_TABLES}
    for item in new:
        loan, opening = item.loan, item.opening
        rows["loans"].append({"id": loan.id, **_new_loan_columns(item)})
        rows["orders"].append({"order_id": loan.order_id, "loan_id": loan.id,
                               "borrower_id": loan.borrower_id})  # fmt: skip
        rows["consents"].append({"loan_id": loan.id, "shown": item.consent,
                                 "consented_at": item.made_at})  # fmt: skip
        booked = zip(loan.events, item.booked_at, strict=True)
        rows["loan_events"] += [event_row(loan.id, event, at) for event, at in booked]
        headers, lines = journal_rows(loan.id, opening.version, opening.day, opening.entries)
        rows["journal_entries"] += headers
        rows["postings"] += lines
        rows["receipts"] += receipt_rows(loan.id, opening.receipts)
    return rows


def _new_loan_columns(new: NewLoan) -> Document:
    loan, opening = new.loan, new.opening
    return {
        "borrower_id": loan.borrower_id, "order_id": loan.order_id, "merchant": loan.merchant,
        "item": loan.item, "product_code": loan.product_code,
        "terms": {**terms_document(loan.terms), "apr_cap": str(loan.cap)},  # fixed at contract
        "policy": dict(loan.definition), "opened": loan.opened, "created_at": new.made_at,
        "closed_through": opening.closed_through, **_summary(opening),
    }  # fmt: skip


def receipt_rows(loan_id: int, receipts: Sequence[Receipt]) -> list[Document]:
    """The rows of a loan's receipts."""
    return [{"loan_id": loan_id, "seq": receipt.seq, "receipt_no": receipt.receipt_id,
             "payload": stored(receipt)} for receipt in receipts]  # fmt: skip


def save_bookings(session: Session, booked: Sequence[tuple[Loan, Booking]]) -> int:
    """Stores each booking of a loan — one online, a whole chunk's in the batch — with a
    statement per table for all of them: the events, journal entries and postings, receipts,
    and each loan row's new summary, written only while the loan is still at the version the
    booking was worked out from (``StaleError`` otherwise). Returns the rows written."""
    if not booked:
        return 0
    loans = Base.metadata.tables[LoanRow.__tablename__]
    if len(booked) == 1 and session.get_bind().dialect.name == "postgresql":
        return _save_in_one_statement(session, *booked[0])
    written = sum(len(rows) for _, rows in _write_rows(session, booked, bulk=len(booked) > 1))
    for closes in (False, True):
        rows = [_summary(booking) | {"loan_id": loan.id, "expected": booking.version}
                for loan, booking in booked if booking.closes is closes]  # fmt: skip
        if not rows:
            continue
        statement = update(loans).where(
            loans.c.id == bindparam("loan_id"), loans.c.version == bindparam("expected")
        )  # a Core statement executed many: the ORM's bulk path costs more a row
        done = session.execute(statement, rows)
        if done.rowcount != len(rows):  # type: ignore[attr-defined]
            stale = ", ".join(str(row["loan_id"]) for row in rows)
            raise StaleError(f"loan {stale} changed while this request was being worked out")
        written += len(rows)
    for loan, booking in booked:
        saved(loan, booking)
    return written


def _save_in_one_statement(session: Session, loan: Loan, booking: Booking) -> int:
    """One booking on PostgreSQL as a single statement: the loan row's update (refused when
    its version moved) with the rows of its history inserted by the statement's ``WITH``
    clauses. One round trip for the server to parse and run, not five; the balance trigger
    still checks every entry at commit."""
    history = tuple((name, rows) for name, rows in _history_rows([(loan, booking)]) if rows)
    summary = _summary(booking)
    shape = (tuple((name, tuple(rows[0]), len(rows)) for name, rows in history), tuple(summary))
    values = {f"new_{column}": value for column, value in summary.items()}
    values |= {f"{name}_{n}_{column}": value for name, rows in history
               for n, row in enumerate(rows) for column, value in row.items()}  # fmt: skip
    done = session.execute(_one_statement(shape),
                           {"loan_id": loan.id, "expected": booking.version, **values})  # fmt: skip
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleError(f"loan {loan.id} changed while this request was being worked out")
    saved(loan, booking)
    return 1 + sum(len(rows) for _, rows in history)


_Shape = tuple[tuple[tuple[str, tuple[str, ...], int], ...], tuple[str, ...]]


@lru_cache(maxsize=64)
def _one_statement(shape: _Shape) -> TextClause:
    """The statement of ``_save_in_one_statement`` for bookings of one shape (how many rows of
    which columns it adds to which table, which summary columns it sets), made once. It is
    text: SQLAlchemy compiles an INSERT of several rows anew at every execution."""
    adds, summary = shape
    typed = []
    ctes = []
    for name, columns, count in adds:
        table = Base.metadata.tables[name]
        rows = ", ".join(
            "(" + ", ".join(f":{name}_{n}_{column}" for column in columns) + ")"
            for n in range(count)
        )
        ctes.append(f"add_{name} AS (INSERT INTO {name} ({', '.join(columns)}) VALUES {rows})")
        typed += [bindparam(f"{name}_{n}_{column}", type_=table.c[column].type)
                  for n in range(count) for column in columns]  # fmt: skip
    loans = Base.metadata.tables[LoanRow.__tablename__]
    typed += [bindparam(f"new_{column}", type_=loans.c[column].type) for column in summary]
    sets = ", ".join(f"{column} = :new_{column}" for column in summary)
    statement = (f"{'WITH ' + ', '.join(ctes) if ctes else ''} UPDATE loans SET {sets} "
                 "WHERE id = :loan_id AND version = :expected")  # fmt: skip
    return text(statement).bindparams(*typed)


def _summary(booking: Booking) -> Document:
    """A loan row's columns after ``booking``, its checkpoint among them; the closing of a
    business day also keeps the batch's watermark."""
    state, version, kept = booking.state, booking.version + 1, booking.checkpoint
    columns: Document = {
        "version": version, "status": state.status.value,
        "outstanding_principal": int(state.outstanding_principal), "dpd": state.dpd,
        "booked_through": booking.day, "next_action_date": booking.next_action,
        "journal_balances": {"version": version, "balances": dict(booking.books)},
        "checkpoint": None if kept is None else kept.document(),
        "checkpoint_seq": None if kept is None else kept.seq,
    }  # fmt: skip
    if booking.closes:
        columns["closed_through"] = booking.closed_through
    return columns


def _write_rows(session: Session, booked: Sequence[tuple[Loan, Booking]],
                *, bulk: bool) -> list[tuple[str, list[Document]]]:  # fmt: skip
    """Writes the rows the bookings add to a loan's history: with ``COPY`` on PostgreSQL for
    many loans at once, with an ``INSERT`` for one; returns them, table by table."""
    tables = _history_rows(booked)
    for name, rows in tables:
        if bulk:
            insert_rows(session, name, rows)
        elif rows:  # a Core insert: the ORM's bulk path costs more than the statement
            session.execute(insert(Base.metadata.tables[name]), rows)
    return tables


def _history_rows(booked: Sequence[tuple[Loan, Booking]]) -> list[tuple[str, list[Document]]]:
    """The rows, table by table, that the bookings add to their loans' history: the events,
    journal entries and postings, receipts, and the audit log's entries."""
    at = now()
    events, entries, postings, receipts, audited = [], [], [], [], []
    for loan, booking in booked:
        events += [event_row(loan.id, event, at) for event in booking.events]
        headers, lines = journal_rows(loan.id, booking.version, booking.day, booking.entries)
        entries += headers
        postings += lines
        receipts += receipt_rows(loan.id, booking.receipts)
        audited += [{"at": at, "actor": entry.actor, "action": entry.action,
                     "target": entry.target, "reason": entry.reason, "before": None,
                     "after": dict(entry.after)} for entry in booking.audited]  # fmt: skip
    return [(LoanEventRow.__tablename__, events), (JournalEntryRow.__tablename__, entries),
            (PostingRow.__tablename__, postings), (ReceiptRow.__tablename__, receipts),
            (AuditLogRow.__tablename__, audited)]  # fmt: skip


def journal_rows(
    loan_id: int, version: int, booked_date: date, entries: Sequence[Entry]
) -> tuple[list[Document], list[Document]]:
    """The ``journal_entries`` and ``postings`` rows of one write to a loan. A write that takes
    the loan from ``version`` numbers its entries 2·version and 2·version + 1: in order, never
    twice, without asking the database. Entries without lines are left out."""
    kept = [entry for entry in entries if entry.lines]
    numbers = [2 * version + k for k in range(len(kept))]
    headers = [
        {"loan_id": loan_id, "entry_no": number, "booked_date": booked_date,
         "event_seq": entry.event_seq, "memo": entry.memo}
        for number, entry in zip(numbers, kept, strict=True)
    ]  # fmt: skip
    lines = [
        {"loan_id": loan_id, "entry_no": number, "line_no": line_no, "account": line.account,
         "debit": int(line.debit), "credit": int(line.credit)}
        for number, entry in zip(numbers, kept, strict=True)
        for line_no, line in enumerate(entry.lines, start=1)
    ]  # fmt: skip
    return headers, lines


def book_balances(session: Session, loan_id: int) -> dict[str, int]:
    """What the loan's accounts hold in the journal (debit minus credit)."""
    query = (
        select(PostingRow.account, func.sum(PostingRow.debit - PostingRow.credit))
        .where(PostingRow.loan_id == loan_id)
        .group_by(PostingRow.account)
    )
    return {account: int(total) for account, total in session.execute(query) if total}


def account_names(session: Session) -> dict[str, str]:
    """Each account's name in the chart of accounts, by its code."""
    return dict(session.execute(select(AccountRow.code, AccountRow.name)).all())
