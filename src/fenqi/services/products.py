"""The product catalog in the database: loaded from TOML, read by checkout and quotes."""

from __future__ import annotations

from pathlib import Path

from fenqi.catalog import read_text, shipped_catalog_text
from fenqi.domain.products import Product, catalog_definitions, parse_definition
from fenqi.loans.ports import UnitOfWork
from fenqi.services.context import Context, caller, transact
from fenqi.services.policy import Permission, require


def load_products(context: Context, path: Path | None = None) -> list[Product]:
    """Adds or replaces every product of a catalog file (the shipped one by default). Loans
    already made keep the product as it was when they were made."""
    text = shipped_catalog_text() if path is None else read_text(path)
    source = "default catalog" if path is None else str(path)
    return load_catalog(context, text, source)


def load_catalog(context: Context, text: str, source: str = "catalog") -> list[Product]:
    """Adds or replaces every product of a catalog's TOML text."""
    return transact(context, lambda unit: _load(unit, _administrator(context, unit), text, source))


def seed_products(context: Context) -> list[Product]:
    """Loads the shipped catalog into a database that has no products yet, in the same
    transaction that looks: one that has some keeps them, as an operator may have loaded her
    own."""

    def seed(unit: UnitOfWork) -> list[Product]:
        admin = _administrator(context, unit)
        if unit.products():
            return []
        return _load(unit, admin, shipped_catalog_text(), "default catalog")

    return transact(context, seed)


def _administrator(context: Context, unit: UnitOfWork) -> str:
    """The name of whoever is acting, once found to administer products."""
    who = caller(context, unit)
    require(who, Permission.ADMINISTER)
    return who.name


def _load(unit: UnitOfWork, actor: str, text: str, source: str) -> list[Product]:
    definitions = catalog_definitions(text, source)
    for code, (product, table) in definitions.items():
        before = unit.keep_product(code, product.name, table)
        unit.audit(actor, "product.load", code, "", before=before, after=table)
    return [product for product, _ in definitions.values()]


def list_products(context: Context) -> list[Product]:
    """The products, to anyone signed in."""

    def listing(unit: UnitOfWork) -> list[Product]:
        caller(context, unit)
        return [parse_definition(table, code) for code, table in unit.products().items()]

    return transact(context, listing)
