"""Reading catalogs from disk: the shipped one and a user's file."""

from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest

from fenqi.catalog import read_catalog, read_lpr_table
from fenqi.domain.money import Money
from fenqi.domain.products import CatalogError
from fenqi.domain.schedule import Method
from fenqi.services.quoting import quote_product


def test_the_shipped_catalog_has_mall_plans_and_a_cash_loan() -> None:
    products = read_catalog()
    assert {"mall-3", "mall-6", "mall-12", "mall-24", "cash"} <= set(products)
    assert all(products[f"mall-{n}"].periods == (n,) for n in (3, 6, 12, 24))
    assert all(products[f"mall-{n}"].method is Method.FLAT_FEE for n in (3, 6, 12, 24))
    assert products["cash"].method is Method.EQUAL_INSTALLMENT


def test_every_shipped_plan_is_within_its_own_cap() -> None:
    for code, product in read_catalog().items():
        for periods in product.periods:
            offer = quote_product(code, Money.parse("5999"), date(2026, 1, 15), periods=periods)
            assert offer.apr.compound <= offer.cap


def test_the_shipped_lpr_table_has_3_percent_at_the_end_of_2025() -> None:
    assert read_lpr_table().on(date(2025, 12, 31)) == Fraction("0.03")


def test_a_users_catalog_file_is_read_and_a_missing_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "products.toml"
    path.write_text(
        '[[product]]\ncode = "p"\nmethod = "bullet"\nperiods = [1]\nannual_rate = "6%"\n',
        encoding="utf-8",
    )
    assert read_catalog(path)["p"].method is Method.BULLET
    with pytest.raises(CatalogError, match="cannot be read"):
        read_catalog(tmp_path / "missing.toml")
