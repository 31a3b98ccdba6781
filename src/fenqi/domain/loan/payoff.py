"""Payoff quotes: what paying the whole plan off on a day costs, and how long that holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import NamedTuple

from fenqi.domain.events import Channel, Event, Prepayment, PrepayMode
from fenqi.domain.loan.checkpoint import Checkpoint
from fenqi.domain.loan.fold import run
from fenqi.domain.loan.state import NO_PAYOFF, PayoffBreakdown
from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import Terms

VALID_DAYS_AT_MOST = 31  # a payoff quote is never said to hold longer than a month
_UNLIMITED = Money(10**15)  # more than any plan can owe: the probe's surplus is discarded


class PayoffQuote(NamedTuple):
    """What paying the plan off on ``day`` costs, and through which day that amount holds."""

    day: date
    breakdown: PayoffBreakdown
    valid_through: date

    @property
    def amount(self) -> Money:
        return self.breakdown.amount


def payoff_on(
    terms: Terms,
    policy: Product,
    events: Sequence[Event],
    day: date,
    cap: Rate | None = None,
    *,
    since: Checkpoint | None = None,
) -> PayoffBreakdown:
    """What a full prepayment on ``day`` would settle (from ``since``, if given, with the
    events after it).

    It is worked out by the very fold that applies a real payoff (a probe prepayment of more than
    any plan can owe), so the quote and the payoff agree to the fen.
    """
    last = 0 if since is None else since.seq
    seq = max((event.seq for event in events), default=last) + 1
    probe = Prepayment(seq, day, _UNLIMITED, Channel.MANUAL, PrepayMode.REDUCE_INSTALLMENT, True)
    loan = run(terms, policy, [*events, probe], day, cap, since=since)
    return loan.payoffs.get(seq, NO_PAYOFF)


def payoff_quote(
    terms: Terms, policy: Product, events: Sequence[Event], day: date, cap: Rate | None = None
) -> PayoffQuote:
    """A payoff quote: its amount and breakdown on ``day``, valid through the last day before the
    amount changes (interest accrues daily, or the period turns), at most a month."""
    breakdown = payoff_on(terms, policy, events, day, cap)
    valid_through = day
    for days in range(1, VALID_DAYS_AT_MOST):
        later = day + timedelta(days=days)
        if payoff_on(terms, policy, events, later, cap).amount != breakdown.amount:
            break
        valid_through = later
    return PayoffQuote(day, breakdown, valid_through)
