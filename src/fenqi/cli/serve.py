"""``fenqi serve`` runs the HTTP service; ``fenqi user create`` and ``fenqi apikey create``
make the operators who sign in to it and the keys systems call it with."""

from __future__ import annotations

import copy
import getpass
import os
import socket
from typing import Annotated, Any

import typer

from fenqi import settings
from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, database, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption, choice
from fenqi.services import access
from fenqi.services.access import Role
from fenqi.settings import SIMULATION_VARIABLE
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
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate",
            help="Simulation mode: staff may set simulated balances (also FENQI_SIMULATION=1).",
        ),
    ] = False,
) -> None:
    """Serve the JSON API (docs at /docs, OpenAPI at /openapi.json), the borrower page and the
    operator console."""
    with database(db):  # refuses a database that is missing or behind, in one line
        pass
    # Each worker process reads the mode from the environment, as it reads the database URL.
    os.environ[SIMULATION_VARIABLE] = "1" if simulate or settings.simulation(False) else "0"
    import uvicorn  # noqa: PLC0415 - the web stack loads only for the command that serves it
    from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

    # Each worker process makes its own app, on the database named in the environment.
    os.environ[URL_VARIABLE] = database_url(db)
    config = uvicorn.Config("fenqi.api.app:create_app", factory=True, workers=workers,
                            log_level="warning", log_config=log_config())  # fmt: skip
    sockets = [listening_socket(host, port)]
    if workers == 1:
        uvicorn.Server(config).run(sockets=sockets)
    else:
        Multiprocess(config, sockets=sockets).run()


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus fenqi's one JSON line per request; uvicorn applies it again in
    every worker process, which inherits nothing of the parent's logging."""
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["fenqi"] = {"class": "logging.StreamHandler", "formatter": "fenqi",
                                   "stream": "ext://sys.stderr"}  # fmt: skip
    config["formatters"]["fenqi"] = {"format": "%(message)s"}
    config["loggers"]["fenqi"] = {"handlers": ["fenqi"], "level": "INFO", "propagate": False}
    return config


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket the worker processes share. Its protocol is named, as uvicorn's own is not:
    asyncio turns Nagle's algorithm off only on sockets that say they are TCP, and with it on
    every answer after a connection's first waits ~40 ms for a delayed ACK (uvicorn #3149)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise typer.BadParameter(
            f"cannot listen on {host}:{port}: {error.strerror}", param_hint="--port"
        ) from error
    return listener


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
