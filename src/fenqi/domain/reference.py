"""Reference data written in TOML (product catalogs, the LPR table): parsed, then checked as a
whole before anything reads a key.

TOML's escapes let a file name a character it does not hold: ``"a\\u0000b"`` is a NUL once
parsed, though the text has none. A NUL ends a string in C and PostgreSQL cannot store one, so
every string of the parsed document, keys included, is checked, not only the text.
"""

from __future__ import annotations

import tomllib
from typing import Any, TypeAlias

from fenqi.domain.errors import InputError

# The most a catalog may hold, in characters: what the API takes in a body, and what the
# command line reads of a file (a larger one is refused, never read to the end).
CATALOG_CHARS_AT_MOST = 200_000


class ReferenceDataError(InputError):
    """TOML text that cannot be reference data; the message says why."""


def parse_toml(text: str) -> dict[str, Any]:
    """The document ``text`` holds, or a ``ReferenceDataError`` saying why it cannot be one."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ReferenceDataError(f"not valid TOML: {error}") from None
    except RecursionError:  # tomllib reads nested arrays and tables by recursion
        raise ReferenceDataError("nests arrays or tables too deeply to be read") from None
    where = _holding_nul(document)
    if where is not None:
        raise ReferenceDataError(f"{where} holds a NUL character (\\u0000); give plain text")
    return document


# Where a value is in a document: its name under its parent, and the parent's place (None: the
# document itself).
Place: TypeAlias = tuple[str, "Place"] | None


def _holding_nul(document: dict[str, Any]) -> str | None:
    """Where the first key or string holding a NUL is (``product[1].name``), or None. Walked
    without recursion, each value keeping only a link to its parent's place, so that depth costs
    neither stack nor a path per level."""
    pending: list[tuple[object, Place]] = [(document, None)]
    while pending:
        item, place = pending.pop()
        if isinstance(item, str) and "\x00" in item:
            return _path(place)
        if isinstance(item, dict):
            for key, value in item.items():
                if "\x00" in key:
                    return f"a key in {_path(place) or 'the document'}"
                pending.append((value, (f".{key}", place)))
        elif isinstance(item, list):
            pending.extend((value, (f"[{index}]", place)) for index, value in enumerate(item, 1))
    return None


def _path(place: Place) -> str:
    parts: list[str] = []
    while place is not None:
        name, place = place
        parts.append(name)
    return "".join(reversed(parts)).lstrip(".")
