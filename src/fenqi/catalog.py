"""Reads reference data files: product catalogs and the LPR table (the shipped ones by default).

Every file is read the same bounded way: a regular file only (a FIFO would wait for a writer
and ``/dev/zero`` never ends), at most ``CATALOG_CHARS_AT_MOST`` characters, the API's own cap
(one more is read only to know there is more), UTF-8 only. Anything else is one refusal naming
the file, never a traceback or a machine out of memory.
"""

from __future__ import annotations

import os
import stat
from importlib.resources import files
from pathlib import Path
from typing import IO

from fenqi.domain.caps import LprTable, parse_lpr_table
from fenqi.domain.products import CatalogError, Product, parse_catalog
from fenqi.domain.reference import CATALOG_CHARS_AT_MOST


def _shipped(name: str) -> str:
    with files("fenqi").joinpath("data", name).open("r", encoding="utf-8") as stream:
        return _bounded(stream, name)


def shipped_catalog_text() -> str:
    return _shipped("products.toml")


def read_text(path: Path) -> str:
    """A catalog file's text, or a refusal naming the file and why it cannot be read."""
    try:
        # Non-blocking, so that opening a FIFO with no writer returns at once, to be refused.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise CatalogError(str(path), [f"cannot be read: {error.strerror}"]) from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # what was opened, not what was named
        os.close(descriptor)
        raise CatalogError(str(path), ["is not a regular file; give a .toml file"])
    with open(descriptor, encoding="utf-8") as stream:
        return _bounded(stream, str(path))


def _bounded(stream: IO[str], source: str) -> str:
    try:
        text = stream.read(CATALOG_CHARS_AT_MOST + 1)
    except UnicodeDecodeError:
        raise CatalogError(source, ["is not UTF-8 text; save it as UTF-8"]) from None
    except OSError as error:
        raise CatalogError(source, [f"cannot be read: {error.strerror}"]) from None
    if len(text) > CATALOG_CHARS_AT_MOST:
        raise CatalogError(source, [f"is longer than {CATALOG_CHARS_AT_MOST:,} characters, the "
                                    "most a catalog may hold"])  # fmt: skip
    return text


def read_catalog(path: Path | None = None) -> dict[str, Product]:
    """Products by code from ``path``, or the catalog that ships with fenqi."""
    if path is None:
        return parse_catalog(shipped_catalog_text(), "default catalog")
    return parse_catalog(read_text(path), str(path))


def read_lpr_table() -> LprTable:
    """The one-year LPR fixings that ship with fenqi."""
    return parse_lpr_table(_shipped("lpr.toml"))
