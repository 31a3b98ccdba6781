"""``fenqi seed``: a synthetic portfolio with two years of realistic history, for demos, load
tests and benchmarks of the nightly batch."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fenqi import seeding
from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, database
from fenqi.cli.options import JsonOption, day, whole


def seed_command(
    loans: Annotated[str, typer.Option("--loans", metavar="N", help="Loans to make.")],
    borrowers: Annotated[str, typer.Option("--borrowers", metavar="M", help="Borrowers.")],
    start: Annotated[str, typer.Option("--start", metavar="YYYY-MM-DD", help="As of this day.")],
    rng_seed: Annotated[str, typer.Option("--seed", metavar="S", help="Random seed.")] = "1",
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add M borrowers and N loans from the shipped products (loaded first into a database that
    has none) to a database `fenqi db init` or `upgrade` made: borrowers who pay on time, by
    hand, late, chronically late or not at all, each loan with the payments and failed
    auto-debits of its past (loans began over the two years before --start), its books and its
    state as of --start, closed through that day (run `fenqi cob` from the next day). The same
    seed makes the same portfolio."""
    count, people = whole("--loans", loans), whole("--borrowers", borrowers)
    number, as_of = whole("--seed", rng_seed), day("--start", start)
    with database(db) as context, _Meter(count, quiet=as_json) as meter:
        result = seeding.seed(context, count, people, as_of, number, progress=meter.written)
    render.emit(result, as_json, lambda document: render.key_values(document, title="Seeded"))


class _Meter:
    """Loans written and loans per second, on stderr. The bar appears with the first batch
    written, so a refused request prints only its one line, and is refreshed by hand, so no
    refresh thread runs while the seeding forks its workers."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.total, self.began = total, time.perf_counter()
        self.task: TaskID | None = None
        self.bar = Progress(
            TextColumn("[bold]seeding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:,.0f} loans/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            auto_refresh=False,
            disable=quiet,
        )

    def written(self, done: int) -> None:
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("loans", total=self.total, rate=0.0)
        rate = done / max(time.perf_counter() - self.began, 1e-9)
        self.bar.update(self.task, completed=done, rate=rate, refresh=True)

    def __enter__(self) -> _Meter:
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()
