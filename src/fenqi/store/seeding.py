"""What seeding a portfolio reads from the database first, and the ids it moves on after."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fenqi.store.schema import BorrowerRow, LoanRow


def phones_taken(session: Session) -> set[str]:
    return set(session.scalars(select(BorrowerRow.phone)))


def next_ids(session: Session) -> tuple[int, int]:
    """The first free borrower id and the first free loan id."""
    borrower = session.scalar(select(func.coalesce(func.max(BorrowerRow.id), 0)))
    loan = session.scalar(select(func.coalesce(func.max(LoanRow.id), 0)))
    return int(borrower or 0) + 1, int(loan or 0) + 1


def move_sequences(session: Session) -> None:
    """Ids were given by the seeder, past what PostgreSQL's id sequences handed out: the
    sequences are moved past them, so the next checkout or new borrower gets a free id. (SQLite
    takes the largest id plus one by itself.)"""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in ("borrowers", "loans"):
        session.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
        )
