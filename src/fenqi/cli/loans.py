"""A loan's life on the command line: checkout, looking at it, paying, prepaying, and the
corrections (a merchant's refund, a reversed payment, a waived penalty or fee), with receipts.

Each command parses its text, calls one service and renders what it returns; the rules (limits,
allocation, payoff amounts, what may be reversed or waived) are the services' and the domain's.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fenqi.cli import render
from fenqi.cli.context import DatabaseOption, respond
from fenqi.cli.groups import command_group
from fenqi.cli.options import (
    AsOfOption,
    BorrowerOption,
    DateOption,
    JsonOption,
    OptionError,
    Text,
    booked,
    choice,
    day,
    money,
    whole,
)
from fenqi.clock import today
from fenqi.domain.events import PrepayMode, WaiverKind
from fenqi.services import servicing
from fenqi.services.errors import ConfirmationNeededError
from fenqi.services.servicing import Order, Source

loan_app = command_group("Show a loan, or a borrower's loans.")
receipt_app = command_group("Show receipts.")

LoanArgument = Annotated[str, typer.Argument(metavar="LOAN", help="The loan's id.")]
AmountOption = Annotated[
    str, typer.Option("--amount", metavar="AMOUNT", help="In yuan, e.g. 888.49.")
]
MethodOption = Annotated[
    Text, typer.Option("--method", metavar="ID", help="A bound method (default: the default one).")
]
ChannelOption = Annotated[
    Text,
    typer.Option(
        "--channel", metavar="manual", help="manual: received by hand (a counter, a transfer)."
    ),
]
KeyOption = Annotated[
    Text,
    typer.Option(
        "--idempotency-key",
        metavar="K",
        help="A retry with the same key and request replays the first result.",
    ),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", metavar="TEXT", help="Why; kept in the audit log.")
]
OverpaymentOption = Annotated[
    bool,
    typer.Option(
        "--allow-overpayment",
        help="Take more than what pays the loan off that day (the excess is a credit balance); "
        "the audit log names FENQI_ACTOR as approving it.",
    ),
]


# -- checkout and reading -----------------------------------------------------------------------


def checkout_command(
    borrower: BorrowerOption,
    order: Annotated[
        str, typer.Option(metavar="ORDER", help="The mall's order id; one plan per order.")
    ],
    merchant: Annotated[str, typer.Option(metavar="M", help="The merchant owed the price.")],
    amount: AmountOption,
    product: Annotated[
        str, typer.Option(metavar="CODE", help="A product code, e.g. mall-12 or cash.")
    ],
    periods: Annotated[
        Text, typer.Option(metavar="N", help="Number of periods, when the product offers several.")
    ] = None,
    item: Annotated[
        Text, typer.Option(metavar="TEXT", help="What was bought, shown on the borrower's plans.")
    ] = None,
    on: DateOption = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Turn an order into an installment plan, within the borrower's available limit."""
    request = Order(
        borrower_id=whole("--borrower", borrower),
        order_id=order,
        merchant=merchant,
        amount=money("--amount", amount),
        product=product,
        periods=None if periods is None else whole("--periods", periods),
        day=booked("--date", on),
        item=item,
    )
    respond(db, as_json, render.loan, servicing.checkout, request)


@loan_app.command("show")
def show_command(
    loan: LoanArgument,
    as_of: AsOfOption = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """A loan as of a day: status, days past due, what is outstanding, every installment."""
    loan_id, seen = whole("LOAN", loan), day("--as-of", as_of)
    respond(db, as_json, render.loan, servicing.show_loan, loan_id, seen)


@loan_app.command("list")
def list_command(
    borrower: BorrowerOption,
    as_of: AsOfOption = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """A borrower's loans as of a day."""
    borrower_id, seen = whole("--borrower", borrower), day("--as-of", as_of)
    respond(db, as_json, render.loans, servicing.list_loans, borrower_id, seen)


def payoff_quote_command(
    loan: LoanArgument,
    on: DateOption = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """What pays the whole loan off on a day, by component, and until when the amount holds."""
    loan_id, effective = whole("LOAN", loan), day("--date", on)
    respond(db, as_json, render.key_values, servicing.quote_payoff, loan_id, effective)


@receipt_app.command("show")
def receipt_command(
    receipt: Annotated[str, typer.Argument(metavar="RECEIPT_ID", help="e.g. R12-3.")],
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """A receipt (凭证): what was paid, how, and where each yuan went."""
    respond(db, as_json, render.receipt, servicing.show_receipt, receipt)


# -- money in -----------------------------------------------------------------------------------


def pay_command(
    loan: LoanArgument,
    amount: AmountOption,
    method: MethodOption = None,
    channel: ChannelOption = None,
    on: DateOption = None,
    idempotency_key: KeyOption = None,
    allow_overpayment: OverpaymentOption = False,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pay up to what pays the loan off that day; it is allocated by the product's rules and
    gets a receipt. Paying that much (the payoff quote) pays the loan off."""
    loan_id, paid = whole("LOAN", loan), money("--amount", amount)
    source, effective, key = _source(method, channel), booked("--date", on), _key(idempotency_key)
    respond(
        db,
        as_json,
        render.receipt,
        servicing.pay,
        loan_id,
        paid,
        source,
        effective,
        idempotency_key=key,
        allow_overpayment=allow_overpayment,
    )


def prepay_command(
    loan: LoanArgument,
    amount: Annotated[
        Text, typer.Option("--amount", metavar="AMOUNT", help="Principal to repay early, in yuan.")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Pay the whole loan off.")] = False,
    mode: Annotated[
        str,
        typer.Option(
            metavar="MODE", help="reduce-installment (same periods) or shorten-term (same payment)."
        ),
    ] = PrepayMode.REDUCE_INSTALLMENT.value,
    method: MethodOption = None,
    channel: ChannelOption = None,
    on: DateOption = None,
    idempotency_key: KeyOption = None,
    allow_overpayment: OverpaymentOption = False,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Repay early: part of the principal (--amount) or the whole loan (--full; nothing to pay
    when what was paid ahead covers it)."""
    if full == (amount is not None):
        raise OptionError("give --amount AMOUNT to repay part early, or --full, not both")
    loan_id, paid = whole("LOAN", loan), None if amount is None else money("--amount", amount)
    plan = choice("--mode", mode, PrepayMode)
    source, effective, key = _source(method, channel), booked("--date", on), _key(idempotency_key)
    respond(
        db,
        as_json,
        render.receipt,
        servicing.prepay,
        loan_id,
        paid,
        mode=plan,
        source=source,
        day=effective,
        idempotency_key=key,
        allow_overpayment=allow_overpayment,
    )


def _source(method: Text, channel: Text) -> Source:
    """A bound method by id, the manual channel, or (neither given) the default method."""
    if method is not None and channel is not None:
        raise OptionError("give --method ID or --channel manual, not both")
    if channel is not None and channel.strip().lower() != "manual":
        raise OptionError(
            f'--channel: "{channel}" is not a channel; the only one is manual '
            "(to debit a bound method, give --method ID)"
        )
    method_id = None if method is None else whole("--method", method)
    return Source(method_id=method_id, manual=channel is not None)


def _key(text: Text) -> str | None:
    if text is not None and not text.strip():
        raise OptionError("--idempotency-key: give a non-empty key, e.g. a request's UUID")
    return text


# -- corrections --------------------------------------------------------------------------------


def refund_command(
    loan: LoanArgument,
    amount: AmountOption,
    on: DateOption = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """The merchant refunds part or all of the price; the plan is re-priced on the rest."""
    loan_id, refunded = whole("LOAN", loan), money("--amount", amount)
    effective = booked("--date", on)
    respond(db, as_json, render.key_values, servicing.refund, loan_id, refunded, effective)


def refund_credit_command(
    loan: LoanArgument,
    amount: Annotated[
        Text, typer.Option("--amount", metavar="AMOUNT", help="Part of it (default: all of it).")
    ] = None,
    on: DateOption = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pay the borrower's credit balance (what she paid beyond what she owed) back where it came
    from: the methods that paid it in, most recent first; money taken by hand, by hand."""
    loan_id, effective = whole("LOAN", loan), booked("--date", on)
    part = None if amount is None else money("--amount", amount)
    respond(db, as_json, render.key_values, servicing.refund_credit, loan_id, part, effective)


def reverse_command(
    payment: Annotated[str, typer.Argument(metavar="PAYMENT_ID", help="e.g. P12-3.")],
    reason: ReasonOption,
    on: DateOption = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help="Reverse even though it reopens a settled plan or makes a current one overdue "
            "(without it, such a reversal is refused and its consequences printed).",
        ),
    ] = False,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take back a mistaken payment: the money goes back, the loan is as if never paid."""
    effective = booked("--date", on)
    try:
        respond(db, as_json, render.key_values, servicing.reverse, payment, reason, effective,
                confirm=yes, today=today())  # fmt: skip
    except ConfirmationNeededError as needed:
        raise OptionError(f"{needed.what}; add --yes to reverse it anyway") from None


def waive_command(
    loan: LoanArgument,
    what: Annotated[str, typer.Option("--what", metavar="penalty|fee", help="What to forgive.")],
    amount: AmountOption,
    reason: ReasonOption,
    on: DateOption = None,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Forgive penalty or fee (late fees included) fallen due and still owed, oldest first, with
    a reason in the audit log."""
    loan_id, kind = whole("LOAN", loan), choice("--what", what, WaiverKind)
    forgiven, effective = money("--amount", amount), booked("--date", on)
    respond(
        db,
        as_json,
        render.key_values,
        servicing.waive,
        loan_id,
        kind,
        forgiven,
        reason=reason,
        day=effective,
    )
