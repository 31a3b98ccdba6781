"""What can happen to a loan after checkout: dated events, appended and never changed.

Each event has an effective date (when it counts) and a sequence number within its loan (the order
in which it was recorded); the store keeps the booked time. A correction is another event: a
reversal voids a payment, a waiver forgives a penalty or fee. A write-off is recorded too: the
batch's act on the day it runs, never something a replay works out for itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from fenqi.domain.money import Money


class Channel(StrEnum):
    """Where money comes from or goes back to; each has its own cash clearing account."""

    BANK_CARD = "bank_card"
    ALIPAY = "alipay"
    WECHAT = "wechat"
    MANUAL = "manual"


class PrepayMode(StrEnum):
    """What a partial prepayment does to the rest of the plan
    (docs/domain.md#partial-prepayment)."""

    REDUCE_INSTALLMENT = "reduce-installment"  # same periods, smaller payments
    SHORTEN_TERM = "shorten-term"  # same payment, fewer periods


class WaiverKind(StrEnum):
    PENALTY = "penalty"
    FEE = "fee"


@dataclass(frozen=True, slots=True)
class Payment:
    """Money received from the borrower, allocated by the product's rules."""

    seq: int
    effective: date
    amount: Money
    channel: Channel


@dataclass(frozen=True, slots=True)
class Prepayment:
    """Money received to repay principal early: ``full`` pays the plan off; otherwise what is
    left after what is owed and the interest to date reduces the principal, and ``mode`` says how
    the rest of the plan changes."""

    seq: int
    effective: date
    amount: Money
    channel: Channel
    mode: PrepayMode
    full: bool


@dataclass(frozen=True, slots=True)
class Reversal:
    """A payment or prepayment taken back as a mistake: from ``effective`` on it never happened."""

    seq: int
    effective: date
    payment_seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Refund:
    """The merchant refunds ``amount`` of the price of returned goods. The plan is re-priced on
    the lower principal (in full: cancelled); what the borrower paid beyond the new plan, once
    anything past due is paid, goes back to her: with ``to_credit``, it stays her credit balance,
    which credit refunds then pay back to the methods the money came from; without it (refunds
    recorded before that), it went through ``channel`` at once."""

    seq: int
    effective: date
    amount: Money
    channel: Channel
    to_credit: bool = False


@dataclass(frozen=True, slots=True)
class Waiver:
    """An operator forgives up to ``amount`` of penalty or fee still owed, oldest first."""

    seq: int
    effective: date
    kind: WaiverKind
    amount: Money
    reason: str


@dataclass(frozen=True, slots=True)
class CreditRefund:
    """Up to ``amount`` of the borrower's credit balance (what she paid beyond what she owed)
    paid back to her through ``channel``: to the bound method ``method_id`` (None: by hand, or,
    in events recorded before it was kept, the method that was her default then)."""

    seq: int
    effective: date
    amount: Money
    channel: Channel
    method_id: int | None = None


@dataclass(frozen=True, slots=True)
class DebitFailed:
    """An auto-debit of the installment due on ``due_date`` that the channel declined: attempt
    ``attempt`` (1 on the due date, then the product's retries). It moves no money; it is kept so
    that retries and reports know what was tried."""

    seq: int
    effective: date
    due_date: date
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class WriteOff:
    """The loan taken off the books (核销) on ``effective``: what it owes that day becomes a loss,
    no more interest or penalty accrues, and money received afterwards is a recovery. Only the
    nightly batch records one, on the day it runs, once the loan's DPD has reached the product's
    write-off DPD (or an admin does); a replay never infers one."""

    seq: int
    effective: date
    reason: str


Event = Payment | Prepayment | Reversal | Refund | Waiver | CreditRefund | DebitFailed | WriteOff
MoneyIn = Payment | Prepayment
