"""Quoting a plan: ad hoc terms, or a product from the catalog, checked against its APR cap."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import TypeVar

from fenqi.catalog import read_catalog, read_lpr_table
from fenqi.domain.calendar import FirstPeriod
from fenqi.domain.caps import DEFAULT_CAP, Cap, parse_cap
from fenqi.domain.errors import InputError
from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.quote import Quote, quote
from fenqi.domain.rates import parse_rate
from fenqi.domain.schedule import Method, Terms, TermsError, parse_day_count, parse_method


def quote_terms(terms: Terms, cap: Cap | None = None) -> Quote:
    """Quote ad hoc terms under ``cap`` (default: 24% compounded)."""
    return _capped(terms, cap or DEFAULT_CAP, None)


def quote_product(
    code: str,
    principal: Money,
    start: date,
    *,
    periods: int | None = None,
    cap: Cap | None = None,
    catalog: Mapping[str, Product] | None = None,
) -> Quote:
    """Quote a catalog product (the shipped catalog unless one is given) under its own cap, or
    under ``cap`` when one is given."""
    products = read_catalog() if catalog is None else catalog
    product = products.get(code)
    if product is None:
        known = ", ".join(sorted(products))
        raise TermsError(f'unknown product "{code}"; choose one of: {known}')
    return _capped(product.terms(principal, start, periods), cap or product.apr_cap, code)


def _capped(terms: Terms, cap: Cap, product: str | None) -> Quote:
    return quote(terms, cap.on(terms.start, read_lpr_table()), product)


class FieldError(InputError):
    """Text in one field of a request that cannot be used; ``field`` names it, so an entry
    point can say which (``--annual-rate`` on the command line, ``annual_rate`` in JSON)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class PlanRequest:
    """A quote as asked for, field by field, as text: a catalog ``product``, or ad hoc terms."""

    principal: str
    start: date
    periods: str | None = None
    method: str | None = None
    annual_rate: str | None = None
    fee_rate: str | None = None
    fee_total_rate: str | None = None
    upfront_fee: str | None = None
    day_count: str | None = None
    repayment_day: str | None = None
    first_period: str | None = None
    cap: str | None = None
    product: str | None = None


_SET_BY_PRODUCT = ("method", "annual_rate", "fee_rate", "fee_total_rate", "upfront_fee",
                   "day_count", "repayment_day", "first_period")  # fmt: skip


def quote_request(request: PlanRequest, catalog: Mapping[str, Product] | None = None) -> Quote:
    """Quote what a user typed; a refusal is a ``FieldError`` naming the field at fault."""
    principal = _field("principal", lambda: Money.parse(request.principal))
    periods = None if request.periods is None else _whole("periods", request.periods)
    cap = None if request.cap is None else _field("cap", lambda: parse_cap(request.cap or ""))
    if request.product is not None:
        given = [name for name in _SET_BY_PRODUCT if getattr(request, name) is not None]
        if given:
            raise FieldError(given[0], "a product sets the method, rates and fees; drop it")
        return quote_product(request.product, principal, request.start, periods=periods,
                             cap=cap, catalog=catalog)  # fmt: skip
    return quote_terms(_terms(request, principal, periods), cap)


def _terms(request: PlanRequest, principal: Money, periods: int | None) -> Terms:
    if request.method is None:
        raise FieldError("method", "give a method (equal-installment, equal-principal, "
                         "interest-only, bullet, flat-fee) and its rate, or a product")  # fmt: skip
    method = _field("method", lambda: parse_method(request.method or ""))
    if periods is None:
        raise FieldError("periods", "give the number of monthly periods (1-360)")
    fee_rate, total_rate = request.fee_rate, request.fee_total_rate
    if method is Method.FLAT_FEE and fee_rate is None and total_rate is None:
        raise FieldError("fee_rate", "flat-fee needs a fee rate per period (e.g. 0.6%) or a "
                         "whole-plan fee rate")  # fmt: skip
    if method is not Method.FLAT_FEE and request.annual_rate is None:
        raise FieldError("annual_rate", f"{method} needs an annual rate, e.g. 12% or 0.12")
    repayment_day = request.repayment_day
    return Terms(
        principal=principal,
        periods=periods,
        method=method,
        start=request.start,
        annual_rate=_rate("annual_rate", request.annual_rate),
        fee_rate=_rate("fee_rate", fee_rate),
        fee_total_rate=_rate("fee_total_rate", total_rate) if total_rate else None,
        upfront_fee=_field("upfront_fee", lambda: Money.parse(request.upfront_fee or "0")),
        day_count=_field("day_count", lambda: parse_day_count(request.day_count or "30/360")),
        repayment_day=_whole("repayment_day", repayment_day) if repayment_day else None,
        first_period=_field("first_period", lambda: FirstPeriod(request.first_period or "short")),
    )  # fmt: skip


T = TypeVar("T")


def _field(name: str, parse: Callable[[], T]) -> T:
    try:
        return parse()
    except FieldError:
        raise
    except ValueError as error:
        raise FieldError(name, str(error)) from None


def _rate(name: str, text: str | None) -> Fraction:
    return _field(name, lambda: parse_rate(text or "0"))


def _whole(name: str, text: str) -> int:
    if not (text.strip().isascii() and text.strip().isdigit()):
        raise FieldError(name, f'"{text}" is not a whole number; give e.g. 12')
    return int(text)
