from fractions import Fraction

import pytest

from fenqi.domain.rates import RateError, format_percent, format_rate, parse_rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("12%", Fraction(12, 100)),
        ("0.12", Fraction(12, 100)),
        ("0.6%", Fraction(6, 1000)),
        ("0.625%", Fraction(625, 100_000)),
        ("0%", Fraction(0)),
        (0.006, Fraction(6, 1000)),  # a TOML number, taken at the digits written
    ],
)
def test_percentages_and_fractions_are_the_same_exact_rate(
    text: str | float, rate: Fraction
) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "says"),
    [("12", "ambiguous"), ("-1%", "not a rate"), ("abc", "not a rate"), ("1e-2", "not a rate")],
)
def test_a_rate_that_is_not_exact_or_is_ambiguous_is_refused(text: str, says: str) -> None:
    with pytest.raises(RateError, match=says):
        parse_rate(text)


def test_rates_format_as_fractions_with_six_decimals_and_as_percentages() -> None:
    assert format_rate(Fraction(3, 25)) == "0.120000"
    assert format_rate(Fraction(1, 3)) == "0.333333"
    assert format_rate(Fraction(2, 3)) == "0.666667"
    assert format_rate(Fraction(0)) == "0.000000"
    assert format_percent(Fraction(1303, 10_000)) == "13.03%"
