"""The nightly batch on the command line: ``fenqi cob`` closes a business day (or catches up
through one), ``fenqi worker`` takes chunks of any run, ``fenqi cob status`` lists the runs, and
``fenqi report`` shows the aging of the portfolio and what a run did."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, database, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption, OptionError, Text, day, whole
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context

cob_app = typer.Typer(help="Close business days: the nightly batch.", invoke_without_command=True)
report_app = command_group("Reports over the portfolio and the batch.")

WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers", min=1, max=64, help="Processes taking chunks (PostgreSQL; SQLite uses one)."
    ),
]
BusinessDayOption = Annotated[
    Text, typer.Option("--date", metavar="YYYY-MM-DD", help="The business day to close.")
]
ThroughOption = Annotated[
    Text,
    typer.Option(
        "--through", metavar="YYYY-MM-DD", help="Close every day to this one, from each watermark."
    ),
]
RunOption = Annotated[Text, typer.Option("--run", metavar="RUN_ID", help="Only this run's chunks.")]
UntilIdleOption = Annotated[
    bool, typer.Option("--until-idle", help="Stop when no chunk is queued.")
]
ReportDayOption = Annotated[
    Text, typer.Option("--date", metavar="YYYY-MM-DD", help="The day (default: today).")
]
ChunkOption = Annotated[
    int, typer.Option("--chunk-size", min=1, max=100_000, help="Loans per chunk (job).")
]


@cob_app.callback(invoke_without_command=True)
def cob_command(
    context: typer.Context,
    on: BusinessDayOption = None,
    through: ThroughOption = None,
    workers: WorkersOption = 1,
    chunk_size: ChunkOption = cob.CHUNK_SIZE,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Close business day --date (or every day --through): debits, ageing, penalties, late fees,
    write-offs and dunning messages for each loan with work, in chunks, exactly once."""
    if context.invoked_subcommand is not None:
        return
    if (on is None) == (through is None):
        raise OptionError("give --date D to close one business day, or --through D to catch up")
    with database(db) as shop:
        days = (
            [day("--date", on)]
            if on is not None
            else cob.days_to_close(shop, day("--through", through))
        )
        results = [
            _close_day(shop, business_day, workers, chunk_size, db, as_json)
            for business_day in days
        ]
    if as_json:
        render.emit(
            results[0] if on is not None else results, as_json=True, human=render.key_values
        )
    else:
        for result in results:
            render.key_values(result, title=f"Close of business {result['business_date']}")


def _close_day(shop: Context, business_day: date, workers: int, chunk_size: int, db: Text,
               quiet: bool) -> dict[str, Any]:  # fmt: skip
    run_id = cob.start_run(shop, business_day, chunk_size)
    planned = cob.run_report(shop, run_id)["chunks"]
    total = len(planned)
    with _bar(f"{business_day}", total, quiet) as bar:
        task = bar.add_task("chunks", total=total, loans=0, rate=0.0)
        began, loans = time.perf_counter(), 0

        def advance(counts: dict[str, Any]) -> None:
            nonlocal loans
            loans += counts.get("loans", 0)
            bar.update(
                task, advance=1, loans=loans, rate=loans / max(time.perf_counter() - began, 1e-9)
            )

        if workers > 1 and shop.engine.dialect.name == "postgresql":
            _spawn_and_watch(shop, run_id, workers, db, bar, task, began)
        else:
            cob.work(shop, run_id, advance)
    return cob.finish_run(shop, run_id)


def _spawn_and_watch(shop: Context, run_id: int, workers: int, db: Text, bar: Progress, task: Any,
                     began: float) -> None:  # fmt: skip
    """Starts worker processes on this machine (others may run ``fenqi worker`` anywhere) and
    follows the run's chunks until every one is done."""
    command = [sys.executable, "-m", "fenqi", "worker", "--run", str(run_id), "--until-idle"]
    if db is not None:
        command += ["--db", db]
    processes = [subprocess.Popen(command) for _ in range(workers)]
    while True:
        report = cob.run_report(shop, run_id)
        done = [chunk for chunk in report["chunks"] if chunk["status"] == "done"]
        loans = sum(chunk["loans"] for chunk in done)
        bar.update(
            task,
            completed=len(done),
            loans=loans,
            rate=loans / max(time.perf_counter() - began, 1e-9),
        )
        if len(done) == len(report["chunks"]) or all(p.poll() is not None for p in processes):
            break
        time.sleep(0.3)
    for process in processes:
        process.wait()


def _bar(label: str, total: int, quiet: bool) -> Progress:
    return Progress(
        TextColumn(f"[bold]close of business {label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loans]:,} loans, {task.fields[rate]:,.0f} loans/s"),
        TimeElapsedColumn(),
        disable=quiet or total == 0,
        transient=False,
    )


@cob_app.command("status")
def status_command(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """The latest runs: business day, start and end, counts, status."""
    respond(db, as_json, render.cob_runs, cob.runs)


def worker_command(
    run_id: RunOption = None,
    until_idle: UntilIdleOption = False,
    db: DatabaseOption = None,
) -> None:  # fmt: skip
    """Take chunks of close-of-business runs and do them; start as many as you like, on any
    machine that reaches the database (PostgreSQL: each chunk is locked with SKIP LOCKED)."""
    only = None if run_id is None else whole("--run", run_id)
    with database(db) as shop:
        while True:
            cob.work(shop, only)
            if until_idle:
                return
            time.sleep(1.0)


@report_app.command("aging")
def aging_command(
    on: ReportDayOption = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Loans and outstanding principal by delinquency bucket (M0 … M7, written off)."""
    respond(db, as_json, render.aging, cob.aging, day("--date", on))


@report_app.command("cob")
def cob_report_command(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """What one close-of-business run did, chunk by chunk."""
    respond(db, as_json, render.key_values, cob.run_report, whole("RUN_ID", run_id))
