"""``fenqi serve`` runs the HTTP service; ``fenqi user create`` and ``fenqi apikey create``
make the operators who sign in to it and the keys systems call it with."""

from __future__ import annotations

import getpass
import logging
import os
from typing import Annotated

import typer

from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, database, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption, choice
from fenqi.services import access
from fenqi.services.access import Role
from fenqi.store.database import URL_VARIABLE, database_url

user_app = command_group("Operators of the console and the API.")
apikey_app = command_group("API keys for operators and systems.")


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Server processes (one per core; PostgreSQL).")
    ] = 1,
    db: DatabaseOption = None,
) -> None:
    """Serve the JSON API (docs at /docs, OpenAPI at /openapi.json), the borrower page and the
    operator console."""
    with database(db):  # refuses a database that is missing or behind, in one line
        pass
    import uvicorn  # noqa: PLC0415 - the web stack loads only for the command that serves it

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Each worker process makes its own app, on the database named in the environment.
    os.environ[URL_VARIABLE] = database_url(db)
    uvicorn.run("fenqi.api.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="warning")  # fmt: skip


@user_app.command("create")
def create_user_command(
    username: Annotated[str, typer.Option("--username", help="The operator's user name.")],
    role: Annotated[str, typer.Option("--role", help="viewer, agent or admin.")],
    password: Annotated[
        str | None, typer.Option("--password", help="Asked for when not given.")
    ] = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an operator who signs in to the console."""
    secret = password if password is not None else getpass.getpass("password: ")
    respond(db, as_json, render.key_values, access.create_user, username, secret,
            choice("--role", role, Role))  # fmt: skip


@apikey_app.command("create")
def create_apikey_command(
    username: Annotated[str, typer.Option("--username", help="The operator it acts as.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key; its secret is printed this once and never stored."""
    respond(db, as_json, render.key_values, access.create_api_key, username)
