"""How a change to a loan is booked, online and in the nightly batch alike.

Books follow the loan: before new events are booked on day D, the journal is brought to the
loan's state on D (interest and fees fallen due, penalties accrued: an accrual entry), then the
events' own entry moves it to the state after them. Events are booked on their effective day,
or on the day the loan's books already reach if they are backdated. ``book`` works the whole
change out — entries, receipts, the loan's new summary — and the ``Loans`` port saves it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from fenqi.domain.collection import next_action_date
from fenqi.domain.events import Event, Payment, Prepayment
from fenqi.domain.ledger import Balances, Line, balances, journal
from fenqi.domain.loan import Checkpoint, LoanState
from fenqi.loans.aggregate import Loan
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.receipts import Receipt, receipt_of


class Entry(NamedTuple):
    """A journal entry to post: its lines (balanced by the domain), what it is, and the event
    it books, if any."""

    lines: tuple[Line, ...]
    memo: str
    event_seq: int | None = None


class Audited(NamedTuple):
    """An audit log entry a booking writes with the loan's rows: who moved money on the loan,
    and what (a payment taken, with its receipt)."""

    actor: str
    action: str
    target: str
    reason: str
    after: Mapping[str, object]


@dataclass(frozen=True)
class Booking:
    """One write to a loan, worked out: saved only while the loan is still at ``version``."""

    loan_id: int
    version: int  # the loan's version it was worked out from
    day: date  # the day it is booked on: the loan's books reach it after
    events: tuple[Event, ...]
    entries: tuple[Entry, ...]
    receipts: tuple[Receipt, ...]  # one for each payment or prepayment among events
    state: LoanState  # the loan on ``day``, after the events
    books: Balances  # what the loan's journal adds up to after
    next_action: date | None
    closed_through: date | None
    checkpoint: Checkpoint | None  # where the next replay, a read or the batch's, can start
    closes: bool  # the batch's close of a business day for the loan
    audited: tuple[Audited, ...] = ()  # written with it, in the same statement


def book(loan: Loan, new_events: Sequence[Event], day: date, *, memo: str, issued: datetime,
         accrual: str | None = None, paid_with: PaymentMethod | None = None,
         closing: bool = False) -> Booking:  # fmt: skip
    """Books ``new_events`` (appended to the loan's) on ``day``: the accrual entry (``accrual``
    its memo, by default "accrual to" the booking day) and the events' entry (``memo``), a
    receipt stamped ``issued`` for each payment (``paid_with`` the method it came through).

    ``closing`` is the batch closing business day ``day``: the loan's watermark moves to it,
    its next action date is worked out afresh from it. Every booking keeps the loan's checkpoint
    on its booking day (where the next read or closing starts). Any other write moves the next
    action date only earlier (the batch itself moves it on), and to that very night if the
    batch has not closed ``day`` for the loan yet."""
    terms, on = loan.terms, loan.booking_day(day)
    books_from = loan.journal
    if books_from is None:  # the journal holds the loan's state on the day its books reach
        books_from = balances(terms, loan.state_on(loan.booked_through))
    books_day = balances(terms, loan.state_on(on))
    entries = [Entry(journal(books_from, books_day), accrual or f"accrual to {on}")]
    loan.events.extend(new_events)
    after, books_after = loan.state_on(on), books_day
    if new_events:
        books_after = balances(terms, after)
        entries.append(Entry(journal(books_day, books_after), memo, new_events[-1].seq))
    receipts = tuple(
        receipt_of(loan, after, event, paid_with, issued)
        for event in new_events
        if isinstance(event, Payment | Prepayment)
    )
    return Booking(
        loan_id=loan.id,
        version=loan.version,
        day=on,
        events=tuple(new_events),
        entries=tuple(entry for entry in entries if entry.lines),
        receipts=receipts,
        state=after,
        books=books_after,
        next_action=_next_action(loan, after, day, on, closing=closing),
        closed_through=day if closing else loan.closed_through,
        checkpoint=loan.checkpoint_on(on),
        closes=closing,
    )


def _next_action(loan: Loan, after: LoanState, day: date, on: date, *,
                 closing: bool) -> date | None:  # fmt: skip
    """When the batch next has work on the loan. Closing ``day``: from the day after it. Any
    other write booked ``on`` a day: that very night if the batch has not closed it yet (a
    correction may leave the loan overdue, past the write-off DPD even, and the night's batch
    acts on the corrected state), else after it — and never later than the batch had it."""
    if closing:
        return next_action_date(after, loan.policy, day)
    closed = loan.closed_through
    since = on if closed is not None and closed >= on else on - timedelta(days=1)
    upcoming = next_action_date(after, loan.policy, since)
    kept = loan.next_action_date
    if kept is not None and (upcoming is None or kept < upcoming):
        return kept
    return upcoming


def saved(loan: Loan, booking: Booking) -> None:
    """The loan as its store now holds it, once ``booking`` is saved."""
    loan.version = booking.version + 1
    loan.status = booking.state.status
    loan.outstanding_principal = int(booking.state.outstanding_principal)
    loan.dpd = booking.state.dpd
    loan.booked_through = booking.day
    loan.closed_through = booking.closed_through
    loan.next_action_date = booking.next_action
    loan.journal = booking.books
