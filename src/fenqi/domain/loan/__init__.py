"""A loan as a pure fold over its dated events, split by concern.

- ``state``: what a replay hands out (``LoanState``, ``InstallmentState``, …), immutable;
- ``working``: the installments and balances one replay works on, mutable inside it only;
- ``fold``: the driver: ``replay``, time passing between events, one handler per event kind;
- ``accrual``: penalty interest and late fees; ``allocation``: where money goes, and waivers;
- ``prepayment``: payoffs and partial prepayments; ``refund``: merchant and credit refunds;
- ``checkpoint``: the working state saved, so that a replay need not start from the beginning;
- ``payoff``: payoff quotes; ``snapshot``: the state a working loan shows on a day.

Outside the package, fenqi imports these names from the package itself, not from its modules.
"""

from fenqi.domain.loan.checkpoint import CHECKPOINT_VERSION, Checkpoint, resumable
from fenqi.domain.loan.fold import replay, replay_to_checkpoint
from fenqi.domain.loan.payoff import VALID_DAYS_AT_MOST, PayoffQuote, payoff_on, payoff_quote
from fenqi.domain.loan.refund import Payer, paying_back
from fenqi.domain.loan.state import (
    BUCKET_DAYS,
    LAST_BUCKET,
    Allocation,
    Applied,
    InstallmentState,
    InstallmentStatus,
    LoanState,
    LoanStatus,
    PayoffBreakdown,
    WrittenOff,
    bucket,
)

__all__ = [
    "BUCKET_DAYS",
    "CHECKPOINT_VERSION",
    "LAST_BUCKET",
    "VALID_DAYS_AT_MOST",
    "Allocation",
    "Applied",
    "Checkpoint",
    "InstallmentState",
    "InstallmentStatus",
    "LoanState",
    "LoanStatus",
    "Payer",
    "PayoffBreakdown",
    "PayoffQuote",
    "WrittenOff",
    "bucket",
    "paying_back",
    "payoff_on",
    "payoff_quote",
    "replay",
    "replay_to_checkpoint",
    "resumable",
]
