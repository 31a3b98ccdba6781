"""Which days a person may name: the one rule for the days staff book on, and the one for the days
anyone looks at a loan on. The command line, the API and the console call these with today; the
other services take any day, so that tests, the batch and the seeding can replay history.
"""

from __future__ import annotations

from datetime import date, timedelta

from fenqi.services.quoting import FieldError

# A day to look at (a loan as of, a payoff quote) lies within this many years of today: enough
# for any plan, and far from the ends of the calendar, where adding a day to it would fail.
LOOKING_YEARS = 100


class DayError(FieldError):
    """A day outside the window its field allows; the message names the field and the window."""


def booking_day(day: date | None, today: date, back_days: int, *, field: str = "date") -> date:
    """The day staff book money or a correction on: ``day`` (today when not given), never after
    today and at most ``back_days`` before it. Money is booked on the day it arrived; a day
    further back would rewrite history the borrower has already been told, and a day ahead
    books money that has not come."""
    if day is None:
        return today
    earliest = _shifted(today, -back_days)
    window = f"staff book on a day from {earliest} to {today}"
    if day > today:
        raise DayError(field, f"{field}: {day} is after today ({today}); {window}").coded(
            "day-after-today", day=day, today=today, earliest=earliest
        )
    if day < earliest:
        raise DayError(
            field, f"{field}: {day} is over {back_days} days before today; {window}"
        ).coded("day-before-window", day=day, days=back_days, today=today, earliest=earliest)
    return day


def looking_day(day: date | None, today: date, *, field: str = "date") -> date:
    """A day to look at a loan on (``--as-of``, a payoff quote's day): today when not given; any
    day, past or future, within ``LOOKING_YEARS`` of today."""
    if day is None:
        return today
    earliest, latest = _shifted(today, -365 * LOOKING_YEARS), _shifted(today, 365 * LOOKING_YEARS)
    if not earliest <= day <= latest:
        raise DayError(field, f"{field}: {day} is too far from today ({today}); give a day "
                              f"from {earliest} to {latest}").coded(
            "day-too-far", day=day, today=today, earliest=earliest, latest=latest
        )  # fmt: skip
    return day


def _shifted(day: date, days: int) -> date:
    """``day`` moved by ``days``, held at the ends of the calendar rather than overflowing."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.min if days < 0 else date.max
