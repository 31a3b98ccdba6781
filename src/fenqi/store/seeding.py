"""What seeding a portfolio reads from the database first, and the ids it moves on after."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fenqi.store.schema import BorrowerRow, LoanRow, PaymentMethodRow


def phones_taken(session: Session) -> set[str]:
    return set(session.scalars(select(BorrowerRow.phone)))


def next_ids(session: Session) -> tuple[int, int, int]:
    """The first free borrower id, loan id and payment method id."""
    tables = (BorrowerRow, LoanRow, PaymentMethodRow)
    first = [session.scalar(select(func.coalesce(func.max(row.id), 0))) for row in tables]
    borrower, loan, method = (int(found or 0) + 1 for found in first)
    return borrower, loan, method


def move_sequences(session: Session) -> None:
    """Ids were given by the seeder, past what PostgreSQL's id sequences handed out: the
    sequences are moved past them, so the next checkout or new borrower gets a free id. (SQLite
    takes the largest id plus one by itself.)"""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in ("borrowers", "loans", "payment_methods"):
        session.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
        )
