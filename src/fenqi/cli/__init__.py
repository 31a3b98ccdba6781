"""The ``fenqi`` command line: parses text, calls a service, renders a Rich table or ``--json``.

Bad input never shows a traceback or a usage box: it exits with code 2 and one line on stderr
saying what is wrong and what is accepted. So does a setting in the environment that cannot be
used (``FENQI_TODAY``, ``FENQI_BACKDATE_DAYS``, …), checked before any command begins. A broken
invariant (fenqi's bug, not the input's) exits 3 with one line, and changes nothing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer
from typer.exceptions import TyperException

from fenqi import settings
from fenqi.cli import cob, loans, serve
from fenqi.cli.borrowers import borrower_app
from fenqi.cli.db import db_app
from fenqi.cli.gateway import gateway_app, gateway_sim_command
from fenqi.cli.ledger import ledger_app
from fenqi.cli.methods import method_app
from fenqi.cli.products import product_app
from fenqi.cli.quote import quote_command
from fenqi.cli.seed import seed_command
from fenqi.cli.sms import sms_app
from fenqi.domain.errors import InputError, InvariantError
from fenqi.services.errors import ConflictError
from fenqi.settings import SettingError
from fenqi.store.database import DatabaseNotReadyError

app = typer.Typer(
    name="fenqi",
    help="fenqi (分期): consumer installment credit, from the checkout offer to the books.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def fenqi(context: typer.Context) -> None:
    """fenqi (分期): consumer installment credit, from the checkout offer to the books."""
    settings.check()  # a setting that cannot be used stops every command before it begins
    if context.invoked_subcommand is None:
        typer.echo(context.get_help())


app.command("quote")(quote_command)
app.add_typer(db_app, name="db")
app.add_typer(product_app, name="product")
app.add_typer(borrower_app, name="borrower")
app.add_typer(method_app, name="method")
app.command("checkout")(loans.checkout_command)
app.add_typer(loans.loan_app, name="loan")
app.command("pay")(loans.pay_command)
app.command("payoff-quote")(loans.payoff_quote_command)
app.command("prepay")(loans.prepay_command)
app.command("refund")(loans.refund_command)
app.command("refund-credit")(loans.refund_credit_command)
app.command("reverse")(loans.reverse_command)
app.command("waive")(loans.waive_command)
app.add_typer(loans.receipt_app, name="receipt")
app.add_typer(ledger_app, name="ledger")
app.add_typer(sms_app, name="sms")
app.add_typer(cob.cob_app, name="cob")
app.command("worker")(cob.worker_command)
app.add_typer(cob.report_app, name="report")
app.command("serve")(serve.serve_command)
app.add_typer(serve.user_app, name="user")
app.add_typer(serve.apikey_app, name="apikey")
app.command("seed")(seed_command)
app.add_typer(gateway_app, name="gateway")
app.command("gateway-sim")(gateway_sim_command)

BAD_INPUT = 2
BROKEN = 3  # an invariant broke: report it, do not retry it


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; the ``fenqi`` script's entry point. What the services log (a broken
    invariant) is not printed as well: the command's one line on stderr says it."""
    logging.getLogger("fenqi").addHandler(logging.NullHandler())
    try:
        code = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except (InputError, SettingError, DatabaseNotReadyError) as error:
        _refuse(str(error))
    except ConflictError as error:  # well-formed, just unlucky: the same command may be run again
        _refuse(str(error), 1)
    except InvariantError as error:  # fenqi's own bug: said in a line, its values left out
        _refuse(f"internal error ({type(error).__name__}), nothing was changed: {error}", BROKEN)
    except TyperException as error:
        _refuse(error.format_message(), getattr(error, "exit_code", BAD_INPUT))
    except typer.Abort:
        _refuse("aborted", 1)
    except Exception as error:  # a bug nothing above names: one line, never a traceback
        _refuse(f"internal error ({type(error).__name__}): the command stopped; what it had "
                "committed stands (fenqi ledger check shows the books)", BROKEN)  # fmt: skip
    sys.exit(code if isinstance(code, int) else 0)


def _refuse(message: str, exit_code: int = BAD_INPUT) -> None:
    print(f"fenqi: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(exit_code)
