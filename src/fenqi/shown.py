"""How amounts, rates and moments are written for people, the same on every surface (the
command line, the borrower's page, the console): amounts grouped by thousands (637,845.31), an
APR in percent to two places (12.68%), a product's rate in percent to the last digit it has
(0.05%), and a moment in Beijing time. Documents (``--json``, the API) keep the plain forms:
``"637845.31"``, ``"0.126826"`` and ISO 8601 in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from fenqi.clock import CHINA
from fenqi.domain.rates import format_percent

_AMOUNT = re.compile(r"-?[0-9]+\.[0-9]{2}", re.ASCII)  # as a document writes money
_RATE = re.compile(r"[0-9]+\.[0-9]{6}", re.ASCII)  # and a rate (a cap may be "4xLPR", "24.00%")
# Keys whose text is a person's or a partner's, never re-written even when it looks like money.
_FREE_TEXT = frozenset({"order_id", "merchant", "item", "name", "reason", "memo", "references"})


def grouped(amount: str) -> str:
    """``"637845.31"`` → ``"637,845.31"``: an amount as a document writes it, for reading."""
    return f"{Decimal(amount):,.2f}"


def readable(text: str) -> str:
    """Text a sentence or a cell takes from a document: an amount grouped, anything else as it
    is (a day, a masked account)."""
    return grouped(text) if _AMOUNT.fullmatch(text) else text


def masked_phone(phone: str) -> str:
    """``"13900139000"`` → ``"139****9000"``: a phone in a list, enough to tell one caller from
    another by its last 4 digits (a borrower's own page shows it whole)."""
    return phone[:-8] + "****" + phone[-4:] if len(phone) >= 11 else phone


def yuan(amount: str) -> str:
    """``"10000.00"`` → ``"¥10,000.00"``."""
    text = grouped(amount)
    return f"-¥{text[1:]}" if text.startswith("-") else f"¥{text}"


def apr(rate: str) -> str:
    """``"0.126826"`` → ``"12.68%"``: an APR (or its cap), half up to two places, as a quote
    shows it."""
    return format_percent(Fraction(Decimal(rate)))


def percent(rate: str) -> str:
    """``"0.000500"`` → ``"0.05%"``, ``"0.120001"`` → ``"12.0001%"``: a product's rate in percent,
    every digit it has and at least two places."""
    value = (Decimal(rate) * 100).normalize()
    places = max(2, -value.as_tuple().exponent)  # type: ignore[operator]  # never NaN here
    return f"{value:.{places}f}%"


def beijing(moment: str | None) -> str:
    """A stored moment (ISO 8601; one without an offset is UTC) in Beijing time, to the
    second."""
    if not moment:
        return ""
    parsed = datetime.fromisoformat(moment)
    aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return aware.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def value(key: str, text: str) -> str:
    """A document's text value under ``key`` as people read it: an APR (``apr_*``) or a rate
    (``*rate``) in percent, a moment (``*_at``) in Beijing time, an amount grouped; ids and
    free text as they are."""
    if key in _FREE_TEXT or key == "id" or key.endswith("_id"):
        return text
    if _RATE.fullmatch(text) and key.startswith("apr"):
        return apr(text)
    if _RATE.fullmatch(text) and key.endswith("rate"):
        return percent(text)
    if key.endswith("_at"):
        return beijing(text)
    return readable(text)


def document(values: Mapping[str, object]) -> dict[str, object]:
    """A document's plain values as people read them (``value``), for a sentence to fill in."""
    return {key: value(key, item) if isinstance(item, str) else item
            for key, item in values.items()}  # fmt: skip
