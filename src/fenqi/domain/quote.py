"""A quote: the schedule of a plan with the full cost the borrower must be shown, within its cap."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from fenqi.domain.apr import Apr, apr
from fenqi.domain.errors import InputError
from fenqi.domain.money import Money
from fenqi.domain.rates import Rate, format_percent
from fenqi.domain.schedule import Schedule, Terms, schedule


class OverCapError(InputError):
    """A plan whose compounded APR is over its cap; ``excess`` is by how much."""

    def __init__(self, apr_compound: Rate, cap: Rate) -> None:
        self.excess = apr_compound - cap
        points = f"{format_percent(self.excess)[:-1]} percentage points"
        super().__init__(
            f"APR {format_percent(apr_compound)} (compounded) is over the cap of "
            f"{format_percent(cap)} by {points}; accepted: plans at or under the cap"
        )


@dataclass(frozen=True, slots=True)
class Quote:
    """What a borrower is offered: every installment, what it all costs, and the APR."""

    schedule: Schedule
    apr: Apr
    cap: Rate
    product: str | None = None

    @property
    def terms(self) -> Terms:
        return self.schedule.terms

    @property
    def total_cost(self) -> Money:
        """Everything paid beyond the principal: interest, fees and any upfront fee."""
        plan = self.schedule
        return Money(plan.total_interest + plan.total_fee + plan.terms.upfront_fee)


def quote(terms: Terms, cap: Rate, product: str | None = None) -> Quote:
    """Quote ``terms``; refused with ``OverCapError`` when the compounded APR is over ``cap``."""
    plan = schedule(terms)
    rate = apr(plan)
    if rate.compound > cap:
        raise OverCapError(rate.compound, cap)
    return Quote(plan, rate, Fraction(cap), product)
