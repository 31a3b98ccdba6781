from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fenqi.domain.money import Money, MoneyError, at_rate, cut, half_up, split
from fenqi.domain.rates import parse_rate


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12000", 1_200_000),
        ("12,000.00", 1_200_000),
        ("1,234,567.89", 123_456_789),
        ("0.5", 50),
        ("0.05", 5),
        ("0", 0),
        (" 7.1 ", 710),
        ("+3", 300),
    ],
)
def test_yuan_text_parses_to_exact_fen(text: str, fen: int) -> None:
    assert Money.parse(text) == fen


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("12.345", "more than two decimals"),
        ("NaN", "not an amount"),
        ("inf", "not an amount"),
        ("1e3", "not an amount"),
        ("12,00", "not an amount"),
        ("1,2345", "not an amount"),
        ("", "not an amount"),
        ("abc", "not an amount"),
        ("-5", "negative"),
        (".5", "not an amount"),
    ],
)
def test_text_that_is_not_an_exact_amount_is_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(MoneyError, match=says):
        Money.parse(text)


def test_negative_amounts_parse_only_where_allowed() -> None:
    assert Money.parse("-5.25", allow_negative=True) == -525


def test_floats_never_become_money() -> None:
    with pytest.raises(MoneyError, match="float"):
        Money.parse(1.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="float"):
        Money(1.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(True)
    with pytest.raises(MoneyError, match="rates through half_up"):
        _ = Money(100) * 1.5  # type: ignore[operator]
    with pytest.raises(MoneyError):
        _ = Money(100) + 0.5  # type: ignore[operator]
    with pytest.raises(MoneyError, match="split"):
        _ = Money(100) / 3


def test_decimals_parse_exactly_and_nan_is_refused() -> None:
    assert Money.parse(Decimal("12.30")) == 1230
    with pytest.raises(MoneyError, match="more than two decimals"):
        Money.parse(Decimal("0.001"))
    with pytest.raises(MoneyError, match="not an amount"):
        Money.parse(Decimal("NaN"))


def test_amounts_format_as_yuan_with_two_decimals() -> None:
    assert str(Money(1_200_000)) == "12000.00"
    assert str(Money(5)) == "0.05"
    assert str(Money(-525)) == "-5.25"
    assert f"{Money(78849):>10}" == "    788.49"
    assert repr(Money(100)) == "Money('1.00')"


def test_arithmetic_on_amounts_stays_money() -> None:
    total = Money(100) + Money(250) - Money(50)
    assert isinstance(total, Money)
    assert total == 300
    assert isinstance(-total, Money)
    assert isinstance(Money(3) * 4, Money)
    assert isinstance(sum([Money(1), Money(2)], Money(0)), Money)


@pytest.mark.parametrize(
    ("numerator", "denominator", "rounded"),
    [(5, 10, 1), (4, 10, 0), (15, 10, 2), (25, 10, 3), (-5, 10, -1), (-4, 10, 0), (7, 1, 7)],
)
def test_half_up_rounds_halves_away_from_zero(
    numerator: int, denominator: int, rounded: int
) -> None:
    assert half_up(numerator, denominator) == rounded


def test_cut_drops_the_fraction_towards_zero() -> None:
    assert cut(1_000_000, 12) == 83_333
    assert cut(-7, 2) == -3


def test_at_rate_rounds_one_line_half_up() -> None:
    # 0.6% of 10,000.00 is exactly 60.00; 0.625% of 9.99 is 0.0624375 -> 0.06
    assert at_rate(Money.parse("10000"), parse_rate("0.6%")) == 6000
    assert at_rate(Money.parse("9.99"), parse_rate("0.625%")) == 6


def test_split_puts_the_remainder_last_or_first() -> None:
    assert split(Money.parse("10000"), 12)[-1] == Money.parse("833.37")
    assert split(Money.parse("10000"), 12)[0] == Money.parse("833.33")
    assert split(Money.parse("10000"), 12, remainder_first=True)[0] == Money.parse("833.37")
    with pytest.raises(MoneyError):
        split(Money(100), 0)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_parse_of_format_gives_back_the_amount(fen: int) -> None:
    amount = Money(fen)
    assert Money.parse(str(amount), allow_negative=True) == amount


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=1, max_value=360))
def test_split_parts_sum_to_the_whole(fen: int, parts: int) -> None:
    pieces = split(Money(fen), parts)
    assert sum(pieces) == fen
    assert len(pieces) == parts
    assert all(piece >= 0 for piece in pieces)
