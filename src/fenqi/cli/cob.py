"""The nightly batch on the command line: ``fenqi cob`` closes a business day (or catches up
through one), ``fenqi worker`` takes chunks of any run, ``fenqi cob status`` lists the runs, and
``fenqi report`` shows the aging of the portfolio and what a run did."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import date, timedelta
from functools import partial
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.exceptions import TyperException

from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, database, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption, OptionError, Text, day, whole
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context
from fenqi.wire import COB_NOTHING_TO_DO as NOTHING_TO_DO
from fenqi.wire import document, documents

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


def _quiet_driver() -> None:
    """A chunk that fails inside psycopg's pipeline (a bulk UPDATE) also makes psycopg warn, on
    stderr, that ending the pipeline failed: the chunk's own error is what is recorded and
    reported, so the batch's commands keep stderr for their one line."""
    logging.getLogger("psycopg").setLevel(logging.ERROR)


class BatchFailed(TyperException):
    """A run whose chunks failed for good (or a worker's chunks): the input was well formed, so
    exit code 1 rather than 2."""

    exit_code = 1


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
    write-offs and dunning messages for each loan with work, in chunks, exactly once. Loans
    behind the day are caught up first, day by day; a day that has not come is refused."""
    if context.invoked_subcommand is not None:
        return
    if (on is None) == (through is None):
        raise OptionError("give --date D to close one business day, or --through D to catch up")
    _quiet_driver()
    option, text = ("--date", on) if on is not None else ("--through", through)
    business_day = day(option, text)
    with database(db) as shop:
        take = partial(_take, shop, workers, db, as_json)
        try:
            closed = documents(cob.close_through(shop, business_day, chunk_size=chunk_size,
                                                 take=take))  # fmt: skip
        except cob.BusinessDayError as error:
            raise OptionError(f"{option}: {error}") from None
    _show(closed, one_day=on is not None, as_json=as_json)
    last = closed[-1]
    if last["status"] == "failed":
        raise BatchFailed(
            f"close of business {last['business_date']} failed (run {last['id']}): "
            f"{last['error']}; once the cause is fixed, `fenqi cob --date "
            f"{last['business_date']}` takes up the failed chunks"
        )


def _show(closed: list[dict[str, Any]], *, one_day: bool, as_json: bool) -> None:
    """``--date``: the day's document with the days caught up before it; ``--through``: one
    document a day."""
    if as_json:
        *before, last = closed
        render.emit({**last, "caught_up": before} if one_day else closed, True, render.key_values)
        return
    if one_day and len(closed) > 1:
        first, last = date.fromisoformat(closed[0]["business_date"]), closed[-1]["business_date"]
        behind = first - timedelta(days=1)
        typer.echo(f"Caught up: loans with work were closed only through {behind}; each day "
                   f"with work from {first} on was closed, in turn, before {last}.")  # fmt: skip
    for result in closed:
        title = f"Close of business {result['business_date']}"
        if result["status"] == NOTHING_TO_DO:
            typer.echo(f"{title}: {result['detail']}")
        else:
            render.key_values(result, title=title)


def _take(shop: Context, workers: int, db: Text, quiet: bool, run_id: int,
          business_day: date) -> None:  # fmt: skip
    """Does a run's chunks with a progress bar: in this process, or in ``workers`` worker
    processes on PostgreSQL."""
    planned = document(cob.run_report(shop, run_id))["chunks"]
    total, done = len(planned), sum(chunk["status"] == "done" for chunk in planned)
    with _bar(f"{business_day}", total, quiet) as bar:
        task = bar.add_task("chunks", total=total, completed=done, loans=0, rate=0.0)
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


def _spawn_and_watch(shop: Context, run_id: int, workers: int, db: Text, bar: Progress, task: Any,
                     began: float) -> None:  # fmt: skip
    """Starts worker processes on this machine (others may run ``fenqi worker`` anywhere) and
    follows the run's chunks until every one is done or failed for good, or the workers have
    all stopped (the chunks they leave, this process takes). The workers say nothing: a failed
    chunk is recorded with its error, and this command reports the run."""
    command = [sys.executable, "-m", "fenqi", "worker", "--run", str(run_id), "--until-idle"]
    if db is not None:
        command += ["--db", db]
    processes = [subprocess.Popen(command, stderr=subprocess.DEVNULL) for _ in range(workers)]
    while True:
        report = document(cob.run_report(shop, run_id))
        done = [chunk for chunk in report["chunks"] if chunk["status"] == "done"]
        settled = [chunk for chunk in report["chunks"] if chunk["status"] in ("done", "failed")]
        loans = sum(chunk["loans"] for chunk in done)
        bar.update(
            task,
            completed=len(done),
            loans=loans,
            rate=loans / max(time.perf_counter() - began, 1e-9),
        )
        if len(settled) == len(report["chunks"]) or all(p.poll() is not None for p in processes):
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
    failed: list[str] = []
    _quiet_driver()
    with database(db) as shop:
        while True:
            try:
                worked = cob.work(shop, only)
            except cob.BusinessDayError as error:
                raise OptionError(f"--run: {error}") from None
            if until_idle:
                failed = worked.failed
                break
            for said in worked.failed:  # said, and on with the other chunks
                typer.echo(f"fenqi: error: {said}", err=True)
            time.sleep(1.0)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise BatchFailed(f"{failed[0]}{more}; `fenqi cob status` shows the runs")


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
