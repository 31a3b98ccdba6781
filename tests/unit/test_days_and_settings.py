"""The day rules (the window staff book in, the days anyone looks at) and the settings that feed
them, at the edges of the calendar too: a clear refusal, never an overflow."""

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fenqi import settings
from fenqi.domain.money import AMOUNT_AT_MOST, Money, MoneyError
from fenqi.services.days import DayError, booking_day, looking_day

TODAY = date(2026, 12, 1)


def test_staff_book_from_31_days_back_through_today() -> None:
    assert booking_day(None, TODAY, 31) == TODAY
    assert booking_day(TODAY - timedelta(days=31), TODAY, 31) == date(2026, 10, 31)
    with pytest.raises(DayError, match="over 31 days before today") as back:
        booking_day(TODAY - timedelta(days=32), TODAY, 31)
    assert back.value.field == "date"
    with pytest.raises(DayError, match="--date: 2026-12-02 is after today"):
        booking_day(TODAY + timedelta(days=1), TODAY, 31, field="--date")
    assert booking_day(TODAY, TODAY, 0) == TODAY


@given(st.dates(), st.dates(), st.integers(0, settings.BACKDATE_DAYS_AT_MOST))
def test_any_day_is_booked_or_refused_and_never_overflows(day: date, today: date,
                                                          back: int) -> None:  # fmt: skip
    if today - timedelta(days=min(back, (today - date.min).days)) <= day <= today:
        assert booking_day(day, today, back) == day
    else:
        with pytest.raises(DayError):
            booking_day(day, today, back)


@given(st.dates(), st.dates())
def test_any_day_to_look_at_is_within_a_century_or_refused(day: date, today: date) -> None:
    if abs((day - today).days) <= 365 * 100:
        assert looking_day(day, today) == day
    else:
        with pytest.raises(DayError, match="too far from today"):
            looking_day(day, today)


def test_the_ends_of_the_calendar_are_refused_plainly() -> None:
    for far in (date.max, date.min):
        with pytest.raises(DayError):
            looking_day(far, TODAY)
        with pytest.raises(DayError):
            booking_day(far, TODAY, 31)
    assert looking_day(date(2027, 6, 1), TODAY) == date(2027, 6, 1)  # a quote may look ahead


def test_simulation_mode_is_one_or_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.SIMULATION_VARIABLE, raising=False)
    assert settings.simulation(True) is True
    assert settings.simulation(False) is False
    for given_, expected in (("1", True), ("0", False), (" 1 ", True)):
        monkeypatch.setenv(settings.SIMULATION_VARIABLE, given_)
        assert settings.simulation(not expected) is expected
    monkeypatch.setenv(settings.SIMULATION_VARIABLE, "yes")
    with pytest.raises(settings.SettingError, match="is not 1 or 0"):
        settings.simulation(False)


def test_the_backdating_window_is_a_number_of_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.BACKDATE_VARIABLE, raising=False)
    assert settings.backdate_days() == 31
    monkeypatch.setenv(settings.BACKDATE_VARIABLE, "7")
    assert settings.backdate_days() == 7
    for wrong in ("-1", "٣", "1e3", "99999"):
        monkeypatch.setenv(settings.BACKDATE_VARIABLE, wrong)
        with pytest.raises(settings.SettingError, match="FENQI_BACKDATE_DAYS"):
            settings.backdate_days()


def test_what_a_person_enters_is_capped_like_the_api() -> None:
    assert Money.parse("999,999,999,999.99", at_most=AMOUNT_AT_MOST) == AMOUNT_AT_MOST
    for beyond in ("1000000000000", "99999999999999999999999"):
        with pytest.raises(MoneyError, match="the most an amount may be"):
            Money.parse(beyond, at_most=AMOUNT_AT_MOST)
    with pytest.raises(MoneyError):
        Money.parse("١٢", at_most=AMOUNT_AT_MOST)  # amounts are ASCII digits
