"""The two families of error: ``InputError``, "this input is wrong" (the caller's to fix), and
``InvariantError``, "fenqi is broken" (a rule the code itself must keep did not hold)."""

from __future__ import annotations

from typing import Self


class InputError(ValueError):
    """Input the domain refuses; the message says what is wrong and what is accepted.

    The message is English, for the command line, the API and the log. A refusal people meet
    often on the pages also carries a ``code`` and the ``values`` its sentence needs (``coded``),
    so that a page can say it in the reader's language from its words catalog
    (``web/words.py``, ``refusal.<code>``); any other refusal is shown as its message."""

    code: str | None = None
    values: dict[str, str] = {}  # noqa: RUF012 - never changed: ``coded`` gives an instance its own

    def coded(self, code: str, **values: object) -> Self:
        """This refusal, marked as a ``code`` with the ``values`` (as text) its sentence uses."""
        self.code = code
        self.values = {name: str(value) for name, value in values.items()}
        return self


class InvariantError(Exception):
    """A rule fenqi itself must keep was broken (a journal entry that does not balance, an
    allocation beyond what is owed, a constraint the database refused that no race explains):
    a bug, never the caller's input. It is never retried, it is logged without anyone's data,
    the API answers 500 ``internal-error``, the command line exits 3, and a batch chunk that
    meets one fails at once."""
