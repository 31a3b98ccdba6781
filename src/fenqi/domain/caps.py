"""Rate caps (docs/domain.md#rate-caps) and the dated one-year LPR table they may refer to.

A cap is either a fixed annual rate (default 24%, the regulators' line for licensed consumer
lenders) or a multiple of the one-year LPR on the contract date (4×LPR, the line courts enforce
for private lending). Caps apply to the compounded APR.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

from fenqi.domain.errors import InputError
from fenqi.domain.rates import Rate, RateError, format_percent, parse_rate
from fenqi.domain.reference import ReferenceDataError, parse_toml

_LPR_MULTIPLE = re.compile(r"^(?P<times>\d+(?:\.\d+)?)\s*[x×*]\s*LPR$", re.IGNORECASE | re.ASCII)


class CapError(InputError):
    """A cap or an LPR table that cannot be read, or a date the table does not cover."""


class LprFixing(NamedTuple):
    """The one-year LPR in force from ``effective`` until the next fixing."""

    effective: date
    one_year: Rate


@dataclass(frozen=True, slots=True)
class LprTable:
    """One-year LPR fixings, oldest first."""

    fixings: tuple[LprFixing, ...]

    def on(self, day: date) -> Rate:
        """The one-year LPR in force on ``day``."""
        index = bisect_right([fixing.effective for fixing in self.fixings], day)
        if index == 0:
            first = self.fixings[0].effective if self.fixings else None
            raise CapError(f"the LPR table starts on {first}; it has no rate for {day}")
        return self.fixings[index - 1].one_year


def parse_lpr_table(text: str) -> LprTable:
    """Read ``[[lpr]]`` tables with ``effective`` (a TOML date) and ``one_year`` (a rate)."""
    try:
        rows = parse_toml(text).get("lpr", [])
    except ReferenceDataError as error:
        raise CapError(f"LPR table: {error}") from None
    fixings = [_fixing(row) for row in rows]
    if not fixings:
        raise CapError("LPR table has no [[lpr]] entries")
    fixings.sort()
    return LprTable(tuple(fixings))


def _fixing(row: dict[str, object]) -> LprFixing:
    effective, rate = row.get("effective"), row.get("one_year")
    if not isinstance(effective, date) or not isinstance(rate, str | float | int):
        raise CapError(f"LPR entry {row!r} needs effective = YYYY-MM-DD and one_year = a rate")
    try:
        return LprFixing(effective, parse_rate(rate))
    except RateError as error:
        raise CapError(f"LPR entry for {effective}: {error}") from None


@dataclass(frozen=True, slots=True)
class Cap:
    """An APR cap: a fixed annual rate, or ``value`` times the one-year LPR on the contract day."""

    value: Fraction
    of_lpr: bool = False

    def on(self, day: date, lpr: LprTable) -> Rate:
        """The capped annual rate for a contract made on ``day``."""
        return self.value * lpr.on(day) if self.of_lpr else self.value

    def __str__(self) -> str:
        if self.of_lpr:
            return f"{Decimal(self.value.numerator) / self.value.denominator:f}×LPR"
        return format_percent(self.value)


def parse_cap(text: str | float) -> Cap:
    """A cap from "24%", "0.24" or "4xLPR"."""
    match = _LPR_MULTIPLE.match(text.strip()) if isinstance(text, str) else None
    if match:
        return Cap(Fraction(match["times"]), of_lpr=True)
    try:
        rate = parse_rate(text)
    except RateError:
        raise CapError(f'"{text}" is not a cap; give a rate such as "24%" or "4xLPR"') from None
    if rate <= 0:
        raise CapError(f'a cap of "{text}" would refuse every plan; give a rate above 0')
    return Cap(rate)


DEFAULT_CAP = parse_cap("24%")
