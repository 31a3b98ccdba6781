"""What a correction that reaches back does to a loan as of today
(docs/domain.md#corrections-that-reach-back: a correction reaching back changes DPD and penalty
from its effective day, and the next batch acts on the corrected state).

A reversal can reopen a plan the borrower thought settled, or make a plan that was current
overdue, with penalty interest running since a day long past. Such a correction is shown to the
operator with its consequences and done only once confirmed; ``consequences`` compares the loan
as of the same day without and with it.
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from fenqi.domain.loan import LoanState, LoanStatus
from fenqi.domain.money import Money


class Consequences(NamedTuple):
    """The loan on ``as_of`` before and after a correction."""

    as_of: date
    status_before: LoanStatus
    status_after: LoanStatus
    dpd_before: int
    dpd: int  # after
    penalty: Money  # penalty interest owed after
    amount_due: Money  # what is owed now after

    @property
    def reopens(self) -> bool:
        """A settled plan owes something again (cancelled by a full return, it owes nothing)."""
        owing = (LoanStatus.ACTIVE, LoanStatus.OVERDUE)
        return self.status_before is LoanStatus.SETTLED and self.status_after in owing

    @property
    def makes_overdue(self) -> bool:
        """A plan that was current (active, or settled) is now past due or accruing penalty."""
        current = self.status_before in (LoanStatus.ACTIVE, LoanStatus.SETTLED)
        return current and self.dpd_before == 0 and (self.dpd > 0 or self.penalty > 0)

    @property
    def needs_confirmation(self) -> bool:
        return self.reopens or self.makes_overdue


def consequences(before: LoanState, after: LoanState) -> Consequences:
    """What a correction changes: ``before`` and ``after`` are the loan on the same day without
    it and with it."""
    if before.as_of != after.as_of:
        raise ValueError(f"compare the loan on one day, not {before.as_of} and {after.as_of}")
    return Consequences(
        as_of=after.as_of,
        status_before=before.status,
        status_after=after.status,
        dpd_before=before.dpd,
        dpd=after.dpd,
        penalty=after.outstanding_penalty,
        amount_due=after.amount_due,
    )
