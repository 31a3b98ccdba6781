"""The one place the shell reads the clock: business days are China's (Asia/Shanghai), whatever
the machine's own time zone. The domain and the services are always told the day."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


def today() -> date:
    """Today's date in China: a payment made at 00:30 in Beijing counts on that day."""
    return datetime.now(CHINA).date()
