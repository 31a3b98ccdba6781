"""``fenqi method``: a borrower's repayment methods (bank card, Alipay, WeChat Pay).

The built-in payment channel is a simulator that keeps a balance per method; ``--sim-balance``
sets it, so a demo or a test can make an auto-debit fail on purpose. Those controls exist in
simulation mode only: on for the command line unless ``FENQI_SIMULATION=0``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fenqi import settings
from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import BorrowerOption, JsonOption, OptionError, Text, money, whole
from fenqi.domain.money import Money
from fenqi.services.borrowers import (
    bind_method,
    fund_method,
    set_default_method,
    unbind_method,
)

method_app = command_group("Bind, choose and unbind repayment methods.")

MethodArgument = Annotated[str, typer.Argument(metavar="METHOD_ID", help="The method's id.")]
_BALANCE_HELP = "The payment simulator's balance for this method, in yuan."


@method_app.command("bind")
def bind_command(
    borrower: BorrowerOption,
    kind: Annotated[str, typer.Option(metavar="KIND", help="bank_card, alipay or wechat.")],
    account: Annotated[
        str, typer.Option(metavar="NO", help="Card number or account; only a mask is kept.")
    ],
    default: Annotated[
        bool, typer.Option("--default", help="Make it the method debited on due dates.")
    ] = False,
    sim_balance: Annotated[Text, typer.Option(metavar="AMOUNT", help=_BALANCE_HELP)] = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bind a repayment method; a borrower's first one becomes the default."""
    borrower_id = whole("--borrower", borrower)
    balance = None if sim_balance is None else _simulated(sim_balance)
    respond(
        db,
        as_json,
        render.key_values,
        bind_method,
        borrower_id,
        kind,
        account,
        default=default,
        sim_balance=balance,
    )


@method_app.command("default")
def default_command(
    method: MethodArgument, db: DatabaseOption = None, as_json: JsonOption = False
) -> None:
    """Make a method the one debited on due dates."""
    respond(db, as_json, render.key_values, set_default_method, whole("METHOD_ID", method))


@method_app.command("unbind")
def unbind_command(
    method: MethodArgument, db: DatabaseOption = None, as_json: JsonOption = False
) -> None:
    """Remove a method; if it was the default, the oldest remaining one takes its place."""
    respond(db, as_json, render.key_values, unbind_method, whole("METHOD_ID", method))


@method_app.command("fund")
def fund_command(
    method: MethodArgument,
    sim_balance: Annotated[str, typer.Option(metavar="AMOUNT", help=_BALANCE_HELP)],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the payment simulator's balance for a method, e.g. before a due date."""
    balance = _simulated(sim_balance)
    respond(db, as_json, render.key_values, fund_method, whole("METHOD_ID", method), balance)


def _simulated(text: str) -> Money:
    """A simulated balance, in simulation mode only (``FENQI_SIMULATION=0`` turns it off)."""
    if not settings.simulation(True):
        raise OptionError(
            "--sim-balance: simulated balances exist in simulation mode only, and "
            f"{settings.SIMULATION_VARIABLE}=0 turns it off; unset it or set it to 1"
        )
    return money("--sim-balance", text)
