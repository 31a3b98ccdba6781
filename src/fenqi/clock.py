"""The one place the shell reads the clock: business days are China's (Asia/Shanghai), whatever
the machine's own time zone. The domain and the services are always told the day.

``FENQI_TODAY`` (YYYY-MM-DD) replaces today for simulations, demos and tests: every entry point
(the CLI, the API, the pages, the batch) asks this module, so the override holds everywhere. On
the overridden day the wall clock keeps its time of day. It names a day of the years 2000 to
2999: no loan fenqi keeps is older, and a day near either end of the calendar (0001-01-01,
9999-12-31) would make the dates computed from it run off the calendar. Anything else is a
``SettingError``, the operator's to fix: every command and the service check it before they
start (``fenqi.settings.check``).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from fenqi.settings import SettingError

CHINA = ZoneInfo("Asia/Shanghai")
TODAY_VARIABLE = "FENQI_TODAY"
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)  # the days FENQI_TODAY may name
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


class ClockError(SettingError):
    """``FENQI_TODAY`` is set to something that is not a day from 2000 to 2999."""


def today() -> date:
    """Today's date in China: a payment made at 00:30 in Beijing counts on that day."""
    return now().date()


def simulated() -> bool:
    """Whether ``FENQI_TODAY`` replaces today: a simulation, a demo or a test is running."""
    return bool(os.environ.get(TODAY_VARIABLE, "").strip())


def now() -> datetime:
    """The time in China now (aware, Asia/Shanghai), on ``FENQI_TODAY`` when it is set."""
    moment = datetime.now(CHINA)
    given = os.environ.get(TODAY_VARIABLE, "").strip()
    if not given:
        return moment
    return datetime.combine(_overriding(given), moment.timetz())


def stamp() -> datetime:
    """The moment a row is written, in UTC: the wall clock's, whatever ``FENQI_TODAY`` says."""
    return datetime.now(UTC)


def _overriding(given: str) -> date:
    """The day ``FENQI_TODAY`` names: YYYY-MM-DD in ASCII digits (``fromisoformat`` alone would
    also read "20260415" and "2026-W16-3"), from 2000 to 2999."""
    accepted = f"write YYYY-MM-DD, a day from {EARLIEST} to {LATEST}, or unset it"
    try:
        day = date.fromisoformat(given) if _DAY.fullmatch(given) else None
    except ValueError:
        day = None
    if day is None:
        raise ClockError(f'{TODAY_VARIABLE}="{given}" is not a date; {accepted}')
    if not EARLIEST <= day <= LATEST:
        raise ClockError(f'{TODAY_VARIABLE}="{given}" is outside the years fenqi keeps; {accepted}')
    return day
