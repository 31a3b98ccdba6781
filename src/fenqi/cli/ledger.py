"""``fenqi ledger``: the books behind every yuan, and the check that they match the loans."""

from __future__ import annotations

import typer

from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption
from fenqi.services.books import check_books, trial_balance

ledger_app = command_group("Trial balance and the books check.")

INCONSISTENT = 1


@ledger_app.command("trial-balance")
def trial_balance_command(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Debits, credits and balance per account over every posting, and whether they agree."""
    respond(db, as_json, render.trial_balance, trial_balance)


@ledger_app.command("check")
def check_command(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Every loan's books against its replayed state; exit code 1 when any differ, so a cron
    job or CI step fails loudly."""
    report = respond(db, as_json, render.key_values, check_books)
    if report.differences:
        raise typer.Exit(INCONSISTENT)
