"""What a service refuses: each is an InputError, so entry points report it the same way."""

from typing import Any

from fenqi.domain.errors import InputError


class NotFoundError(InputError):
    """Nothing with that id (or not yours to see). A page says so in its reader's language
    (``refusal.not-found``): which id was asked for is the reader's own."""

    code = "not-found"


class RefusedError(InputError):
    """A well-formed request the rules do not allow; the message says why and what is possible."""


class DeclinedError(InputError):
    """The payment channel declined the debit (for example, insufficient funds)."""


class InFlightError(InputError):
    """A request with the same idempotency key is still being worked out; try again later."""


class TextError(InputError):
    """Text holding a NUL character: no name, reason, id or file fenqi keeps may hold one."""


def plain_text(what: str, text: str) -> str:
    """``text`` if it holds no NUL: a NUL ends a string in C, PostgreSQL cannot store one, and
    no one types it; it only ever comes from a tool or an attack."""
    if "\x00" in text:
        raise TextError(f"{what} holds a NUL character; give plain text")
    return text


class ConflictError(Exception):
    """Other writers kept changing what this request needed until its retries ran out, or held
    it longer than the lock timeout: nothing was changed, and the same request may be sent
    again in a moment (409 with Retry-After)."""


class ConfirmationNeededError(InputError):
    """A correction whose consequences the operator must see before it is done (it reopens a
    settled plan or makes a current one overdue): refused, with nothing changed, until it is
    sent again confirmed. ``what`` says so in a sentence; ``consequences`` is the document of
    the loan before and after it (``wire.consequences``)."""

    def __init__(self, what: str, consequences: dict[str, Any]) -> None:
        super().__init__(f"{what}; confirm to go ahead")
        self.what = what
        self.consequences = consequences
        self.coded("confirmation-needed", **consequences)
