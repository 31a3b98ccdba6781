"""Writing many rows at once, in the session's transaction: COPY on PostgreSQL, INSERTs of many
rows each elsewhere. The seeding of a portfolio and each chunk of the nightly batch write this
way."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import JSON, Connection, Table, insert
from sqlalchemy.orm import Session

from fenqi.store.documents import Document
from fenqi.store.schema import Base

ROWS_PER_STATEMENT = 10_000  # SQLite's INSERT of many rows, a statement at a time


def insert_rows(session: Session, name: str, rows: Sequence[Document]) -> None:
    """Writes ``rows`` (dicts with the same keys) into table ``name``."""
    if not rows:
        return
    table = Base.metadata.tables[name]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _copy(connection, table, rows)
        return
    for first in range(0, len(rows), ROWS_PER_STATEMENT):
        connection.execute(insert(table), list(rows[first : first + ROWS_PER_STATEMENT]))


def insert_tables(session: Session, rows: dict[str, list[Document]]) -> None:
    """Writes the rows of each table named, table by table."""
    for name, table_rows in rows.items():
        insert_rows(session, name, table_rows)


def _copy(connection: Connection, table: Table, rows: Sequence[Document]) -> None:
    """PostgreSQL's ``COPY … FROM STDIN`` through psycopg on the transaction's own connection,
    the fastest way in; JSON goes as its text. The postings trigger still checks at commit
    that every entry balances."""
    columns = list(rows[0])
    as_json = [isinstance(table.c[column].type, JSON) for column in columns]
    statement = f'COPY "{table.name}" ({", ".join(columns)}) FROM STDIN'
    driver = connection.connection.driver_connection
    assert driver is not None, "a connection in a transaction has its driver's connection"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([json.dumps(row[column]) if encode else row[column]
                            for column, encode in zip(columns, as_json, strict=True)])  # fmt: skip
