"""Reads reference data files: product catalogs and the LPR table (the shipped ones by default)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fenqi.domain.caps import LprTable, parse_lpr_table
from fenqi.domain.products import CatalogError, Product, parse_catalog


def _shipped(name: str) -> str:
    return files("fenqi").joinpath("data", name).read_text(encoding="utf-8")


def shipped_catalog_text() -> str:
    return _shipped("products.toml")


def read_text(path: Path) -> str:
    """A catalog file's text, or a refusal naming the file and why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(str(path), [f"cannot be read: {error.strerror}"]) from None


def read_catalog(path: Path | None = None) -> dict[str, Product]:
    """Products by code from ``path``, or the catalog that ships with fenqi."""
    if path is None:
        return parse_catalog(shipped_catalog_text(), "default catalog")
    return parse_catalog(read_text(path), str(path))


def read_lpr_table() -> LprTable:
    """The one-year LPR fixings that ship with fenqi."""
    return parse_lpr_table(_shipped("lpr.toml"))
