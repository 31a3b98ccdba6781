"""The shell's clock: China's day, or the day ``FENQI_TODAY`` names for simulations and demos."""

from datetime import date

import pytest

from fenqi import clock
from fenqi.domain.errors import InputError
from fenqi.settings import SettingError, check


def test_fenqi_today_replaces_the_day_and_keeps_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.TODAY_VARIABLE, "2026-04-15")
    assert clock.today() == date(2026, 4, 15)
    assert clock.now().date() == date(2026, 4, 15)
    assert clock.now().tzinfo is clock.CHINA


def test_without_the_override_today_is_chinas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.TODAY_VARIABLE, raising=False)
    assert clock.today() == clock.now().date()


@pytest.mark.parametrize("text", ["2026-13-01", "tomorrow", "20260415", "2026-04-15T10:00"])
def test_an_override_that_is_not_a_date_is_refused(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(clock.TODAY_VARIABLE, text)
    with pytest.raises(clock.ClockError, match="YYYY-MM-DD"):
        clock.today()


@pytest.mark.parametrize("text", ["9999-12-31", "0001-01-01", "1999-12-31", "3000-01-01"])
def test_an_override_outside_2000_to_2999_is_refused(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """A day near either end of the calendar would make the days computed from it (a due date,
    a window back from today) run off it."""
    monkeypatch.setenv(clock.TODAY_VARIABLE, text)
    with pytest.raises(clock.ClockError, match="from 2000-01-01 to 2999-12-31"):
        clock.today()


@pytest.mark.parametrize("text", ["2000-01-01", "2999-12-31"])
def test_the_first_and_last_days_of_the_range_are_taken(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(clock.TODAY_VARIABLE, text)
    assert clock.today() == date.fromisoformat(text)


def test_a_bad_override_is_the_operators_setting_not_the_clients_input() -> None:
    """Not an InputError: no entry point may answer it as the fault of whoever asked."""
    assert issubclass(clock.ClockError, SettingError)
    assert not issubclass(clock.ClockError, InputError | ValueError)


def test_checking_the_settings_refuses_a_bad_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.TODAY_VARIABLE, "2026-13-01")
    with pytest.raises(clock.ClockError, match="FENQI_TODAY"):
        check()
