"""The one base of every error that means "this input is wrong" rather than "fenqi is broken"."""

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
