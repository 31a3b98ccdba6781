"""Reading the text of options and arguments, shared by every command.

Each refusal names the option it came from and says what is accepted, so that ``fenqi.cli.main``
can print it as the one line a user needs. Typer only hands over text; parsing it here rather
than with Typer's types keeps every message in fenqi's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, TypeVar

import typer

from fenqi import settings
from fenqi.clock import today
from fenqi.domain.errors import InputError
from fenqi.domain.money import AMOUNT_AT_MOST, Money
from fenqi.services.days import booking_day, looking_day
from fenqi.store.schema import MAX_ID

Text = str | None
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DateOption = Annotated[
    Text, typer.Option("--date", metavar="YYYY-MM-DD", help="Effective date (default: today).")
]
BorrowerOption = Annotated[str, typer.Option("--borrower", metavar="ID", help="The borrower's id.")]
AsOfOption = Annotated[
    Text, typer.Option("--as-of", metavar="YYYY-MM-DD", help="The day to show (default: today).")
]


class OptionError(InputError):
    """An option's text that cannot be used; the message names the option."""


def parsed(name: str, parse: Callable[[], T]) -> T:
    """Runs a parse, prefixing any refusal with the option it came from."""
    try:
        return parse()
    except ValueError as error:
        raise OptionError(f"{name}: {error}") from None


def money(name: str, text: str) -> Money:
    """Yuan, as ``Money.parse`` reads them, up to the API's cap; a refusal names the option."""
    return parsed(name, lambda: Money.parse(text, at_most=AMOUNT_AT_MOST))


def whole(name: str, text: str) -> int:
    """A count or an id: ASCII digits only, so "١٢", "+3" and "1e3" are refused, and at most
    the largest id (a longer number names no row, and overflows the database's integers)."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise OptionError(f'{name}: "{text}" is not a whole number; give e.g. 12')
    if len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:
        raise OptionError(f'{name}: "{text}" is too large; give a number up to {MAX_ID}')
    return int(digits)


def day(name: str, text: Text) -> date:
    """A date written YYYY-MM-DD, or today when none is given: the shell owns the clock, and
    services and the domain are told the day. Any day within a century of today (a day to look
    at a loan on; the days staff book on are ``booked``)."""
    if text is None:
        return today()
    try:  # only YYYY-MM-DD: fromisoformat would also read "20260115" and "2026-W03-4"
        written = date.fromisoformat(text) if _DATE.fullmatch(text) else None
    except ValueError:
        written = None
    if written is None:
        raise OptionError(f'{name}: "{text}" is not a date; write YYYY-MM-DD')
    return looking_day(written, today(), field=name)


def booked(name: str, text: Text) -> date:
    """The day staff book money or a correction on: today when not given, else a day at most
    ``FENQI_BACKDATE_DAYS`` (31) before today and never after it."""
    return booking_day(day(name, text), today(), settings.backdate_days(), field=name)


def moment(name: str, text: str) -> datetime:
    """A wall-clock time written YYYY-MM-DDTHH:MM (seconds allowed), without a zone: the
    service says which clock it is read on. A bare date is refused: which time would it be?"""
    written = text.strip()
    try:
        value = datetime.fromisoformat(written)
    except ValueError:
        value = None
    if value is None or value.tzinfo is not None or len(written) <= len("YYYY-MM-DD"):
        raise OptionError(f'{name}: "{text}" is not a time; write YYYY-MM-DDTHH:MM')
    return value


def choice(name: str, text: str, kind: type[E]) -> E:
    """One of an enumeration's values, with the list of them in the refusal."""
    try:
        return kind(text.strip().lower())
    except ValueError:
        accepted = ", ".join(member.value for member in kind)
        raise OptionError(f'{name}: "{text}" is not one of: {accepted}') from None
