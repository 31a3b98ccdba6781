"""Exact rates: parsed from "12%" or "0.12" (the same thing) into a ``Fraction``, never a float.

A monthly rate of 12%/12 is not a finite decimal for every annual rate, so rates are kept as exact
fractions and only rounded when shown.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from fenqi.domain.errors import InputError

Rate = Fraction

_RATE = re.compile(r"^(?P<number>\d+(?:\.\d+)?|\.\d+)(?P<percent>%?)$", re.ASCII)
_ACCEPTED = 'rates are a percentage or a decimal fraction, e.g. "12%" or "0.12"'


class RateError(InputError):
    """Text that is not an exact, non-negative rate."""


def parse_rate(text: str | float) -> Rate:
    """Parse "12%", "0.6%", "0.12" or a TOML number such as 0.006 into an exact rate.

    A bare number of 1 or more is refused: "12" might mean 12% or 1200%, and a borrower's cost
    must never rest on a guess.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise RateError(f"{text!r} is not a rate; {_ACCEPTED}")
    # A TOML or JSON number is taken at the digits its author wrote (repr is the shortest exact
    # round trip), so 0.006 is 6/1000 and not the binary float's neighbour.
    literal = text.strip().replace(" ", "") if isinstance(text, str) else repr(text)
    match = _RATE.match(literal)
    if match is None:
        raise RateError(f'"{text}" is not a rate; {_ACCEPTED}')
    value = Fraction(Decimal(match["number"]))
    if match["percent"]:
        return value / 100
    if value >= 1:
        raise RateError(f'"{text}" is ambiguous; write "{literal}%" or a fraction below 1')
    return value


def format_rate(rate: Fraction, places: int = 6) -> str:
    """A decimal-fraction string, half up to ``places`` decimals: 3/25 -> "0.120000"."""
    return str(_decimal(rate, places))


def format_percent(rate: Fraction, places: int = 2) -> str:
    """A percentage, half up to ``places`` decimals: 3/25 -> "12.00%"."""
    return f"{_decimal(rate * 100, places)}%"


def _decimal(value: Fraction, places: int) -> Decimal:
    numerator, denominator = abs(value.numerator) * 10**places, value.denominator
    units = (2 * numerator + denominator) // (2 * denominator)
    return Decimal(units if value >= 0 else -units).scaleb(-places)
