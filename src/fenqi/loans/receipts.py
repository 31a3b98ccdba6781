"""A numbered receipt (凭证) as a value, and the versioned document it is stored as.

A receipt is written once, when its payment is booked, and read for as long as the plan lasts:
its stored document says which layout it is in (``version``), so that a later layout can still
read the rows written before it. Rows written before receipts had a version are read as the
first layout, which has the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from fenqi.domain.events import Channel, Payment, Prepayment
from fenqi.domain.loan import Allocation, LoanState
from fenqi.domain.money import Money
from fenqi.domain.products import Component
from fenqi.loans.aggregate import Loan
from fenqi.loans.methods import PaymentMethod

RECEIPT_VERSION = 1
Kind = Literal["payment", "prepayment"]


@dataclass(frozen=True)
class MethodView:
    """A bound method as the borrower sees it: never its token."""

    id: int
    borrower_id: int
    kind: str  # bank_card | alipay | wechat
    masked_account: str
    default: bool
    status: str  # active | unbound

    @classmethod
    def of(cls, method: PaymentMethod) -> MethodView:
        return cls(method.id, method.borrower_id, method.kind, method.masked_account,
                   method.is_default, method.status)  # fmt: skip


@dataclass(frozen=True)
class AllocatedPart:
    """What part of a payment went to one component of one installment."""

    period: int
    component: Component
    amount: Money


@dataclass(frozen=True)
class Receipt:
    """What was paid, when, how, how it was applied, and what principal was left after it."""

    loan_id: int
    seq: int  # the payment's event number within its loan
    kind: Kind
    order_id: str
    merchant: str
    item: str | None
    date: date
    amount: Money
    channel: Channel
    method: MethodView | None  # the method as it was when it paid; None: by hand
    principal: Money
    interest: Money
    fee: Money
    penalty: Money
    to_credit: Money
    allocation: tuple[AllocatedPart, ...]
    outstanding_principal: Money
    issued_at: datetime

    @property
    def receipt_id(self) -> str:
        return f"R{self.loan_id}-{self.seq}"

    @property
    def payment_id(self) -> str:
        return f"P{self.loan_id}-{self.seq}"


def receipt_of(loan: Loan, state: LoanState, event: Payment | Prepayment,
               paid_with: PaymentMethod | None, issued: datetime) -> Receipt:  # fmt: skip
    """The receipt for ``event``, read from the loan's ``state`` after it."""
    allocation = state.allocations.get(event.seq, Allocation((), Money(0)))
    return Receipt(
        loan_id=loan.id, seq=event.seq,
        kind="prepayment" if isinstance(event, Prepayment) else "payment",
        order_id=loan.order_id, merchant=loan.merchant, item=loan.item,
        date=event.effective, amount=event.amount, channel=event.channel,
        method=None if paid_with is None else MethodView.of(paid_with),
        principal=allocation.total(Component.PRINCIPAL),
        interest=allocation.total(Component.INTEREST),
        fee=allocation.total(Component.FEE),
        penalty=allocation.total(Component.PENALTY),
        to_credit=allocation.to_credit,
        allocation=tuple(AllocatedPart(part.period, part.component, part.amount)
                         for part in allocation.applied),
        outstanding_principal=state.outstanding_principal,
        issued_at=issued,
    )  # fmt: skip


# -- the stored document --------------------------------------------------------------------------


def _yuan(amount: Money) -> str:
    return str(amount)


def _method(method: MethodView) -> dict[str, Any]:
    return {
        "id": method.id,
        "borrower_id": method.borrower_id,
        "kind": method.kind,
        "masked_account": method.masked_account,
        "default": method.default,
        "status": method.status,
    }


def stored(receipt: Receipt) -> dict[str, Any]:
    """The document a receipt is kept as (layout 1). It is the store's own: the API's shape of
    a receipt (``fenqi.wire``) may change without rewriting the rows kept."""
    return {
        "version": RECEIPT_VERSION,
        "id": receipt.receipt_id,
        "receipt_id": receipt.receipt_id,
        "payment_id": receipt.payment_id,
        "kind": receipt.kind,
        "loan_id": receipt.loan_id,
        "order_id": receipt.order_id,
        "merchant": receipt.merchant,
        "item": receipt.item,
        "date": receipt.date.isoformat(),
        "amount": _yuan(receipt.amount),
        "channel": receipt.channel.value,
        "method": None if receipt.method is None else _method(receipt.method),
        "principal": _yuan(receipt.principal),
        "interest": _yuan(receipt.interest),
        "fee": _yuan(receipt.fee),
        "penalty": _yuan(receipt.penalty),
        "to_credit": _yuan(receipt.to_credit),
        "allocation": [
            {"period": part.period, "component": part.component.value,
             "amount": _yuan(part.amount)}
            for part in receipt.allocation
        ],
        "outstanding_principal": _yuan(receipt.outstanding_principal),
        "issued_at": receipt.issued_at.isoformat(),
    }  # fmt: skip


class UnknownReceiptLayoutError(ValueError):
    """A stored receipt in a layout this version of fenqi does not know (a newer one's)."""


def parse_stored(document: Mapping[str, Any]) -> Receipt:
    """A stored receipt: version 1, or a row from before receipts had a version (the same
    keys). The loan and payment numbers are read from the receipt's id (``R12-3``)."""
    version = document.get("version", RECEIPT_VERSION)
    if version != RECEIPT_VERSION:
        raise UnknownReceiptLayoutError(f"receipt {document.get('id')} is in layout {version}; "
                                        f"this fenqi reads layout {RECEIPT_VERSION}")  # fmt: skip
    loan_id, seq = (int(number) for number in str(document["receipt_id"])[1:].split("-"))
    shown = document.get("method")
    return Receipt(
        loan_id=loan_id, seq=seq, kind=document["kind"], order_id=document["order_id"],
        merchant=document["merchant"], item=document.get("item"),
        date=date.fromisoformat(document["date"]), amount=_money(document["amount"]),
        channel=Channel(document["channel"]),
        method=None if shown is None else MethodView(
            shown["id"], shown["borrower_id"], shown["kind"], shown["masked_account"],
            shown["default"], shown["status"]),
        principal=_money(document["principal"]), interest=_money(document["interest"]),
        fee=_money(document["fee"]), penalty=_money(document["penalty"]),
        to_credit=_money(document["to_credit"]),
        allocation=tuple(AllocatedPart(part["period"], Component(part["component"]),
                                       _money(part["amount"]))
                         for part in document["allocation"]),
        outstanding_principal=_money(document["outstanding_principal"]),
        issued_at=datetime.fromisoformat(document["issued_at"]),
    )  # fmt: skip


def _money(text: str) -> Money:
    return Money.parse(text, allow_negative=True)
