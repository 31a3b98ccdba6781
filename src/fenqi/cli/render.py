"""Printing a service's document: exactly as JSON with ``--json``, else for people with Rich.

People get one key/value view (nested documents in their own block, lists of documents as
tables) and one table helper; only the documents read most (a loan, a receipt, the trial
balance) have a layout of their own, built from those two.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fenqi import shown

Document = Mapping[str, Any]
RowStyle = Callable[[Document], str | None]

_NUMBER = re.compile(r"^-?\d[\d,]*(\.\d+)?%?$")
_WIDE = 240  # a loan's installments need about 140 columns, the batch's runs about 210
_LOAN_HEADER = ("id", "order_id", "merchant", "item", "product", "status", "dpd", "bucket",
                "outstanding_principal", "outstanding_interest", "outstanding_fee",
                "outstanding_penalty", "credit_balance", "amount_due")  # fmt: skip
_INSTALLMENT_COLUMNS = ("period", "due_date", "principal", "interest", "fee", "late_fee",
                        "penalty", "payment", "paid", "outstanding", "status", "dpd")  # fmt: skip
_ROW_STYLES = {"overdue": "bold red", "due": "yellow"}
_CONSENT = ("apr_compound", "apr_simple", "total_interest", "total_fee", "total_cost")
_RECEIPT = ("id", "receipt_id", "payment_id", "kind", "loan_id", "date", "amount", "channel",
            "method", "principal", "interest", "fee", "penalty", "to_credit",
            "outstanding_principal")  # fmt: skip
_AFTER_PAYMENT = ("status", "dpd", "outstanding_principal", "amount_due", "credit_balance")
_LOANS = ("id", "order_id", "merchant", "product", "principal", "periods", "status", "dpd",
          "outstanding_principal", "amount_due")  # fmt: skip
_PRODUCTS = ("code", "name", "method", "periods", "annual_rate", "fee_rate", "apr_cap")
_ACCOUNTS = ("account", "name", "debit", "credit", "balance")
_COB_RUNS = ("id", "business_date", "status", "loans", "debits_tried", "debits_succeeded",
             "debits_failed", "sms_queued", "write_offs", "chunks", "chunks_done",
             "chunks_failed", "started_at", "finished_at", "error")  # fmt: skip


def emit(document: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    """``--json`` prints the document as the service returned it; otherwise ``human`` does."""
    if as_json:
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        human(document)


def show(*parts: Table) -> None:
    """Prints to the terminal's width; piped output is not cut to 80 columns (a table only
    takes the width it needs)."""
    console = Console(width=None if sys.stdout.isatty() else _WIDE)
    for part in parts:
        console.print(part)


# -- the two building blocks --------------------------------------------------------------------


def pairs(document: Document, keys: Sequence[str] | None = None, *, title: str = "") -> Table:
    """A two-column grid of the document's plain values (all of them, or ``keys`` in order)."""
    grid = Table.grid(padding=(0, 2))
    grid.title = title or None
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key in keys if keys is not None else list(document):
        value = document.get(key)
        if key in document and not _nested(value):
            grid.add_row(_label(key), Text(_cell(key, value)))
    return grid


def table(
    rows: Sequence[Document],
    columns: Sequence[str],
    *,
    title: str = "",
    style: RowStyle | None = None,
) -> Table:
    """A table of documents, one column per key; columns of numbers are right-aligned."""
    grid = Table(title=title or None)
    cells = [[_cell(key, row.get(key)) for key in columns] for row in rows]
    for index, key in enumerate(columns):
        numeric = bool(cells) and all(_NUMBER.match(line[index]) for line in cells)
        # A value too wide is folded onto a second line, never cut off with an ellipsis.
        grid.add_column(_label(key), justify="right" if numeric else "left", overflow="fold")
    for row, line in zip(rows, cells, strict=True):
        grid.add_row(*map(Text, line), style=style(row) if style else None)
    return grid


def key_values(document: Document, *, title: str = "") -> None:
    """The view of any document: its plain values, then each nested document or list of
    documents in a block of its own."""
    show(pairs(document, title=title))
    for key, value in document.items():
        if isinstance(value, Mapping):
            key_values(value, title=_label(key))
        elif _nested(value):
            show(table(value, list(value[0]), title=_label(key)))


# -- documents with a layout of their own -------------------------------------------------------


def loan(document: Document) -> None:
    """A loan's position, then its installments with the overdue ones highlighted."""
    parts = [pairs(document, _LOAN_HEADER, title=f"Loan {document['id']}")]
    if "consent" in document:
        parts.append(pairs(document["consent"], _CONSENT, title="Consented cost"))
    installments = table(document["installments"], _INSTALLMENT_COLUMNS, style=_overdue)
    show(*parts, installments)


def loans(documents: Sequence[Document]) -> None:
    show(table(documents, _LOANS, title="Loans"))


def products(documents: Sequence[Document]) -> None:
    show(table(documents, _PRODUCTS, title="Products"))


def receipt(document: Document) -> None:
    """A receipt: number, date, amount, how it was paid and where each yuan went; after a
    payment, where the loan stands."""
    paid_with = document.get("method")
    head = {**document, "method": _method(paid_with) if paid_with else "—"}
    parts = [pairs(head, _RECEIPT, title=f"Receipt {document['id']}")]
    parts.append(table(document["allocation"], ("period", "component", "amount")))
    if "loan" in document:
        parts.append(pairs(document["loan"], _AFTER_PAYMENT, title="Loan after payment"))
    show(*parts)


def trial_balance(document: Document) -> None:
    """Every account's debits, credits and balance, the totals, and whether they agree."""
    grid = table(document["accounts"], _ACCOUNTS, title="Trial balance")
    grid.add_section()
    totals = (_cell("debit", document["total_debit"]), _cell("credit", document["total_credit"]))
    grid.add_row("total", "", *totals, "", style="bold")
    verdict = "BALANCED" if document["balanced"] else "UNBALANCED"
    grid.caption = f"[{'green' if document['balanced'] else 'bold red'}]{verdict}[/]"
    show(grid)


def cob_runs(documents: Sequence[Document]) -> None:
    show(table(documents, _COB_RUNS, title="Close-of-business runs"))


def aging(document: Document) -> None:
    """Loans and outstanding principal per bucket; a warning when the batch has not closed the
    day for every loan yet (the figures are then as of each loan's last close)."""
    grid = table(document["buckets"], ("bucket", "loans", "outstanding_principal"),
                 title=f"Aging on {document['date']}")  # fmt: skip
    grid.add_section()
    grid.add_row("total", f"{document['total_loans']:,}",
                 _cell("amount", document["total_outstanding_principal"]))  # fmt: skip
    if document["loans_not_yet_closed"]:
        grid.caption = f"{document['loans_not_yet_closed']} loans not yet closed for this day"
    show(grid)


# -- cells --------------------------------------------------------------------------------------


def _overdue(row: Document) -> str | None:
    return _ROW_STYLES.get(str(row.get("status")))


def _method(method: Document) -> str:
    return f"{method['kind']} {method['masked_account']} (method {method['id']})"


def _nested(value: Any) -> bool:
    """A document or a non-empty list of documents: shown in a block, not a cell."""
    if isinstance(value, Mapping):
        return True
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping)


def _label(key: str) -> str:
    return key.replace("_", " ")


def _cell(key: str, value: Any) -> str:
    """A value as people read it on every surface (``fenqi.shown``): amounts grouped, rates in
    percent (an APR to two places), moments in Beijing time."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return shown.value(key, value) if isinstance(value, str) else str(value)
