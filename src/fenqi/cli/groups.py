"""Command groups (``fenqi db``, ``fenqi loan``, …) that behave as bare ``fenqi`` does."""

from __future__ import annotations

import typer


def command_group(help_text: str) -> typer.Typer:
    """A group whose bare name prints its help and exits 0. Typer's ``no_args_is_help`` would
    raise a usage error instead, which ``fenqi.cli.main`` reports as bad input (exit 2)."""
    group = typer.Typer(help=help_text, invoke_without_command=True)

    @group.callback()
    def bare(context: typer.Context) -> None:
        if context.invoked_subcommand is None:
            typer.echo(context.get_help())

    return group
