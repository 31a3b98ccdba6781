"""``credentials.now`` held still for a sign-in test, moved on by hand: the same moment in every
thread."""

from datetime import UTC, datetime, timedelta

import pytest

from fenqi.services import credentials

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.moment = START
        monkeypatch.setattr(credentials, "now", lambda: self.moment)

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)
