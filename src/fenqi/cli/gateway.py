"""``fenqi gateway-sim`` runs the withholding gateway simulator, a server of its own that the
HTTP adapter talks to as to a real gateway; ``fenqi gateway reconcile`` settles the debit and
refund requests a crash or a lost answer left open, by asking the gateway about each;
``fenqi gateway payouts`` lists the payouts the gateway has not paid, and ``fenqi gateway
retry-payout`` sends a failed one again, ``paid-by-hand`` records one paid outside the gateway."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from fenqi import settings
from fenqi.channels.signing import Signer
from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import JsonOption
from fenqi.cli.serve import listening_socket
from fenqi.services import payouts, withholding

gateway_app = command_group("Debits and payouts through the withholding gateway.")


def gateway_sim_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8700,
    state: Annotated[
        Path, typer.Option(help="Its SQLite file: balances, orders, refunds, switches.")
    ] = Path("gateway-sim.sqlite3"),
) -> None:
    """Run the withholding gateway simulator until interrupted. It signs and checks every
    message with FENQI_GATEWAY_SECRET (unset: the development secret of simulation mode);
    its balances and switches are set on its own /admin endpoints, never on fenqi's API."""
    from fenqi.channels import gateway_sim  # noqa: PLC0415 - loads for this command only

    signer = Signer(settings.gateway_secret(simulating=True))
    listener = listening_socket(host, port)  # refuses a bad --host or a taken --port in a line
    listener.close()
    server = gateway_sim.serve(host, port, state, signer)
    print(f"fenqi gateway-sim: listening on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@gateway_app.command("reconcile")
def reconcile_command(
    older_than: Annotated[
        int,
        typer.Option(
            "--older-than",
            metavar="SECONDS",
            min=0,
            max=86_400,
            help="Only requests no answer has touched for this long.",
        ),
    ] = int(withholding.RECONCILE_AFTER.total_seconds()),
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the gateway about each debit or refund request still pending or unknown and record
    its answer: a debit it took is recorded as the payment, a refund it paid as paid, one it
    never had as failed."""
    respond(db, as_json, render.key_values, withholding.reconcile,
            older_than=timedelta(seconds=older_than))  # fmt: skip


@gateway_app.command("payouts")
def payouts_command(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """List the payouts to bound methods the gateway has not paid: pending (the reconciler
    settles them) or failed (with the gateway's reason: retry-payout sends one again)."""
    respond(db, as_json, _payouts, payouts.unpaid)


@gateway_app.command("retry-payout")
def retry_payout_command(
    payout: Annotated[str, typer.Argument(metavar="PAYOUT_ID", help="C12-5 or V12-6.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a failed payout (a credit refund's, a merchant refund's or a reversal's) to the
    gateway again, under a new refund id, and say what it answered."""
    respond(db, as_json, render.key_values, payouts.retry, payout)


@gateway_app.command("paid-by-hand")
def paid_by_hand_command(
    payout: Annotated[str, typer.Argument(metavar="PAYOUT_ID", help="C12-5 or V12-6.")],
    reference: Annotated[str, typer.Option(help="The transfer's own reference (ASCII).")],
    reason: Annotated[str, typer.Option(help="Why it was paid outside the gateway.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record that a failed payout was paid back outside the gateway (a bank transfer, at a
    counter): it is no longer listed as unpaid, and the gateway is never asked to pay it."""
    respond(db, as_json, render.key_values, payouts.paid_by_hand, payout, reference, reason)


def _payouts(documents: list[dict[str, object]]) -> None:
    columns = ["id", "loan_id", "amount", "channel", "method_id", "status", "reason"]
    render.show(render.table(documents, columns, title="Payouts not paid"))
