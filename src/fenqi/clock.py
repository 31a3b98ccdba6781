"""The one place the shell reads the clock: business days are China's (Asia/Shanghai), whatever
the machine's own time zone. The domain and the services are always told the day.

``FENQI_TODAY`` (YYYY-MM-DD) replaces today for simulations, demos and tests: every entry point
(the CLI, the API, the pages, the batch) asks this module, so the override holds everywhere. On
the overridden day the wall clock keeps its time of day.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from zoneinfo import ZoneInfo

from fenqi.domain.errors import InputError

CHINA = ZoneInfo("Asia/Shanghai")
TODAY_VARIABLE = "FENQI_TODAY"


class ClockError(InputError):
    """``FENQI_TODAY`` is set to something that is not a date."""


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
    try:
        day = date.fromisoformat(given)
    except ValueError:
        raise ClockError(
            f'{TODAY_VARIABLE}="{given}" is not a date; write YYYY-MM-DD, or unset it'
        ) from None
    if len(given) != len("YYYY-MM-DD"):
        raise ClockError(f'{TODAY_VARIABLE}="{given}" is not a date; write YYYY-MM-DD')
    return datetime.combine(day, moment.timetz())
