"""The fold's dispatch: one handler for each kind of event, and none passed by in silence."""

from dataclasses import dataclass
from datetime import date
from typing import get_args

import pytest

from fenqi.domain.events import Event
from fenqi.domain.loan import replay
from fenqi.domain.loan.fold import HANDLERS
from fenqi.domain.products import Product
from tests.plans import START, plan


def test_every_kind_of_event_has_a_handler() -> None:
    """Read from the ``Event`` union itself, so that a kind added there fails here until the
    fold handles it."""
    kinds = set(get_args(Event))
    assert len(kinds) >= 8
    assert kinds == set(HANDLERS)


def test_an_event_without_a_handler_stops_the_replay_and_names_its_kind() -> None:
    @dataclass(frozen=True)
    class Restructuring:
        seq: int
        effective: date

    terms = plan("equal-installment", "10000", 12, rate="12%")
    cash = Product(code="cash", name="cash", method=terms.method, periods=(12,))
    with pytest.raises(AssertionError, match="no handler for Restructuring"):
        replay(terms, cash, [Restructuring(1, START)], START)  # type: ignore[list-item]
