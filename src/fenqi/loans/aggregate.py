"""The ``Loan`` aggregate: one loan's contract (terms, product, APR cap), its events, and the
summary its store keeps (status, watermarks, next action date, version), read and saved whole.

Every change to a loan is a ``Booking`` (``fenqi.loans.booking``) saved through the ``Loans``
port, which refuses it when the loan's version moved since the loan was read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fenqi.domain.events import Event
from fenqi.domain.ledger import Balances
from fenqi.domain.loan import Checkpoint, LoanState, LoanStatus, payoff_on, replay_to_checkpoint
from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import Terms

MAX_ID = 2**31 - 1  # ids are 32-bit integers: a longer number names no loan, borrower or event


@dataclass
class Loan:
    """A loan as read: its contract, its events and its stored summary. Read by the batch with
    its checkpoint ``since``, ``events`` are those recorded after it; ``journal`` is what its
    journal adds up to, when its store knows without adding the postings up."""

    id: int
    borrower_id: int
    order_id: str
    merchant: str
    item: str | None
    product_code: str
    terms: Terms
    policy: Product
    definition: Mapping[str, Any]  # the product as stored with the loan at checkout
    cap: Rate | None  # the APR cap on the contract date, which penalty stays under
    events: list[Event]
    status: LoanStatus
    outstanding_principal: int  # fen, as last saved
    dpd: int
    version: int
    opened: date
    booked_through: date  # the day its books reach
    closed_through: date | None  # the last business day the batch closed for it
    next_action_date: date | None  # the batch's next day of work on it (None: never)
    since: Checkpoint | None = None
    journal: Balances | None = None
    _replayed: dict[tuple[int, date], tuple[LoanState, Checkpoint | None]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _payoffs: dict[tuple[int, date], Money] = field(default_factory=dict, repr=False, compare=False)

    @property
    def next_seq(self) -> int:
        last = 0 if self.since is None else self.since.seq
        return max((event.seq for event in self.events), default=last) + 1

    def booking_day(self, effective: date) -> date:
        """The day an event effective on ``effective`` is booked on: its own, or the day the
        loan's books already reach if it is backdated."""
        return max(effective, self.booked_through)

    def state_on(self, day: date) -> LoanState:
        """The loan replayed to ``day`` with the events it has now; a unit of work asks more
        than once, and a replay is the costliest thing in it."""
        return self._replay(day)[0]

    def checkpoint_on(self, day: date) -> Checkpoint | None:
        """Where the next replay can start: the fold on ``day`` with the events it has now."""
        return self._replay(day)[1]

    def payoff_on(self, day: date) -> Money:
        """What paying the plan off on ``day`` costs, with the events it has now."""
        key = (len(self.events), day)
        if key not in self._payoffs:
            self._payoffs[key] = payoff_on(
                self.terms, self.policy, self.events, day, self.cap, since=self.since
            ).amount
        return self._payoffs[key]

    def state_with(self, event: Event, day: date) -> LoanState:
        """The loan replayed to ``day`` as it would be with ``event`` too, which is not kept:
        what a change would do, shown before it is asked for."""
        return replay_to_checkpoint(
            self.terms, self.policy, [*self.events, event], day, self.cap, since=self.since
        )[0]

    def _replay(self, day: date) -> tuple[LoanState, Checkpoint | None]:
        key = (len(self.events), day)
        if key not in self._replayed:
            self._replayed[key] = replay_to_checkpoint(
                self.terms, self.policy, self.events, day, self.cap, since=self.since
            )
        return self._replayed[key]
