"""``fenqi db``: create the database's schema, or bring an existing one up to date."""

from __future__ import annotations

import json
from typing import Any

import typer

from fenqi.cli.context import DatabaseOption, database
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption
from fenqi.services.products import seed_products
from fenqi.store.database import current_revision, database_url, upgrade, url_without_password

db_app = command_group("Create or upgrade the database.")


@db_app.command("init")
def init_command(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Create fenqi's tables and chart of accounts (an existing database is brought up to date);
    a database without products gets the shipped catalog, so checkout works at once."""
    _report(_upgrade(db, seed=True), as_json)


@db_app.command("upgrade")
def upgrade_command(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Apply any migrations this fenqi has that the database has not seen yet."""
    _report(_upgrade(db, seed=False), as_json)


def _upgrade(db: str | None, *, seed: bool) -> dict[str, Any]:
    """Migrates, then with ``seed`` loads the shipped catalog into a database that has no
    products: one that has some keeps them, as an operator may have loaded her own."""
    with database(db, require=False) as context:
        upgrade(context.engine)
        report: dict[str, Any] = {
            "url": url_without_password(database_url(db)),
            "revision": current_revision(context.engine),
        }
        if seed:
            report["products_loaded"] = len(seed_products(context))
    return report


def _report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report))
        return
    line = f"database {report['url']} is at revision {report['revision']}"
    if "products_loaded" in report:
        loaded = report["products_loaded"]
        where = "from the shipped catalog" if loaded else "(it already has products)"
        line += f"; loaded {loaded} products {where}"
    typer.echo(line)
