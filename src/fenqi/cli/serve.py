"""``fenqi serve`` runs the HTTP service; ``fenqi user`` and ``fenqi apikey`` make, list,
disable and revoke the operators who sign in to it and the keys systems call it with.

A password is never an argument (every user of the machine sees arguments, and the shell keeps
them): it is asked for twice without echo, or read from standard input with --password-stdin.
"""

from __future__ import annotations

import copy
import errno
import os
import socket
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from fenqi import settings
from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, database, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption, OptionError, choice
from fenqi.services import credentials
from fenqi.services.policy import Role
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
    behind_tls: Annotated[
        bool,
        typer.Option("--behind-tls", help="Clients reach it over https (Secure cookies, HSTS)."),
    ] = False,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            metavar="ADDRESS",
            help="A proxy (address or network) whose X-Forwarded-For/-Proto to believe; repeat.",
        ),
    ] = None,
    metrics: Annotated[
        str | None, typer.Option("--metrics", metavar="open|staff|off", help="Who sees /metrics.")
    ] = None,
    docs: Annotated[
        str | None, typer.Option("--docs", metavar="open|off", help="Serve /docs and OpenAPI.")
    ] = None,
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
    operator console. Each option overrides its setting in the environment (README
    "Security")."""
    _settings(behind_tls, trusted_proxy or [], metrics, docs)
    with database(db):  # refuses a database that is missing or behind, in one line
        pass
    # Each worker process reads the mode from the environment, as it reads the database URL.
    os.environ[SIMULATION_VARIABLE] = "1" if simulate or settings.simulation(False) else "0"
    import uvicorn  # noqa: PLC0415 - the web stack loads only for the command that serves it
    from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

    # Each worker process makes its own app, on the database named in the environment.
    os.environ[URL_VARIABLE] = database_url(db)
    # uvicorn's own proxy headers would believe 127.0.0.1 by default: the app decides whom to
    # believe, from FENQI_TRUSTED_PROXIES only (http/hardening.py).
    config = uvicorn.Config("fenqi.http.app:create_app", factory=True, workers=workers,
                            log_level="warning", log_config=log_config(),
                            proxy_headers=False)  # fmt: skip
    sockets = [listening_socket(host, port)]
    if workers == 1:
        uvicorn.Server(config).run(sockets=sockets)
    else:
        Multiprocess(config, sockets=sockets).run()


def _settings(behind_tls: bool, proxies: Sequence[str], metrics: str | None,
              docs: str | None) -> None:  # fmt: skip
    """Puts the options into the environment the worker processes read their settings from,
    and refuses settings that cannot be used before anything starts."""
    from fenqi.http import hardening  # noqa: PLC0415 - FastAPI loads only for `fenqi serve`

    given = {hardening.SECURE_VARIABLE: "yes" if behind_tls else None,
             hardening.PROXIES_VARIABLE: ",".join(proxies) or None,
             hardening.METRICS_VARIABLE: metrics, hardening.DOCS_VARIABLE: docs}  # fmt: skip
    for name, value in given.items():
        if value is not None:
            os.environ[name] = value
    hardening.Settings.from_environment()


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
    try:
        socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise typer.BadParameter(
            f'"{host}" is not an address or a host name; give e.g. 127.0.0.1, 0.0.0.0 or ::1',
            param_hint="--host",
        ) from None
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        # An address no interface of this machine has is the host's fault; one in use, or
        # below 1024 without the right, the port's.
        blamed = "--host" if error.errno == errno.EADDRNOTAVAIL else "--port"
        raise typer.BadParameter(
            f"cannot listen on {host}:{port}: {error.strerror}", param_hint=blamed
        ) from error
    return listener


@user_app.command("create")
def create_user_command(
    username: Annotated[str, typer.Option("--username", help="The operator's user name.")],
    role: Annotated[str, typer.Option("--role", help="viewer, agent or admin.")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from standard input."),
    ] = False,
    password: Annotated[str | None, typer.Option("--password", hidden=True)] = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an operator who signs in to the console; the password is asked for twice without
    echo, or read from standard input."""
    if password is not None:
        raise OptionError("--password is not accepted: a password on the command line is seen "
                          "by every user of the machine and kept in shell history; use "
                          "--password-stdin, or leave it out to be asked")  # fmt: skip
    chosen = choice("--role", role, Role)
    secret = _piped_password() if password_stdin else _asked_password()
    respond(db, as_json, render.key_values, credentials.create_user, username, secret, chosen)


def _piped_password() -> str:
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _has_terminal() -> bool:
    return sys.stdin.isatty()


def _asked_password() -> str:
    if not _has_terminal():
        raise OptionError("no terminal to ask for the password on; "
                          "pipe it in with --password-stdin")  # fmt: skip
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_app.command("list")
def list_users_command(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Every operator, with her role and whether she is disabled."""
    respond(db, as_json, _users, credentials.list_users)


def _users(documents: Sequence[render.Document]) -> None:
    columns = ("username", "role", "status", "created_at", "disabled_at")
    render.show(render.table(documents, columns, title="Operators"))


@user_app.command("disable")
def disable_user_command(
    username: Annotated[str, typer.Argument(metavar="USERNAME", help="The operator to stop.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop an operator at once: her sessions end, her API keys stop working, and she can no
    longer sign in."""
    respond(db, as_json, render.key_values, credentials.disable_user, username)


@apikey_app.command("create")
def create_apikey_command(
    username: Annotated[str, typer.Option("--username", help="The operator it acts as.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key; its secret is printed this once and never stored."""
    respond(db, as_json, render.key_values, credentials.create_api_key, username)


@apikey_app.command("list")
def list_apikeys_command(
    username: Annotated[
        str | None, typer.Option("--username", help="Only this operator's keys.")
    ] = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """The API keys: ids, operators, when made, last used (to the hour) and revoked; never a
    secret."""
    respond(db, as_json, _api_keys, credentials.list_api_keys, username)


def _api_keys(documents: Sequence[render.Document]) -> None:
    columns = ("key_id", "username", "created_at", "last_used_at", "revoked", "revoked_at")
    render.show(render.table(documents, columns, title="API keys"))


@apikey_app.command("revoke")
def revoke_apikey_command(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="As `fenqi apikey list` shows.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an API key: it stops working at once."""
    respond(db, as_json, render.key_values, credentials.revoke_api_key, key_id)
