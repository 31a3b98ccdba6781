"""Domain values as the JSON documents the store keeps, and back.

Money is an integer count of fen; rates are exact fractions written "numerator/denominator";
dates are ISO 8601. A stored document always reads back as the value that was written.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from enum import Enum
from fractions import Fraction
from typing import Any, get_type_hints

from fenqi.domain.calendar import FirstPeriod
from fenqi.domain.events import (
    CreditRefund,
    DebitFailed,
    Event,
    Payment,
    Prepayment,
    Refund,
    Reversal,
    Waiver,
    WriteOff,
)
from fenqi.domain.money import Money
from fenqi.domain.schedule import DayCount, Method, Terms

Document = dict[str, Any]


def terms_document(terms: Terms) -> Document:
    return {
        "principal": int(terms.principal),
        "periods": terms.periods,
        "method": terms.method.value,
        "start": terms.start.isoformat(),
        "annual_rate": str(terms.annual_rate),
        "fee_rate": str(terms.fee_rate),
        "fee_total_rate": None if terms.fee_total_rate is None else str(terms.fee_total_rate),
        "upfront_fee": int(terms.upfront_fee),
        "day_count": terms.day_count.value,
        "repayment_day": terms.repayment_day,
        "first_period": terms.first_period.value,
        "remainder_first": terms.remainder_first,
    }


def terms_from(document: Document) -> Terms:
    total = document["fee_total_rate"]
    return Terms(
        principal=Money(document["principal"]),
        periods=document["periods"],
        method=Method(document["method"]),
        start=date.fromisoformat(document["start"]),
        annual_rate=Fraction(document["annual_rate"]),
        fee_rate=Fraction(document["fee_rate"]),
        fee_total_rate=None if total is None else Fraction(total),
        upfront_fee=Money(document["upfront_fee"]),
        day_count=DayCount(document["day_count"]),
        repayment_day=document["repayment_day"],
        first_period=FirstPeriod(document["first_period"]),
        remainder_first=document["remainder_first"],
    )


_KINDS: dict[str, type[Event]] = {
    "payment": Payment,
    "prepayment": Prepayment,
    "reversal": Reversal,
    "refund": Refund,
    "waiver": Waiver,
    "credit_refund": CreditRefund,
    "debit_failed": DebitFailed,
    "write_off": WriteOff,
}
_KIND_OF = {kind: name for name, kind in _KINDS.items()}
_HINTS = {kind: get_type_hints(shape) for kind, shape in _KINDS.items()}
_COLUMNS = ("seq", "effective")  # kept in columns of their own, not in the payload


def event_document(event: Event) -> tuple[str, Document]:
    """The event's kind and its payload: every field but the seq and the effective date."""
    payload = {
        item.name: _encode(getattr(event, item.name))
        for item in fields(event)
        if item.name not in _COLUMNS
    }
    return _KIND_OF[type(event)], payload


def event_from(kind: str, seq: int, effective: date, payload: Document) -> Event:
    """An event from its stored columns."""
    try:
        shape = _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown event kind {kind!r} in the store") from None
    hints = _HINTS[kind]
    values = {name: _decode(hints[name], value) for name, value in payload.items()}
    return shape(seq=seq, effective=effective, **values)  # type: ignore[arg-type]


def _encode(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Money):
        return int(value)
    return value


def _decode(kind: Any, value: Any) -> object:
    if kind is Money:
        return Money(value)
    if kind is date:
        return date.fromisoformat(value)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    return value
