"""``fenqi sms``: send the messages the nightly batch queued, and look at the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from fenqi import clock
from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption, OptionError, Text, choice, moment
from fenqi.services.sms import DispatchTimeError, SmsStatus, delivered, dispatch, outbox

sms_app = command_group("Send the queued SMS and look at the outbox.")

_COLUMNS = ("loan_id", "day", "stage", "borrower_id", "phone", "status", "sent_at", "text")


@sms_app.command("dispatch")
def dispatch_command(
    now: Annotated[
        Text,
        typer.Option(
            "--now", metavar="YYYY-MM-DDTHH:MM", help="China local time (default: the time now)."
        ),
    ] = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send pending messages if it is inside the contact window (08:00-21:00), at most two a
    borrower a day; the rest wait for the next window. Messages whose day is more than a day
    gone are expired, not sent. --now is for simulations (FENQI_TODAY): never after the clock,
    never before the last send."""
    at = clock.now().replace(microsecond=0) if now is None else moment("--now", now)
    try:
        respond(db, as_json, render.key_values, dispatch, at)
    except DispatchTimeError as error:
        raise OptionError(f"--now: {error}" if now is not None else str(error)) from None


@sms_app.command("outbox")
def outbox_command(
    status: Annotated[
        Text,
        typer.Option("--status", metavar="pending|sent|expired", help="Only these messages."),
    ] = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """The queued messages, in the order they are sent."""
    chosen = None if status is None else choice("--status", status, SmsStatus)
    respond(db, as_json, _messages, outbox, chosen)


def _messages(documents: Sequence[render.Document]) -> None:
    render.show(render.table(documents, _COLUMNS, title="SMS outbox"))


@sms_app.command("sent")
def sent_command(
    phone: Annotated[str | None, typer.Option("--phone", help="Only to this phone.")] = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """What the SMS simulator delivered, newest first (sign-in codes included)."""
    respond(db, as_json, _delivered, delivered, phone)


def _delivered(documents: Sequence[render.Document]) -> None:
    render.show(render.table(documents, ("sent_at", "phone", "text"), title="Delivered SMS"))
