from datetime import date
from fractions import Fraction

import pytest

from fenqi.domain.money import Money
from fenqi.domain.products import (
    DEFAULT_ALLOCATION,
    AllocationRule,
    CatalogError,
    Component,
    PenaltyMode,
    PrepaymentInterest,
    Stage,
    UnbilledFees,
    parse_catalog,
)
from fenqi.domain.schedule import DayCount, Method, TermsError

FULL = """
[[product]]
code = "cash"
name = "现金分期"
name_en = "Cash loan"
method = "equal-installment"
periods = [6, 12]
annual_rate = "12%"
upfront_fee_rate = "1%"
day_count = "act/365"
grace_days = 5
penalty = { mode = "daily-rate", daily_rate = "0.05%" }
late_fee = { rate = "5%", floor = "10", cap = "100.00" }
prepayment_interest = "period"
prepayment_fee_rate = "2%"
unbilled_fees_on_payoff = "charge"
apr_cap = "4xLPR"
allocation = ["due:interest", "due:principal", "past-due:penalty"]

[[product]]
code = "mall-3"
name = "Mall 3"
method = "flat-fee"
periods = [3]
fee_rate = 0.006
"""


def test_a_catalog_reads_every_product_key() -> None:
    products = parse_catalog(FULL)
    cash = products["cash"]
    assert (cash.name, cash.english_name) == ("现金分期", "Cash loan")
    assert products["mall-3"].english_name == "Mall 3"  # no English name: the one it has
    assert cash.method is Method.EQUAL_INSTALLMENT
    assert cash.periods == (6, 12)
    assert cash.annual_rate == Fraction("0.12")
    assert cash.day_count is DayCount.ACT_365
    assert cash.grace_days == 5
    assert cash.penalty.mode is PenaltyMode.DAILY_RATE
    assert cash.penalty.daily_rate == Fraction("0.0005")
    assert cash.late_fee is not None
    assert (cash.late_fee.floor, cash.late_fee.cap) == (Money.parse("10"), Money.parse("100"))
    assert cash.prepayment_interest is PrepaymentInterest.PERIOD
    assert cash.prepayment_fee_rate == Fraction("0.02")
    assert cash.unbilled_fees_on_payoff is UnbilledFees.CHARGE
    assert cash.apr_cap.of_lpr
    assert cash.allocation[0] == AllocationRule(Stage.DUE, Component.INTEREST)
    assert products["mall-3"].fee_rate == Fraction("0.006")
    assert products["mall-3"].allocation == DEFAULT_ALLOCATION


def test_defaults_follow_the_domain_reference() -> None:
    mall = parse_catalog(FULL)["mall-3"]
    assert mall.grace_days == 3
    assert mall.penalty.mode is PenaltyMode.RATE_MULTIPLIER
    assert mall.penalty.multiplier == Fraction(3, 2)
    assert mall.unbilled_fees_on_payoff is UnbilledFees.WAIVE
    assert str(mall.apr_cap) == "24.00%"
    assert [str(rule) for rule in DEFAULT_ALLOCATION[:5]] == [
        "past-due:penalty",
        "past-due:fee",
        "past-due:interest",
        "past-due:principal",
        "due:penalty",
    ]


def test_a_product_makes_terms_with_its_upfront_fee() -> None:
    cash = parse_catalog(FULL)["cash"]
    terms = cash.terms(Money.parse("5000"), date(2026, 3, 1), 12)
    assert terms.upfront_fee == Money.parse("50.00")
    assert terms.day_count is DayCount.ACT_365
    with pytest.raises(TermsError, match="offers 6, 12 periods; choose one"):
        cash.terms(Money.parse("5000"), date(2026, 3, 1))
    with pytest.raises(TermsError, match="not 24"):
        cash.terms(Money.parse("5000"), date(2026, 3, 1), 24)


def test_every_problem_in_a_catalog_is_reported_at_once() -> None:
    bad = """
    [[product]]
    code = "x"
    method = "balloon"
    periods = [0]
    fee_rate = "lots"
    grace_dayz = 3
    allocation = ["due:interest", "due:interest"]

    [[product]]
    name = "no code"
    method = "flat-fee"
    periods = [3]
    annual_rate = "12%"
    """
    with pytest.raises(CatalogError) as refused:
        parse_catalog(bad, "bad.toml")
    problems = "\n".join(refused.value.problems)
    assert "product 'x': method: 'balloon' is not one of" in problems
    assert "periods: 0 is not a number of periods" in problems
    assert 'fee_rate: "lots" is not a rate' in problems
    assert "unknown keys ['grace_dayz']" in problems
    assert "appear more than once" in problems
    assert "product #2: code is required" in problems
    assert str(refused.value).startswith("bad.toml: ")


def test_a_product_whose_rates_fit_no_plan_is_refused() -> None:
    with pytest.raises(CatalogError, match="fee rate, not interest"):
        parse_catalog(
            '[[product]]\ncode = "m"\nmethod = "flat-fee"\nperiods = [3]\nannual_rate = "1%"'
        )


@pytest.mark.parametrize(
    ("text", "says"),
    [("not toml [", "not valid TOML"), ('title = "x"', r"no \[\[product\]\] tables")],
)
def test_a_file_that_is_not_a_catalog_is_refused(text: str, says: str) -> None:
    with pytest.raises(CatalogError, match=says):
        parse_catalog(text)


def test_a_code_may_appear_only_once() -> None:
    twice = '[[product]]\ncode = "a"\nperiods = [3]\n\n[[product]]\ncode = "a"\nperiods = [6]'
    with pytest.raises(CatalogError, match="appears twice"):
        parse_catalog(twice)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('name = "a\\u0000b"', "product[1].name"),
        ("name = 'x'\n\"na\\u0000me\" = 1", "a key in product[1]"),
        ('penalty = { mode = "daily-rate\\u0000" }', "product[1].penalty.mode"),
        ('allocation = ["due:interest", "due:principal\\u0000"]', "product[1].allocation[2]"),
        ('name = """a\\u0000"""', "product[1].name"),
    ],
)
def test_a_nul_written_as_an_escape_is_refused_wherever_it_is(text: str, where: str) -> None:
    """TOML's escapes name a NUL the text does not hold: every parsed key and string is
    checked, so none reaches a database that cannot keep it."""
    catalog = f'[[product]]\ncode = "x3"\nperiods = [3]\n{text}\n'
    assert "\x00" not in catalog
    with pytest.raises(CatalogError, match="NUL") as refused:
        parse_catalog(catalog, "x.toml")
    assert where in str(refused.value)
    with pytest.raises(CatalogError, match="a key in the document holds a NUL"):
        parse_catalog('"\\u0000" = 1\n' + catalog)  # a key outside [[product]] too
