from datetime import date

import pytest

from fenqi.domain.calendar import (
    CalendarError,
    FirstPeriod,
    actual_days,
    add_months,
    days_30e_360,
    due_dates,
    is_regular,
)


def test_month_end_start_keeps_its_day_where_the_month_has_it() -> None:
    assert due_dates(date(2026, 1, 31), 4) == (
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
    )


def test_leap_february_gets_the_29th() -> None:
    assert due_dates(date(2024, 1, 31), 2) == (date(2024, 2, 29), date(2024, 3, 31))


def test_due_dates_cross_the_year() -> None:
    assert due_dates(date(2026, 11, 30), 3) == (
        date(2026, 12, 30),
        date(2027, 1, 30),
        date(2027, 2, 28),
    )


@pytest.mark.parametrize(
    ("start", "day", "first", "expected_first"),
    [
        (date(2026, 1, 20), 5, FirstPeriod.SHORT, date(2026, 2, 5)),  # 16 days
        (date(2026, 1, 20), 5, FirstPeriod.LONG, date(2026, 3, 5)),  # 44 days
        (date(2026, 1, 3), 5, FirstPeriod.SHORT, date(2026, 1, 5)),
        (date(2026, 1, 3), 5, FirstPeriod.LONG, date(2026, 2, 5)),
        (date(2026, 1, 15), 15, FirstPeriod.LONG, date(2026, 2, 15)),  # regular either way
        (date(2026, 4, 30), 31, FirstPeriod.SHORT, date(2026, 5, 31)),  # never on the start day
    ],
)
def test_a_fixed_repayment_day_makes_a_short_or_long_first_period(
    start: date, day: int, first: FirstPeriod, expected_first: date
) -> None:
    dues = due_dates(start, 3, day, first)
    assert dues[0] == expected_first
    assert dues == tuple(add_months(dues[0], k, day) for k in range(3))


def test_fixed_day_31_follows_the_month_end_rule() -> None:
    assert due_dates(date(2026, 1, 10), 3, 31, FirstPeriod.LONG) == (
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
    )


def test_regular_plans_are_told_apart_from_irregular_ones() -> None:
    start = date(2026, 1, 20)
    assert is_regular(start, due_dates(start, 3))
    assert not is_regular(start, due_dates(start, 3, 5))


def test_day_counts() -> None:
    assert actual_days(date(2026, 1, 15), date(2026, 4, 15)) == 90
    assert days_30e_360(date(2026, 1, 20), date(2026, 2, 5)) == 15
    assert days_30e_360(date(2026, 1, 31), date(2026, 2, 28)) == 28
    assert days_30e_360(date(2026, 1, 15), date(2026, 2, 15)) == 30


def test_bad_rules_are_refused() -> None:
    with pytest.raises(CalendarError, match="1 or more periods"):
        due_dates(date(2026, 1, 1), 0)
    with pytest.raises(CalendarError, match="day of month"):
        due_dates(date(2026, 1, 1), 3, 32)
