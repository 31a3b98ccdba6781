"""A PostgreSQL schema of its own for one bench run, so that a bench never touches anything
else on the server: made when the run starts, dropped with everything in it when it ends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import make_url, text

from fenqi.store.database import make_engine


@contextmanager
def fresh_schema(server_url: str, kind: str) -> Iterator[str]:
    """The URL of a new schema ``fenqi_bench_<kind>_…`` on the server at ``server_url``, whose
    connections use it; the schema is dropped when the block ends, however it ends."""
    schema = f"fenqi_bench_{kind}_{uuid.uuid4().hex[:8]}"
    server = make_engine(server_url)
    with server.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with server.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        server.dispose()
