"""Reading and writing a loan's rows: its terms and policy, its events, its journal.

Every statement here is keyed by ``loan_id``, so on a distributed database each runs on one
shard. A writer reads the loan with its row locked (``load_loan(..., for_update=True)``), and its
writes go through ``save_loan``, which refuses (``StaleError``) when another writer changed the
loan since it was read: optimistic locking on ``loans.version``, a second guard behind the lock.
Every write, the batch's and ``save_loan``'s, keeps the loan's fold on its booking day in the
row (its checkpoint), so a reader (``read_loan``) replays only the events after it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, undefer

from fenqi.domain.events import Event
from fenqi.domain.ledger import Balances, Line
from fenqi.domain.loan import Checkpoint, LoanState, replay_to_checkpoint, resumable
from fenqi.domain.products import Product, parse_definition
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import Terms
from fenqi.services.errors import NotFoundError, StaleError
from fenqi.store.documents import Document, event_document, event_from, terms_from
from fenqi.store.schema import (
    AccountRow,
    JournalEntryRow,
    LoanEventRow,
    LoanRow,
    PostingRow,
)


@dataclass
class LoanRecord:
    """A loan as read: its row (for the version and the watermark), terms, policy and events.
    Read by the batch with its checkpoint ``since``, ``events`` are those recorded after it."""

    row: LoanRow
    terms: Terms
    policy: Product
    events: list[Event]
    cap: Rate | None = None  # the APR cap on the contract date, which penalty stays under
    since: Checkpoint | None = None
    _replayed: dict[tuple[int, date], tuple[LoanState, Checkpoint | None]] = field(
        default_factory=dict
    )

    @property
    def next_seq(self) -> int:
        last = 0 if self.since is None else self.since.seq
        return max((event.seq for event in self.events), default=last) + 1

    def state_on(self, day: date) -> LoanState:
        """The loan replayed to ``day`` with the events it has now; a unit of work asks more
        than once, and a replay is the costliest thing in it."""
        return self._replay(day)[0]

    def checkpoint_on(self, day: date) -> Checkpoint | None:
        """Where the next replay can start: the fold on ``day`` with the events it has now."""
        return self._replay(day)[1]

    def _replay(self, day: date) -> tuple[LoanState, Checkpoint | None]:
        key = (len(self.events), day)
        if key not in self._replayed:
            self._replayed[key] = replay_to_checkpoint(
                self.terms, self.policy, self.events, day, self.cap, since=self.since
            )
        return self._replayed[key]


def checkpoint_columns(kept: Checkpoint | None) -> Document:
    """The loan row's columns that keep a checkpoint (both empty for none)."""
    if kept is None:
        return {"checkpoint": None, "checkpoint_seq": None}
    return {"checkpoint": kept.document(), "checkpoint_seq": kept.seq}


def journal_balances_column(version: int, booked: Balances) -> Document:
    """The loan row's record of what its journal adds up to at ``version``."""
    return {"journal_balances": {"version": version, "balances": dict(booked)}}


def journal_balances_of(row: LoanRow) -> Balances | None:
    """What the row says its journal adds up to, if nothing has been written since it said so."""
    kept = row.journal_balances
    if not kept or kept.get("version") != row.version:
        return None
    balances: Balances = kept["balances"]
    return balances


def now() -> datetime:
    return datetime.now(UTC)


def load_loan(session: Session, loan_id: int, *, for_update: bool = False) -> LoanRecord:
    """The loan with its events. A unit of work that will write the loan asks ``for_update``:
    on PostgreSQL its row is locked (``SELECT … FOR UPDATE``) before anything is read, so
    writers of one loan wait their turn in order and each reads what the one before it wrote,
    instead of all reading the same version and all but one failing the version check. SQLite
    has one writer at a time already (``BEGIN IMMEDIATE``). Readers take no lock."""
    row = session.get(LoanRow, loan_id, with_for_update=True if for_update else None)
    if row is None:
        raise NotFoundError(f"no loan {loan_id}")
    return _record(row, _events(session, loan_id))


def read_loan(session: Session, loan_id: int, as_of: date) -> LoanRecord:
    """The loan for reading its state on ``as_of`` (no lock; nothing is written with it): from
    the checkpoint its row keeps, with only the events recorded after it, when a replay to
    ``as_of`` may start there (``resumable``: ``as_of`` is on or after the checkpoint's day, and
    no later event reaches back before it or takes a payment back). Otherwise, for an earlier
    day, a loan without a checkpoint or a correction reaching back, from its first event. Its
    ``events`` are then only those after the checkpoint: enough for its state, not its
    history."""
    row = session.get(LoanRow, loan_id, options=[undefer(LoanRow.checkpoint)])
    if row is None:
        raise NotFoundError(f"no loan {loan_id}")
    kept = Checkpoint.from_document(row.checkpoint)
    if kept is not None and as_of >= kept.day:
        later = _events(session, loan_id, after=kept.seq)
        if resumable(kept, later, as_of):
            return _record(row, later, since=kept)
    return _record(row, _events(session, loan_id))


def _events(session: Session, loan_id: int, after: int = 0) -> list[Event]:
    """The loan's events numbered after ``after``, in the order they were recorded."""
    columns = (LoanEventRow.kind, LoanEventRow.seq, LoanEventRow.effective, LoanEventRow.payload)
    query = (
        select(*columns)
        .where(LoanEventRow.loan_id == loan_id, LoanEventRow.seq > after)
        .order_by(LoanEventRow.seq)
    )
    return [event_from(*event) for event in session.execute(query)]


def _record(row: LoanRow, events: list[Event], since: Checkpoint | None = None) -> LoanRecord:
    return LoanRecord(row, terms_from(row.terms), policy_of(row.policy), events, cap_of(row), since)


def policy_of(definition: Document) -> Product:
    """A loan's product, as it was when the loan was made."""
    return _policy(json.dumps(definition, sort_keys=True))


def cap_of(row: LoanRow) -> Rate | None:
    """The APR cap fixed at the loan's contract date (penalty interest stays under it)."""
    cap = row.terms.get("apr_cap")
    return None if cap is None else Fraction(cap)


@lru_cache(maxsize=256)
def _policy(definition: str) -> Product:
    """Loans share a few products: each stored definition is parsed and checked once."""
    return parse_definition(json.loads(definition), "a loan's product")


def append_event(session: Session, loan_id: int, event: Event) -> None:
    session.execute(insert(LoanEventRow), [event_row(loan_id, event, now())])


def event_row(loan_id: int, event: Event, booked_at: datetime) -> Document:
    """The ``loan_events`` row of an event, for a statement that writes one or many."""
    kind, payload = event_document(event)
    return {"loan_id": loan_id, "seq": event.seq, "kind": kind, "effective": event.effective,
            "booked_at": booked_at, "payload": payload}  # fmt: skip


def save_loan(
    session: Session,
    record: LoanRecord,
    state: LoanState,
    booked_through: date,
    next_action: date | None,
) -> None:
    """Writes the loan's summary columns and its checkpoint on ``booked_through`` (what the next
    read, or the batch, starts from), refusing if its version moved since it was read. The
    batch's next action date only ever moves earlier here: the batch itself moves it on."""
    row = record.row
    if row.next_action_date is not None and (
        next_action is None or row.next_action_date < next_action
    ):
        next_action = row.next_action_date
    done = session.execute(
        update(LoanRow)
        .where(LoanRow.id == row.id, LoanRow.version == row.version)
        .values(
            version=row.version + 1,
            status=state.status.value,
            outstanding_principal=int(state.outstanding_principal),
            dpd=state.dpd,
            booked_through=booked_through,
            next_action_date=next_action,
            **checkpoint_columns(record.checkpoint_on(booked_through)),
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleError(f"loan {row.id} changed while this request was being worked out")
    session.expire(row)


class Entry(NamedTuple):
    """A journal entry to post: its lines (balanced by the domain), what it is, and the event
    it books, if any."""

    lines: tuple[Line, ...]
    memo: str
    event_seq: int | None = None


def post_entries(
    session: Session, loan_id: int, version: int, booked_date: date, entries: Sequence[Entry]
) -> None:
    """Posts the journal entries of one write to a loan (the database checks again on
    PostgreSQL that each balances)."""
    headers, lines = journal_rows(loan_id, version, booked_date, entries)
    if headers:
        session.execute(insert(JournalEntryRow), headers)
        session.execute(insert(PostingRow), lines)


def journal_rows(
    loan_id: int, version: int, booked_date: date, entries: Sequence[Entry]
) -> tuple[list[Document], list[Document]]:
    """The ``journal_entries`` and ``postings`` rows of one write to a loan, for statements
    that write one loan's or many loans' at once. A write that takes the loan from ``version``
    numbers its entries 2·version and 2·version + 1: in order, never twice, without asking the
    database. Entries without lines are left out."""
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
