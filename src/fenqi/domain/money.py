"""Exact amounts of money and the named roundings that produce them.

An amount is an integer count of fen (0.01 yuan). It is parsed from and formatted to yuan text
("12,000.00", "0.5") only at the edges; floats never become money. Rounding happens in exactly two
named ways, each applied once per computed line (docs/domain.md#money-and-rounding):

- ``half_up``: to the nearest fen, halves away from zero (四舍五入) — interest, fees, penalties;
- ``cut``: towards zero (cut to the fen) — even splits of a principal, the remainder going to one
  period so that the parts always sum to the whole.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import ClassVar, NoReturn

from fenqi.domain.errors import InputError

_AMOUNT = re.compile(
    r"^(?P<sign>[+-]?)(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d{1,2}))?$", re.ASCII
)
_TOO_FINE = re.compile(r"^[+-]?[\d,]+\.\d{3,}$", re.ASCII)
_ACCEPTED = 'amounts are yuan with at most two decimals, e.g. "12000", "12,000.00" or "0.5"'
# The most a person may enter anywhere (the API's twelve digits of yuan): far beyond any plan,
# and far inside the 64-bit integers a database column holds.
AMOUNT_AT_MOST = 999_999_999_999_99


class MoneyError(InputError):
    """Text or a value that is not an exact amount of money."""


class Money(int):
    """An exact amount of CNY: an integer count of fen.

    It is an ``int`` so that sums, comparisons and sorting are exact and fast; ``str`` gives yuan
    with two decimals. An amount plus or minus an amount, or times a count, is an amount;
    multiplying by a rate or dividing must go through a named rounding (``half_up``, ``cut``,
    ``split``), never ``/``. Arithmetic with a plain ``int`` on the left stays a plain ``int``
    (no reflected operators), so integer loops over fen run at ``int`` speed.
    """

    __slots__ = ()
    currency: ClassVar[str] = "CNY"

    def __new__(cls, fen: int = 0) -> Money:
        if type(fen) is not int and not isinstance(fen, Money):
            raise MoneyError(
                f"Money takes an integer count of fen, not {type(fen).__name__} {fen!r}; "
                "use Money.parse for yuan text"
            )
        return int.__new__(cls, fen)

    @classmethod
    def parse(
        cls, text: str | Decimal, *, allow_negative: bool = False, at_most: int | None = None
    ) -> Money:
        """Parse yuan: "12000", "12,000.00", "0.5", or an exact Decimal; never a float. With
        ``at_most`` (fen), a larger amount is refused: what a person enters is capped."""
        amount = cls._parse(text, allow_negative)
        if at_most is not None and amount > at_most:
            raise MoneyError(
                f'"{text}" is more than {Money(at_most)}, the most an amount may be'
            ).coded("amount-too-large", text=text, most=Money(at_most))
        return amount

    @classmethod
    def _parse(cls, text: str | Decimal, allow_negative: bool) -> Money:
        if isinstance(text, Decimal):
            return cls._from_decimal(text, allow_negative)
        if not isinstance(text, str):
            raise MoneyError(f"{text!r} is a {type(text).__name__}; {_ACCEPTED}").coded(
                "not-an-amount", text=text
            )
        match = _AMOUNT.match(text.strip())
        if match is None:
            too_fine = _TOO_FINE.match(text.strip()) is not None
            problem = "has more than two decimals" if too_fine else "is not an amount"
            raise MoneyError(f'"{text}" {problem}; {_ACCEPTED}').coded(
                "too-many-decimals" if too_fine else "not-an-amount", text=text
            )
        whole = int(match["whole"].replace(",", ""))
        fen = whole * 100 + int((match["frac"] or "").ljust(2, "0"))
        if match["sign"] == "-":
            fen = -fen
        return cls._checked(fen, text, allow_negative)

    @classmethod
    def _from_decimal(cls, value: Decimal, allow_negative: bool) -> Money:
        if not value.is_finite():
            raise MoneyError(f"{value} is not an amount; {_ACCEPTED}").coded(
                "not-an-amount", text=value
            )
        try:
            fen = value.scaleb(2)
            exact = fen.to_integral_exact()
        except InvalidOperation as error:  # pragma: no cover - finite decimals always scale
            raise MoneyError(f"{value} is not an amount; {_ACCEPTED}") from error
        if fen != exact:
            raise MoneyError(f'"{value}" has more than two decimals; {_ACCEPTED}').coded(
                "too-many-decimals", text=value
            )
        return cls._checked(int(exact), str(value), allow_negative)

    @classmethod
    def _checked(cls, fen: int, text: str | Decimal, allow_negative: bool) -> Money:
        if fen < 0 and not allow_negative:
            raise MoneyError(f'"{text}" is negative; the amount must be 0 or more').coded(
                "negative-amount", text=text
            )
        return int.__new__(cls, fen)

    def __str__(self) -> str:
        sign = "-" if self < 0 else ""
        whole, fen = divmod(abs(int(self)), 100)
        return f"{sign}{whole}.{fen:02d}"

    def __repr__(self) -> str:
        return f"Money('{self}')"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    # The type tests come first because the fold adds and subtracts amounts by the million.
    def __add__(self, other: int) -> Money:
        if type(other) is not Money and type(other) is not int:
            other = _exact(other, "added to")
        return int.__new__(Money, int.__add__(self, other))

    def __sub__(self, other: int) -> Money:
        if type(other) is not Money and type(other) is not int:
            other = _exact(other, "subtracted from")
        return int.__new__(Money, int.__sub__(self, other))

    def __neg__(self) -> Money:
        return int.__new__(Money, -int(self))

    def __abs__(self) -> Money:
        return int.__new__(Money, abs(int(self)))

    def __mul__(self, count: int) -> Money:
        return int.__new__(Money, int(self) * _exact(count, "multiplied by"))

    def __truediv__(self, other: object) -> NoReturn:
        raise MoneyError("an amount cannot be divided with '/'; use split() or cut()")

    def __rtruediv__(self, other: object) -> NoReturn:
        raise MoneyError("an amount cannot divide with '/'; use split() or cut()")


def _exact(other: object, verb: str) -> int:
    if type(other) is int or (isinstance(other, int) and not isinstance(other, bool)):
        return other
    raise MoneyError(
        f"an amount cannot be {verb} {type(other).__name__} {other!r}; "
        "amounts combine only with amounts, and rates through half_up or cut"
    )


ZERO = Money(0)


def half_up(numerator: int, denominator: int = 1) -> Money:
    """Round numerator/denominator fen to the nearest fen, halves away from zero (四舍五入).

    Takes the exact ratio as two integers (``half_up(*fraction.as_integer_ratio())``) so that hot
    loops never build a ``Fraction``.
    """
    return int.__new__(Money, half_up_fen(numerator, denominator))


def half_up_fen(numerator: int, denominator: int) -> int:
    """``half_up`` as a plain ``int``, for loops that give their results the Money type once."""
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((-2 * numerator + denominator) // (2 * denominator))


def cut(numerator: int, denominator: int = 1) -> Money:
    """Cut numerator/denominator fen to a whole fen, towards zero."""
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    magnitude = abs(int(numerator)) // denominator
    return int.__new__(Money, magnitude if numerator >= 0 else -magnitude)


def at_rate(amount: int, rate: Fraction) -> Money:
    """``amount`` times an exact ``rate``, rounded half up: one fee or one period's interest."""
    return half_up(int(amount) * rate.numerator, rate.denominator)


def split(total: Money, parts: int, *, remainder_first: bool = False) -> tuple[Money, ...]:
    """Split an amount into ``parts`` pieces cut to the fen; one piece absorbs the remainder.

    The pieces always sum to ``total`` exactly (docs/domain.md#money-and-rounding: the last
    period absorbs every remainder, or a product may put it first instead).
    """
    if parts < 1:
        raise MoneyError(f"cannot split into {parts} parts; parts must be 1 or more")
    piece = cut(total, parts)
    odd = Money(total - piece * (parts - 1))
    if parts == 1:
        return (odd,)
    rest = (piece,) * (parts - 1)
    return (odd, *rest) if remainder_first else (*rest, odd)
