"""Products: what risk and finance set, read from a TOML catalog of ``[[product]]`` tables.

Reading a catalog collects every problem it finds, each naming the product and the key, so an
author fixes the whole file in one pass; a catalog with any problem is refused as a whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from fractions import Fraction
from typing import Any, NamedTuple, TypeVar

from fenqi.domain.calendar import FirstPeriod
from fenqi.domain.caps import DEFAULT_CAP, Cap, CapError, parse_cap
from fenqi.domain.errors import InputError
from fenqi.domain.money import ZERO, Money, MoneyError, at_rate
from fenqi.domain.rates import Rate, parse_rate
from fenqi.domain.reference import ReferenceDataError, parse_toml
from fenqi.domain.schedule import MAX_PERIODS, DayCount, Method, Terms, TermsError


class CatalogError(InputError):
    """A catalog that cannot be used; ``problems`` lists every one found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class PenaltyMode(StrEnum):
    RATE_MULTIPLIER = "rate-multiplier"  # contract rate × multiplier on overdue principal, /360
    DAILY_RATE = "daily-rate"  # a flat daily rate on the overdue amount


class PrepaymentInterest(StrEnum):
    ACCRUED = "accrued"  # interest to the payoff day
    PERIOD = "period"  # the whole current period's interest


class UnbilledFees(StrEnum):
    WAIVE = "waive"
    CHARGE = "charge"


class Stage(StrEnum):
    PAST_DUE = "past-due"
    DUE = "due"
    ADVANCE = "advance"


class Component(StrEnum):
    PENALTY = "penalty"
    FEE = "fee"
    INTEREST = "interest"
    PRINCIPAL = "principal"


class AllocationRule(NamedTuple):
    """One step of a payment's allocation: a component of the installments at a stage."""

    stage: Stage
    component: Component

    def __str__(self) -> str:
        return f"{self.stage}:{self.component}"


# Past-due first, then due, then in advance; within each, penalty → fee → interest → principal.
DEFAULT_ALLOCATION = tuple(AllocationRule(stage, part) for stage in Stage for part in Component)


@dataclass(frozen=True, slots=True)
class Penalty:
    """Penalty interest (罚息) on overdue amounts."""

    mode: PenaltyMode = PenaltyMode.RATE_MULTIPLIER
    multiplier: Fraction = Fraction(3, 2)
    daily_rate: Rate = Fraction(5, 10000)


@dataclass(frozen=True, slots=True)
class LateFee:
    """A one-time late fee (滞纳金): ``rate`` of the overdue amount, within ``floor``..``cap``."""

    rate: Rate
    floor: Money = ZERO
    cap: Money | None = None


@dataclass(frozen=True, slots=True)
class Product:
    """A product in the catalog (see the README for every key and its default)."""

    code: str
    name: str
    method: Method
    periods: tuple[int, ...]
    annual_rate: Rate = Fraction(0)
    fee_rate: Rate = Fraction(0)
    fee_total_rate: Rate | None = None
    upfront_fee_rate: Rate = Fraction(0)
    day_count: DayCount = DayCount.THIRTY_360
    repayment_day: int | None = None
    first_period: FirstPeriod = FirstPeriod.SHORT
    remainder_first: bool = False
    grace_days: int = 3
    penalty: Penalty = Penalty()
    late_fee: LateFee | None = None
    prepayment_interest: PrepaymentInterest = PrepaymentInterest.ACCRUED
    prepayment_fee_rate: Rate = Fraction(0)
    unbilled_fees_on_payoff: UnbilledFees = UnbilledFees.WAIVE
    apr_cap: Cap = DEFAULT_CAP
    allocation: tuple[AllocationRule, ...] = DEFAULT_ALLOCATION
    reminder_days: int = 3  # a reminder this many days before a due date
    debit_retry_days: tuple[int, ...] = (1, 2, 3)  # failed auto-debits retried these days after
    write_off_dpd: int = 180  # written off (核销) at this many days past due
    name_en: str = ""  # the name in English (``name`` is the Chinese one); none: ``name``

    @property
    def english_name(self) -> str:
        return self.name_en or self.name

    def terms(self, principal: Money, start: date, periods: int | None = None) -> Terms:
        """The terms of a plan of this product for ``principal`` starting on ``start``."""
        if periods is None:
            if len(self.periods) > 1:
                raise TermsError(f"{self.code} offers {_listing(self.periods)} periods; choose one")
            periods = self.periods[0]
        if periods not in self.periods:
            raise TermsError(f"{self.code} offers {_listing(self.periods)} periods, not {periods}")
        return Terms(
            principal=principal,
            periods=periods,
            method=self.method,
            start=start,
            annual_rate=self.annual_rate,
            fee_rate=self.fee_rate,
            fee_total_rate=self.fee_total_rate,
            upfront_fee=at_rate(principal, self.upfront_fee_rate),
            day_count=self.day_count,
            repayment_day=self.repayment_day,
            first_period=self.first_period,
            remainder_first=self.remainder_first,
        )


def _listing(numbers: tuple[int, ...]) -> str:
    return ", ".join(str(number) for number in numbers)


Catalog = Mapping[str, Product]


Definition = dict[str, Any]  # one product's table, as TOML gave it


def parse_catalog(text: str, source: str = "catalog") -> dict[str, Product]:
    """Products by code from TOML text with an array of ``[[product]]`` tables."""
    return {code: product for code, (product, _) in catalog_definitions(text, source).items()}


def catalog_definitions(
    text: str, source: str = "catalog"
) -> dict[str, tuple[Product, Definition]]:
    """Each product of a catalog with the table that defines it (what a store keeps)."""
    try:
        document = parse_toml(text)
    except ReferenceDataError as error:
        raise CatalogError(source, [str(error)]) from None
    problems: list[str] = []
    tables = document.get("product")
    if not isinstance(tables, list) or not tables:
        raise CatalogError(source, ["no [[product]] tables"])
    unknown = sorted(set(document) - {"product"})
    if unknown:
        problems.append(f"unknown top-level keys {unknown}; a catalog holds [[product]] tables")
    products: dict[str, tuple[Product, Definition]] = {}
    for index, table in enumerate(tables, start=1):
        product = _read_product(table, index, problems)
        if product is None:
            continue
        if product.code in products:
            problems.append(f"product code {product.code!r} appears twice")
        products[product.code] = (product, table)
    if problems:
        raise CatalogError(source, problems)
    return products


def parse_definition(table: Definition, source: str = "stored product") -> Product:
    """A product from the table that defines it, checked as a catalog would check it."""
    problems: list[str] = []
    product = _read_product(table, 1, problems)
    if product is None:
        raise CatalogError(source, problems)
    return product


T = TypeVar("T")


class _Table:
    """Typed reads of one TOML table, recording a problem instead of raising."""

    def __init__(self, table: dict[str, Any], where: str, problems: list[str]) -> None:
        self.table, self.where, self.problems = table, where, problems
        self.read: set[str] = set()

    def get(self, key: str, parse: Callable[[Any], T], default: T) -> T:
        self.read.add(key)
        if key not in self.table:
            return default
        try:
            return parse(self.table[key])
        except (ValueError, TypeError) as error:
            self.problems.append(f"{self.where}: {key}: {error}")
            return default

    def finish(self) -> None:
        """Flags keys that were never read: most often a typo that would silently fall back to
        a default."""
        unknown = sorted(set(self.table) - self.read)
        if unknown:
            self.problems.append(f"{self.where}: unknown keys {unknown}")


def _read_product(table: object, index: int, problems: list[str]) -> Product | None:
    if not isinstance(table, dict):
        problems.append(f"product #{index} is not a table")
        return None
    before = len(problems)
    code = table.get("code")
    where = f"product {code!r}" if isinstance(code, str) and code else f"product #{index}"
    fields = _Table(table, where, problems)
    product = Product(
        code=fields.get("code", _code, ""),
        name=fields.get("name", _text, ""),
        method=fields.get("method", _enum(Method), Method.EQUAL_INSTALLMENT),
        periods=fields.get("periods", _periods, ()),
        annual_rate=fields.get("annual_rate", parse_rate, Fraction(0)),
        fee_rate=fields.get("fee_rate", parse_rate, Fraction(0)),
        fee_total_rate=fields.get("fee_total_rate", parse_rate, None),
        upfront_fee_rate=fields.get("upfront_fee_rate", parse_rate, Fraction(0)),
        day_count=fields.get("day_count", _enum(DayCount), DayCount.THIRTY_360),
        repayment_day=fields.get("repayment_day", _day_of_month, None),
        first_period=fields.get("first_period", _enum(FirstPeriod), FirstPeriod.SHORT),
        remainder_first=fields.get("remainder", _remainder_first, False),
        grace_days=fields.get("grace_days", _days, 3),
        penalty=fields.get("penalty", _penalty, Penalty()),
        late_fee=fields.get("late_fee", _late_fee, None),
        prepayment_interest=fields.get(
            "prepayment_interest", _enum(PrepaymentInterest), PrepaymentInterest.ACCRUED
        ),
        prepayment_fee_rate=fields.get("prepayment_fee_rate", parse_rate, Fraction(0)),
        unbilled_fees_on_payoff=fields.get(
            "unbilled_fees_on_payoff", _enum(UnbilledFees), UnbilledFees.WAIVE
        ),
        apr_cap=fields.get("apr_cap", _cap, DEFAULT_CAP),
        allocation=fields.get("allocation", _allocation, DEFAULT_ALLOCATION),
        reminder_days=fields.get("reminder_days", _days, 3),
        debit_retry_days=fields.get("debit_retry_days", _retry_days, (1, 2, 3)),
        write_off_dpd=fields.get("write_off_dpd", _write_off_dpd, 180),
        name_en=fields.get("name_en", _text, ""),
    )
    fields.finish()
    if not product.code:
        problems.append(f"{where}: code is required")
    if not product.periods:
        problems.append(f"{where}: periods is required, e.g. periods = [3, 6, 12]")
    if len(problems) > before:
        return None
    return _checked_terms(product, where, problems)


def _checked_terms(product: Product, where: str, problems: list[str]) -> Product | None:
    """Refuses a product whose rates could never make valid terms (a fee on annuity, …)."""
    try:
        product.terms(Money(1_000_000), date(2000, 1, 1), product.periods[0])
    except TermsError as error:
        problems.append(f"{where}: {error}")
        return None
    return product


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _code(value: object) -> str:
    code = _text(value)
    if not code or not all(char.isalnum() or char in "-_" for char in code):
        raise ValueError(f"{code!r} must be letters, digits, '-' or '_'")
    return code


E = TypeVar("E", bound=StrEnum)


def _enum(kind: type[E]) -> Callable[[object], E]:
    def parse(value: object) -> E:
        try:
            return kind(_text(value))
        except ValueError:
            choices = ", ".join(member.value for member in kind)
            raise ValueError(f"{value!r} is not one of: {choices}") from None

    return parse


def _whole(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{value!r} is not {what} ({low}-{high})")
    return value


def _periods(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{value!r} is not a list of period counts, e.g. [3, 6, 12]")
    return tuple(_whole(item, 1, MAX_PERIODS, "a number of periods") for item in value)


def _day_of_month(value: object) -> int:
    return _whole(value, 1, 31, "a day of month")


def _days(value: object) -> int:
    return _whole(value, 0, 365, "a number of days")


def _retry_days(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{value!r} is not a list of days after the due date, e.g. [1, 2, 3]")
    days = tuple(_whole(item, 1, 60, "a day after the due date") for item in value)
    if list(days) != sorted(set(days)):
        raise ValueError(f"{list(days)} must rise, each day once")
    return days


def _write_off_dpd(value: object) -> int:
    return _whole(value, 1, 3650, "a number of days past due")


def _remainder_first(value: object) -> bool:
    position = _text(value)
    if position not in ("first", "last"):
        raise ValueError(f"{value!r} is not first or last")
    return position == "first"


def _money(value: object) -> Money:
    if isinstance(value, int) and not isinstance(value, bool):
        return Money.parse(str(value))
    if not isinstance(value, str):
        raise MoneyError(f'{value!r} is not an amount; write it as text, e.g. "10.00"')
    return Money.parse(value)


def _subtable(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{value!r} is not a table")
    return value


def _penalty(value: object) -> Penalty:
    table = _subtable(value)
    problems: list[str] = []
    fields = _Table(table, "penalty", problems)
    mode = fields.get("mode", _enum(PenaltyMode), PenaltyMode.RATE_MULTIPLIER)
    penalty = Penalty(
        mode=mode,
        multiplier=fields.get("multiplier", _multiplier, Fraction(3, 2)),
        daily_rate=fields.get("daily_rate", parse_rate, Fraction(5, 10000)),
    )
    fields.finish()
    if problems:
        raise ValueError("; ".join(problems))
    return penalty


def _multiplier(value: object) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{value!r} is not a number")
    try:
        return Fraction(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a number, e.g. 1.5") from None


def _late_fee(value: object) -> LateFee:
    problems: list[str] = []
    fields = _Table(_subtable(value), "late_fee", problems)
    fee = LateFee(
        rate=fields.get("rate", parse_rate, Fraction(0)),
        floor=fields.get("floor", _money, ZERO),
        cap=fields.get("cap", _money, None),
    )
    fields.finish()
    if fee.cap is not None and fee.cap < fee.floor:
        problems.append(f"late_fee: cap {fee.cap} is below floor {fee.floor}")
    if problems:
        raise ValueError("; ".join(problems))
    return fee


def _cap(value: object) -> Cap:
    if isinstance(value, bool) or not isinstance(value, str | float | int):
        raise CapError(f'{value!r} is not a cap; give a rate such as "24%" or "4xLPR"')
    return parse_cap(value)


def _allocation(value: object) -> tuple[AllocationRule, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError('allocation is a list such as ["past-due:penalty", "due:interest", …]')
    rules = tuple(_rule(item) for item in value)
    repeated = sorted({str(rule) for rule in rules if rules.count(rule) > 1})
    if repeated:
        raise ValueError(f"rules {repeated} appear more than once")
    return rules


def _rule(value: object) -> AllocationRule:
    stage, _, component = _text(value).partition(":")
    try:
        return AllocationRule(Stage(stage), Component(component))
    except ValueError:
        stages = "|".join(Stage)
        components = "|".join(Component)
        raise ValueError(f"{value!r} is not a rule; write {stages}:{components}") from None
