from datetime import date
from fractions import Fraction

import pytest

from fenqi.domain.caps import DEFAULT_CAP, CapError, parse_cap, parse_lpr_table
from fenqi.domain.quote import OverCapError, quote
from tests.plans import plan

LPR = parse_lpr_table(
    """
    [[lpr]]
    effective = 2024-10-21
    one_year = "3.10%"

    [[lpr]]
    effective = 2025-05-20
    one_year = "3.0%"
    """
)


def test_the_lpr_in_force_on_a_day_is_the_latest_fixing_on_or_before_it() -> None:
    assert LPR.on(date(2025, 5, 19)) == Fraction("0.031")
    assert LPR.on(date(2025, 5, 20)) == Fraction("0.03")
    assert LPR.on(date(2025, 12, 31)) == Fraction("0.03")
    with pytest.raises(CapError, match="starts on 2024-10-21"):
        LPR.on(date(2020, 1, 1))


def test_caps_are_fixed_rates_or_multiples_of_the_lpr() -> None:
    assert DEFAULT_CAP.on(date(2026, 1, 1), LPR) == Fraction("0.24")
    four_lpr = parse_cap("4xLPR")
    assert four_lpr.on(date(2025, 12, 31), LPR) == Fraction("0.12")
    assert four_lpr.on(date(2025, 1, 2), LPR) == Fraction("0.124")
    assert str(four_lpr) == "4×LPR"
    assert str(parse_cap("36%")) == "36.00%"


@pytest.mark.parametrize("text", ["lots", "0%", "-4xLPR"])
def test_a_cap_that_is_not_a_rate_is_refused(text: str) -> None:
    with pytest.raises(CapError):
        parse_cap(text)


def test_an_lpr_table_without_fixings_or_with_a_bad_rate_is_refused() -> None:
    with pytest.raises(CapError, match="no"):
        parse_lpr_table("")
    with pytest.raises(CapError, match="2025-01-01"):
        parse_lpr_table('[[lpr]]\neffective = 2025-01-01\none_year = "lots"')


def test_a_quote_over_its_cap_is_refused_and_says_by_how_much() -> None:
    terms = plan("equal-installment", "10000", 12, rate="30%")
    with pytest.raises(
        OverCapError,
        match=r"APR 34\.49% \(compounded\) is over the cap of 24\.00% by 10\.49 percentage points",
    ) as refused:
        quote(terms, Fraction("0.24"))
    assert abs(refused.value.excess - Fraction("0.1049")) < Fraction("0.00005")


def test_a_quote_at_or_under_its_cap_is_given() -> None:
    offer = quote(plan("flat-fee", "10000", 12, fee="0.6%"), Fraction("0.24"), "mall-12")
    assert offer.product == "mall-12"
    assert offer.total_cost == offer.schedule.total_fee


def test_an_lpr_table_with_a_nul_escape_is_refused() -> None:
    with pytest.raises(CapError, match="NUL"):
        parse_lpr_table('[[lpr]]\neffective = 2025-05-20\none_year = "3.0%"\nnote = "a\\u0000"\n')
