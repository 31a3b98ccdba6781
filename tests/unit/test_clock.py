"""The shell's clock: China's day, or the day ``FENQI_TODAY`` names for simulations and demos."""

from datetime import date

import pytest

from fenqi import clock


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
