"""A receipt is stored as a versioned document of its own and read back as the same value;
rows kept before receipts had a version are read as the first layout."""

from datetime import UTC, date, datetime

import pytest

from fenqi.domain.events import Channel
from fenqi.domain.money import Money
from fenqi.domain.products import Component
from fenqi.loans.receipts import (
    RECEIPT_VERSION,
    AllocatedPart,
    MethodView,
    Receipt,
    UnknownReceiptLayoutError,
    parse_stored,
    stored,
)
from fenqi.wire import receipt as shown

PAID = Receipt(
    loan_id=12, seq=3, kind="payment", order_id="ORD-1", merchant="华为商城", item="华为 Mate 70",
    date=date(2026, 2, 15), amount=Money(88849), channel=Channel.BANK_CARD,
    method=MethodView(4, 7, "bank_card", "6222 **** 4567", True, "active"),
    principal=Money(78849), interest=Money(10000), fee=Money(0), penalty=Money(0),
    to_credit=Money(0),
    allocation=(AllocatedPart(1, Component.INTEREST, Money(10000)),
                AllocatedPart(1, Component.PRINCIPAL, Money(78849))),
    outstanding_principal=Money(921151),
    issued_at=datetime(2026, 2, 15, 9, 30, 12, 345678, tzinfo=UTC),
)  # fmt: skip


@pytest.mark.parametrize("method", [PAID.method, None], ids=["by card", "by hand"])
def test_a_stored_receipt_reads_back_as_the_same_value(method: MethodView | None) -> None:
    receipt = Receipt(**{**vars(PAID), "method": method})
    document = stored(receipt)
    assert document["version"] == RECEIPT_VERSION == 1
    assert parse_stored(document) == receipt


def test_a_row_from_before_receipts_had_a_version_is_read_as_layout_one() -> None:
    """Those rows were the receipt as the API showed it, which is layout 1 without its version."""
    unversioned = shown(PAID)
    assert "version" not in unversioned
    assert parse_stored(unversioned) == PAID
    assert {**unversioned, "version": 1} == stored(PAID)


def test_a_receipt_of_a_later_layout_is_refused_not_misread() -> None:
    with pytest.raises(UnknownReceiptLayoutError, match="layout 2"):
        parse_stored({**stored(PAID), "version": 2})
