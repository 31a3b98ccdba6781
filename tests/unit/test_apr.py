"""APR by IRR against docs/domain.md#apr-and-total-cost and docs/domain.md#worked-numbers, to
±0.01 percentage points."""

from dataclasses import replace
from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fenqi.domain.apr import AprError, apr, irr, xirr
from fenqi.domain.money import ZERO
from fenqi.domain.schedule import Method, Terms, schedule
from tests.plans import any_terms, plan
from tests.worked import WORKED, Worked

POINT = Fraction(1, 10_000)  # 0.01 percentage points


@pytest.mark.parametrize("example", [row for row in WORKED if row.apr], ids=lambda row: row.name)
def test_worked_aprs(example: Worked) -> None:
    assert example.apr is not None
    rate = apr(schedule(example.terms()))
    assert abs(rate.simple - Fraction(example.apr[0])) <= POINT / 2
    assert abs(rate.compound - Fraction(example.apr[1])) <= POINT / 2


def test_the_pboc_announcements_example() -> None:
    # PBOC announcement [2021] No. 3: 100,000 over 12 months at 0.5% a month on the original
    # principal, with 1,000 taken up front, is 12.80% simple and 13.58% compounded.
    rate = apr(schedule(plan("flat-fee", "100000", 12, fee="0.5%", upfront="1000")))
    assert abs(rate.simple - Fraction("0.1280")) <= POINT / 2
    assert abs(rate.compound - Fraction("0.1358")) <= POINT / 2


def test_equal_installment_apr_is_the_nominal_rate_to_a_millionth() -> None:
    rate = apr(schedule(plan("equal-installment", "10000", 12, rate="12%")))
    # The rounded payments (888.49, last 888.47) move the exact IRR by about 1e-6.
    assert abs(rate.simple - Fraction("0.12")) < Fraction("0.000002")
    assert abs(rate.compound - Fraction("0.126825")) < Fraction("0.000002")


def test_a_bullet_loan_uses_actual_days() -> None:
    rate = apr(schedule(plan("bullet", "10000", 3, rate="12%")))
    # 300 on 10,000 for 90 days: simple 3% × 365/90 = 12.1667%; compounded 1.03^(365/90) − 1.
    assert abs(rate.simple - Fraction("0.121667")) < Fraction("0.000001")
    assert abs(float(rate.compound) - (1.03 ** (365 / 90) - 1)) < 1e-9


def test_an_irregular_first_period_uses_xirr() -> None:
    regular = apr(schedule(plan("equal-installment", "10000", 12, rate="12%")))
    irregular = apr(
        schedule(
            plan(
                "equal-installment",
                "10000",
                12,
                rate="12%",
                start=date(2026, 1, 20),
                repayment_day=5,
            )
        )
    )
    assert abs(irregular.compound - regular.compound) < Fraction("0.005")


def test_irr_and_xirr_of_known_flows() -> None:
    assert irr([100, -110]) == pytest.approx(0.10, abs=1e-12)
    assert irr([1000, 0, -1210]) == pytest.approx(0.10, abs=1e-12)
    flows = [(date(2025, 1, 1), 1000), (date(2026, 1, 1), -1100)]
    assert xirr(flows) == pytest.approx(0.10, abs=1e-12)


def test_flows_that_are_not_a_loan_have_no_apr() -> None:
    with pytest.raises(AprError):
        irr([100])
    with pytest.raises(AprError):
        irr([-100, 110])
    with pytest.raises(AprError):
        irr([100, 0, 0])


@given(any_terms())
def test_a_plan_with_no_interest_and_no_fee_has_an_apr_of_zero(terms: Terms) -> None:
    free = replace(terms, annual_rate=Fraction(0), fee_rate=Fraction(0), upfront_fee=ZERO)
    assert apr(schedule(free)) == (0, 0)


@given(any_terms(), st.integers(min_value=1, max_value=2_000))
def test_a_higher_rate_never_gives_a_lower_apr(terms: Terms, more_bp: int) -> None:
    step = Fraction(more_bp, 10_000)
    if terms.method is Method.FLAT_FEE:
        dearer = replace(terms, fee_rate=terms.fee_rate + step / 12)
    else:
        dearer = replace(terms, annual_rate=terms.annual_rate + step)
    cheap, dear = apr(schedule(terms)), apr(schedule(dearer))
    assert dear.compound >= cheap.compound
    assert dear.simple >= cheap.simple
