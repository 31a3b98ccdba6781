"""The one place a command gets its database and the services' ``Context``.

Every database command takes ``--db URL`` (else ``FENQI_DATABASE_URL``, else a SQLite file in
the working directory). Before a service reads anything, the schema must be current, so an
uninitialised database is one line saying to run ``fenqi db init``, not a missing-table trace.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from typer.exceptions import TyperException

from fenqi import settings
from fenqi.channels import gateways
from fenqi.channels.simulator import SimulatedChannel
from fenqi.channels.sms_simulator import SimulatedSms
from fenqi.cli import render
from fenqi.domain.errors import InputError
from fenqi.services.context import Context, Replayed
from fenqi.services.policy import operator
from fenqi.store.database import database_url, make_engine, require_current, url_without_password
from fenqi.wire import present

T = TypeVar("T")
P = ParamSpec("P")
ACTOR_VARIABLE = "FENQI_ACTOR"

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database URL (default: FENQI_DATABASE_URL or sqlite:///fenqi.sqlite3)",
    ),
]


class DatabaseUnusable(TyperException):
    """The database could not be opened or used (refused, locked, no permission); the input
    was well formed, so exit code 1 rather than 2."""


@contextmanager
def database(db: str | None, *, require: bool = True) -> Iterator[Context]:
    """A context on the database ``--db`` names, disposed of afterwards. ``require`` refuses a
    schema that is missing or behind (``fenqi db init`` itself opens it without)."""
    url = database_url(db)
    try:
        engine = make_engine(url)
    except ArgumentError:
        raise InputError(
            f'--db: "{url}" is not a database URL; give e.g. sqlite:///fenqi.sqlite3 or '
            "postgresql://user@host/dbname"
        ) from None
    try:
        if require:
            require_current(engine)
        yield context_on(engine)
    except (DBAPIError, PoolTimeoutError) as error:  # at connect or at any later statement
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise DatabaseUnusable(
            f"cannot use database {url_without_password(url)}: {reason}"
        ) from None
    finally:
        engine.dispose()


def context_on(engine: Engine) -> Context:
    """Payments and SMS go through the built-in simulators, the channels this CLI ships with,
    and debits through the withholding gateways the settings name. The command line is the
    operator's own tool, run with the database's credentials, so it acts as an admin named
    ``actor()`` (an overpayment is still approved only when asked for by name)."""
    return Context(
        engine,
        SimulatedChannel,
        operator(actor()),
        sms=SimulatedSms(),
        gateways=gateways.from_settings(engine, settings.simulation(True)),
    )


def actor() -> str:
    """Who the audit log says acted: ``FENQI_ACTOR`` (a service account, an operator's name),
    else the login name."""
    given = os.environ.get(ACTOR_VARIABLE, "").strip()
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def respond(
    db: str | None,
    as_json: bool,
    human: Callable[[Any], None],
    call: Callable[Concatenate[Context, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """A command's whole job once its text is parsed: ``call(context, *args, **kwargs)`` on the
    database ``--db`` names, its answer presented (``fenqi.wire``, as the API shows it) and
    printed as JSON or by ``human``. The answer is returned for a command whose exit code
    depends on it."""
    with database(db) as context:
        answer = call(context, *args, **kwargs)
    if isinstance(answer, Replayed):
        typer.echo("fenqi: note: that idempotency key was used before for this same request; "
                   "this is its first result again, and nothing moved", err=True)  # fmt: skip
    render.emit(present(answer), as_json, human)
    return answer
