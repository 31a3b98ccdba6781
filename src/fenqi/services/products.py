"""The product catalog in the database: loaded from TOML, read by checkout and quotes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from fenqi import wire
from fenqi.catalog import read_text, shipped_catalog_text
from fenqi.domain.products import Product, catalog_definitions, parse_definition
from fenqi.services.context import Context, Document, audit, run
from fenqi.store.loans import now
from fenqi.store.schema import ProductRow


def load_products(context: Context, path: Path | None = None) -> list[Document]:
    """Adds or replaces every product of a catalog file (the shipped one by default). Loans
    already made keep the product as it was when they were made."""
    text = shipped_catalog_text() if path is None else read_text(path)
    source = "default catalog" if path is None else str(path)
    return load_catalog(context, text, source)


def load_catalog(context: Context, text: str, source: str = "catalog") -> list[Document]:
    """Adds or replaces every product of a catalog's TOML text."""
    return run(context, lambda session: _load(session, context.actor, text, source))


def seed_products(context: Context) -> list[Document]:
    """Loads the shipped catalog into a database that has no products yet, in the same
    transaction that looks: one that has some keeps them, as an operator may have loaded her
    own."""

    def seed(session: Session) -> list[Document]:
        if session.scalars(select(ProductRow.code).limit(1)).first() is not None:
            return []
        return _load(session, context.actor, shipped_catalog_text(), "default catalog")

    return run(context, seed)


def _load(session: Session, actor: str, text: str, source: str) -> list[Document]:
    definitions = catalog_definitions(text, source)
    for code, (product, table) in definitions.items():
        row = session.get(ProductRow, code)
        before = None if row is None else row.definition
        if row is None:
            session.add(ProductRow(code=code, name=product.name, definition=table, loaded_at=now()))
        else:
            row.name, row.definition, row.loaded_at = product.name, table, now()
        audit(session, actor, "product.load", code, "catalog loaded", before=before, after=table)
    return [wire.product(product) for product, _ in definitions.values()]


def list_products(context: Context) -> list[Document]:
    def listing(session: Session) -> list[Document]:
        rows = session.scalars(select(ProductRow).order_by(ProductRow.code))
        return [wire.product(parse_definition(row.definition, row.code)) for row in rows]

    return run(context, listing)


def catalog(session: Session) -> dict[str, Product]:
    rows = session.scalars(select(ProductRow))
    return {row.code: parse_definition(row.definition, row.code) for row in rows}
