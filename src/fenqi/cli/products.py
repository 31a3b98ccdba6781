"""``fenqi product``: load a catalog file into the database, list what checkout can offer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption
from fenqi.services.products import list_products, load_products

product_app = command_group("Load and list the product catalog.")


@product_app.command("load")
def load_command(
    file: Annotated[
        Path | None,
        typer.Argument(metavar="[FILE.toml]", help="A catalog file (default: the shipped one)."),
    ] = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add or replace every product of a catalog file, or of the shipped catalog; loans already
    made keep theirs."""
    respond(db, as_json, render.products, load_products, file)


@product_app.command("list")
def list_command(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """The products checkout can offer."""
    respond(db, as_json, render.products, list_products)
