"""Amounts, rates and moments as people read them, the same on the command line and the pages."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fenqi.domain.money import Money
from fenqi.shown import apr, beijing, grouped, masked_phone, percent, readable, yuan


@pytest.mark.parametrize(
    ("amount", "written"),
    [("0.00", "0.00"), ("999.99", "999.99"), ("1000.00", "1,000.00"),
     ("637845.31", "637,845.31"), ("-1234567.80", "-1,234,567.80")],
)  # fmt: skip
def test_amounts_are_grouped_by_thousands(amount: str, written: str) -> None:
    assert grouped(amount) == written
    assert yuan(amount) == (f"-¥{written[1:]}" if written.startswith("-") else f"¥{written}")


@given(st.integers(-(10**13), 10**13))
def test_a_grouped_amount_reads_back_as_the_same_amount(fen: int) -> None:
    assert Money.parse(grouped(str(Money(fen))), allow_negative=True) == fen


def test_an_apr_is_in_percent_to_two_places_half_up_as_a_quote_shows_it() -> None:
    assert (apr("0.126826"), apr("0.120001"), apr("0.240000")) == ("12.68%", "12.00%", "24.00%")
    assert apr("0.126850") == "12.69%"


def test_a_products_rate_keeps_every_digit_it_has() -> None:
    assert (percent("0.000500"), percent("0.006000"), percent("0.120001")) == (
        "0.05%", "0.60%", "12.0001%"
    )  # fmt: skip
    assert percent("0.000000") == "0.00%"


def test_moments_are_in_beijing_time_whatever_offset_they_were_written_with() -> None:
    assert beijing("2026-03-01T16:30:05+00:00") == "2026-03-02 00:30:05"
    assert beijing("2026-03-01T16:30:05") == "2026-03-02 00:30:05"  # no offset: UTC
    assert beijing("2026-03-02T00:30:05+08:00") == "2026-03-02 00:30:05"  # already Beijing
    assert beijing(None) == beijing("") == ""


def test_only_text_written_as_money_is_grouped() -> None:
    assert readable("12000.00") == "12,000.00"
    assert [readable(text) for text in ("2026-03-01", "622202*********4567", "12000", "1.5")] == [
        "2026-03-01", "622202*********4567", "12000", "1.5"
    ]  # fmt: skip


def test_a_phone_in_a_list_shows_its_last_4_digits_only() -> None:
    assert masked_phone("13900139000") == "139****9000"
    assert masked_phone("+8613900139000") == "+86139****9000"
