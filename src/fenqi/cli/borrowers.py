"""``fenqi borrower``: open a borrower's credit line (授信额度) and look at it."""

from __future__ import annotations

from typing import Annotated

import typer

from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption, money, whole
from fenqi.services.borrowers import create_borrower, show_borrower

borrower_app = command_group("Create and show borrowers.")


@borrower_app.command("create")
def create_command(
    name: Annotated[str, typer.Option(metavar="NAME", help="The borrower's name.")],
    phone: Annotated[str, typer.Option(metavar="PHONE", help="Mobile number, e.g. 13800138000.")],
    limit: Annotated[str, typer.Option(metavar="AMOUNT", help="Credit limit in yuan, e.g. 20000.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a borrower with a credit limit."""
    credit = money("--limit", limit)
    respond(db, as_json, render.key_values, create_borrower, name, phone, credit)


@borrower_app.command("show")
def show_command(
    borrower: Annotated[str, typer.Argument(metavar="ID", help="The borrower's id.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """A borrower's limit, what of it is available, and the bound repayment methods."""
    borrower_id = whole("ID", borrower)
    respond(db, as_json, render.key_values, show_borrower, borrower_id)
