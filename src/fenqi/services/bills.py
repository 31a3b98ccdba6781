"""Bills kept in the process (a read model): each plan's bill as last shown, for the version the
plan was at and the day it was shown on, so that a repeat view (a borrower opening her bills
again) costs one indexed lookup of the plan's owner and version rather than a replay.

A kept bill is served only for the very version and day it was made for: every write to a plan
(a payment, a reversal, a refund, the batch's accrual) moves its version on, and a new day is
another key, so a kept bill is never a stale one; nothing has to be told to forget anything.
Who may see the plan is checked on every view, before anything kept is looked at.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar, cast

T = TypeVar("T")
Render = Callable[[Any], T]
KEPT_PLANS = 4096  # about 5 KB a 12-period plan's bill: some 20 MB at most


class KeptBills:
    """The bills last shown, one per plan and way of showing it (``render``, a function of the
    module that shows it: a bill is kept under the function itself), the least recently shown
    forgotten first beyond ``plans``. Safe to share between threads."""

    def __init__(self, plans: int = KEPT_PLANS) -> None:
        self.plans = plans
        self._kept: OrderedDict[tuple[object, int], tuple[int, date, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, render: Render[T], loan_id: int, version: int, day: date) -> T | None:
        """The bill ``render`` made of the plan at ``version`` on ``day``, if it is kept."""
        key = (render, loan_id)
        with self._lock:
            kept = self._kept.get(key)
            if kept is None or kept[0] != version or kept[1] != day:
                return None
            self._kept.move_to_end(key)
            return cast(T, kept[2])

    def keep(self, render: Render[T], loan_id: int, version: int, day: date, shown: T) -> None:
        """Keeps what ``render`` made of the plan at ``version`` on ``day`` in place of what was
        kept for it, unless that is of a later version already (a slower reader's)."""
        key = (render, loan_id)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] > version:
                return
            self._kept[key] = (version, day, shown)
            self._kept.move_to_end(key)
            while len(self._kept) > self.plans:
                self._kept.popitem(last=False)

    def __len__(self) -> int:
        return len(self._kept)
