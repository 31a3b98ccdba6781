"""What the API's bodies and the pages' forms read alike: an id, a day anyone may give, and
what a person types to sign in, each defined once so that a page never takes what the API would
refuse, nor refuses what it takes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

from fenqi.clock import today
from fenqi.services.borrowers import PHONE
from fenqi.services.credentials import USER_NAME
from fenqi.services.days import looking_day
from fenqi.store.schema import MAX_ID

# What a person types to sign in, one definition for the API's bodies and the pages' forms
# (``fits``): the sign-in page must not take a phone, a code or a name the API would refuse.
Phone = Annotated[str, Field(pattern=PHONE.pattern, examples=["13800138000"])]
SignInCode = Annotated[str, Field(pattern=r"^[0-9]{6}$", examples=["123456"])]
UserName = Annotated[str, Field(pattern=f"^{USER_NAME.pattern}$", examples=["wang.li"])]
Password = Annotated[str, Field(min_length=1, max_length=200)]
_SHAPES: dict[str, TypeAdapter[str]] = {
    "phone": TypeAdapter(Phone),
    "code": TypeAdapter(SignInCode),
    "username": TypeAdapter(UserName),
    "password": TypeAdapter(Password),
}


def fits(field: Literal["phone", "code", "username", "password"], text: str) -> bool:
    """Whether ``text`` is what the API takes for a sign-in ``field``, checked by the very type
    its body declares."""
    try:
        _SHAPES[field].validate_python(text)
    except ValidationError:
        return False
    return True


def _whole(value: object) -> object:
    """An id is a JSON integer, or ASCII digits in an address: not "1.0", " 1", "+1", "1_0"
    or "١", all of which a lax integer would take for another id."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("an id is a whole number, e.g. 12")
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) <= 10):
        raise ValueError("an id is written in the digits 0-9, e.g. 12")
    return value


Id = Annotated[int, BeforeValidator(_whole), Field(ge=1, le=MAX_ID)]


def _lookable(day: dt.date) -> dt.date:
    return looking_day(day, today())


# A date anyone may give: within a century of today, so that no computation runs off the
# calendar (9999-12-31 plus a day); the days staff book on have a narrower window, checked by
# the route with the booking rule.
Day = Annotated[dt.date, AfterValidator(_lookable)]
