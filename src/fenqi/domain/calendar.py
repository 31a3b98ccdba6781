"""Due dates and day counts.

Monthly due dates keep the anchor day of month; a month without that day uses its last day, and
the next month goes back to the anchor (Jan 31 -> Feb 28/29 -> Mar 31, never Mar 28). A product
may fix a repayment day instead; the first period is then short or long
(docs/domain.md#due-dates-and-day-counts).
"""

from __future__ import annotations

from calendar import monthrange
from datetime import date
from enum import StrEnum
from functools import lru_cache

from fenqi.domain.errors import InputError


class FirstPeriod(StrEnum):
    """Where a fixed repayment day puts the first due date."""

    SHORT = "short"  # the repayment day before one month after the start
    LONG = "long"  # the repayment day on or after one month after the start


class CalendarError(InputError):
    """A date rule that cannot give due dates."""


def add_months(anchor: date, months: int, day: int | None = None) -> date:
    """The date ``months`` after ``anchor`` on ``day`` (default: the anchor's day), clamped to
    the month's last day."""
    month_index = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(month_index, 12)
    wanted = anchor.day if day is None else day
    return date(year, month + 1, min(wanted, monthrange(year, month + 1)[1]))


@lru_cache(maxsize=4096)
def due_dates(
    start: date,
    periods: int,
    repayment_day: int | None = None,
    first_period: FirstPeriod = FirstPeriod.SHORT,
) -> tuple[date, ...]:
    """The monthly due dates of a plan of ``periods`` starting on ``start``.

    Without a repayment day the plan is regular: due k months after the start. With one, the
    first due date is that day of month before (short) or on/after (long) one month after the
    start, and each later one a month after the first.
    """
    if periods < 1:
        raise CalendarError(f"a plan needs 1 or more periods, not {periods}")
    if repayment_day is None:
        return tuple(add_months(start, k) for k in range(1, periods + 1))
    if not 1 <= repayment_day <= 31:
        raise CalendarError(f"repayment day {repayment_day} is not a day of month (1-31)")
    first = _first_due(start, repayment_day, first_period)
    offset = first.year * 12 + first.month - (start.year * 12 + start.month)
    return tuple(add_months(start, offset + k, repayment_day) for k in range(periods))


def _first_due(start: date, repayment_day: int, first_period: FirstPeriod) -> date:
    one_month = add_months(start, 1)
    this, following, after = (add_months(start, m, repayment_day) for m in (0, 1, 2))
    if following == one_month:
        return following
    if first_period is FirstPeriod.LONG:
        return following if following > one_month else after
    if following < one_month:
        return following
    # Only a start on the month's last day can make this month's repayment day the start itself.
    return this if this > start else following


def is_regular(start: date, dues: tuple[date, ...]) -> bool:
    """Whether every period is one whole calendar month (the first included)."""
    return bool(dues) and dues[0] == add_months(start, 1)


def actual_days(start: date, end: date) -> int:
    """Days from ``start`` to ``end``: the first day counts, the last does not."""
    return (end - start).days


def days_30e_360(start: date, end: date) -> int:
    """Days on the 30E/360 convention: every month has 30 days, the 31st counts as the 30th."""
    d1, d2 = min(start.day, 30), min(end.day, 30)
    return 360 * (end.year - start.year) + 30 * (end.month - start.month) + d2 - d1
