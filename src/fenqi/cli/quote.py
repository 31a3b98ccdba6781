"""``fenqi quote``: a plan's schedule, what it costs, and its APR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fenqi import wire
from fenqi.catalog import read_catalog
from fenqi.cli.options import OptionError, Text, day
from fenqi.domain.caps import Cap, parse_cap
from fenqi.domain.money import ZERO
from fenqi.domain.quote import Quote
from fenqi.domain.rates import format_percent
from fenqi.domain.schedule import Method
from fenqi.services.quoting import FieldError, PlanRequest, quote_request


def quote_command(
    principal: Annotated[str, typer.Option(help="Amount lent, in yuan: 10000 or 10,000.00.")],
    periods: Annotated[
        Text, typer.Option(help="Number of monthly periods (bullet: months).")
    ] = None,
    method: Annotated[
        Text,
        typer.Option(help="equal-installment, equal-principal, interest-only, bullet or flat-fee."),
    ] = None,
    annual_rate: Annotated[Text, typer.Option(help="Annual interest rate: 12% or 0.12.")] = None,
    fee_rate: Annotated[
        Text, typer.Option(help="flat-fee: fee per period on the original principal, e.g. 0.6%.")
    ] = None,
    fee_total_rate: Annotated[
        Text, typer.Option(help="flat-fee: fee for the whole plan, split evenly, e.g. 7.5%.")
    ] = None,
    upfront_fee: Annotated[
        Text, typer.Option(help="Fee deducted from the amount received, in yuan.")
    ] = None,
    start: Annotated[
        Text, typer.Option(help="Disbursement date, YYYY-MM-DD (default: today).")
    ] = None,
    cap: Annotated[Text, typer.Option(help="APR cap, compounded: 24% (default), or 4xLPR.")] = None,
    day_count: Annotated[Text, typer.Option(help="30/360 (default), act/360 or act/365.")] = None,
    repayment_day: Annotated[
        Text, typer.Option(help="Fixed day of month for due dates (1-31).")
    ] = None,
    first_period: Annotated[
        Text, typer.Option(help="With --repayment-day: short (default) or long.")
    ] = None,
    product: Annotated[
        Text, typer.Option(help="A catalog product code, e.g. mall-12 or cash.")
    ] = None,
    catalog: Annotated[
        Path | None, typer.Option(help="A product catalog TOML file (default: the shipped one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Quote a plan: every installment, the total cost and the APR (simple and compounded)."""
    request = PlanRequest(
        principal=principal,
        start=day("--start", start),
        periods=periods,
        method=method,
        annual_rate=annual_rate,
        fee_rate=fee_rate,
        fee_total_rate=fee_total_rate,
        upfront_fee=upfront_fee,
        day_count=day_count,
        repayment_day=repayment_day,
        first_period=first_period,
        cap=cap,
        product=product,
    )
    products = read_catalog(catalog) if catalog is not None else None
    try:
        offer = quote_request(request, products)
    except FieldError as error:
        flag = "--" + error.field.replace("_", "-")
        raise OptionError(f"{flag}: {error}") from None
    if as_json:
        typer.echo(json.dumps(wire.quote(offer), ensure_ascii=False, indent=2))
    else:
        _render(offer, None if cap is None else parse_cap(cap))


def _render(offer: Quote, cap: Cap | None) -> None:
    console = Console()
    plan, terms = offer.schedule, offer.terms
    title = f"{offer.product or terms.method} · {terms.principal} over {terms.periods} " + (
        "months" if terms.method is Method.BULLET else "periods"
    )
    table = Table(title=title, caption=f"from {terms.start.isoformat()}")
    for heading in ("Period", "Due date", "Principal", "Interest", "Fee", "Payment", "Balance"):
        table.add_column(heading, justify="left" if heading == "Due date" else "right")
    for row in plan.installments:
        amounts = (row.principal, row.interest, row.fee, row.payment, row.balance)
        table.add_row(str(row.period), row.due_date.isoformat(), *map(str, amounts))
    console.print(table)
    summary = Table.grid(padding=(0, 2))
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    summary.add_row("[bold]APR, compounded (IRR) 年化利率(复利)[/]",
                    f"[bold]{format_percent(offer.apr.compound)}[/]")  # fmt: skip
    summary.add_row(
        "[bold]APR, simple 年化利率(单利)[/]", f"[bold]{format_percent(offer.apr.simple)}[/]"
    )
    summary.add_row("Principal 本金", str(terms.principal))
    if terms.upfront_fee != ZERO:
        summary.add_row("Upfront fee, deducted 预扣费用", str(terms.upfront_fee))
        summary.add_row("You receive 实际到手", str(terms.net_received))
    summary.add_row("Total interest 利息合计", str(plan.total_interest))
    summary.add_row("Total fee 手续费合计", str(plan.total_fee))
    summary.add_row("Total repaid 还款总额", str(plan.total_payment))
    summary.add_row("Total cost 总成本", str(offer.total_cost))
    limit = f"{cap} → " if cap is not None and cap.of_lpr else ""
    summary.add_row("APR cap, compounded 利率上限", f"{limit}{format_percent(offer.cap)}")
    console.print(summary)
