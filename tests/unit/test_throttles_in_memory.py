"""The throttles' rules over counters kept in memory (``tests.memory``): windows, refusals and
what is given back. That a hundred tries at once are all counted is the database's to show
(tests/integration/test_sign_in.py)."""

from datetime import UTC, datetime, timedelta

import pytest

from fenqi.services import throttles
from fenqi.services.throttles import Limit, TooManyAttemptsError
from tests.memory import MemoryUnits

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
THREE = Limit("test", 3, 60)


def test_a_limit_refuses_the_try_over_it_and_says_when_the_window_ends() -> None:
    units = MemoryUnits()
    for second in range(3):
        units(lambda unit, s=second: throttles.count(unit.counters, AT + timedelta(seconds=s),
                                                     [(THREE, "a")]))  # fmt: skip
    with pytest.raises(TooManyAttemptsError) as refused:
        units(lambda unit: throttles.count(unit.counters, AT + timedelta(seconds=20),
                                           [(THREE, "a")]))  # fmt: skip
    assert (refused.value.retry_after, refused.value.minutes) == (40, 1)
    # the refused try was undone with its unit of work; another subject has its own window
    assert units(lambda unit: throttles.within(unit.counters, AT, THREE, "b"))
    # a new window after the last one ended
    later = AT + timedelta(seconds=60)
    units(lambda unit: throttles.count(unit.counters, later, [(THREE, "a"), (THREE, None)]))


def test_a_try_that_succeeded_is_given_back() -> None:
    units = MemoryUnits()
    tries = [(THREE, "a")]

    def try_and_succeed(unit: object) -> None:
        throttles.count(unit.counters, AT, tries)  # type: ignore[attr-defined]
        throttles.give_back(unit.counters, tries)  # type: ignore[attr-defined]

    for _ in range(10):
        units(try_and_succeed)
    assert [hits for hits, _ in units.world.windows.values()] == [0]


def test_windows_long_over_are_pruned_and_keys_say_no_subject() -> None:
    units = MemoryUnits()
    units(lambda unit: throttles.within(unit.counters, AT, THREE, "13800138000"))
    assert "13800138000" not in "".join(units.world.windows)  # kept as a hash only
    units(lambda unit: throttles.prune(unit.counters, AT + throttles.PRUNE_AFTER))
    assert len(units.world.windows) == 1
    units(lambda unit: throttles.prune(unit.counters, AT + throttles.PRUNE_AFTER
                                       + timedelta(seconds=1)))  # fmt: skip
    assert units.world.windows == {}
