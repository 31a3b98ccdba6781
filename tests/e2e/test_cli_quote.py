"""``fenqi quote`` end to end: docs/domain.md#worked-numbers through --json, the human tables,
and one-line refusals of bad input."""

from decimal import Decimal

import pytest

from fenqi.clock import today
from tests.e2e.cli import fenqi
from tests.worked import WORKED, Worked

TOLERANCE = Decimal("0.0001")  # APRs to ±0.01 percentage points


def quote(*args: str) -> dict[str, object]:
    return fenqi("quote", *args, "--start", "2026-01-15", "--json").json()  # type: ignore[no-any-return]


def test_the_issue_example_has_exactly_the_documented_shape() -> None:
    document = quote(
        "--principal",
        "10000",
        "--periods",
        "12",
        "--method",
        "equal-installment",
        "--annual-rate",
        "12%",
    )
    assert document["principal"] == "10000.00"
    assert document["periods"] == 12
    assert document["method"] == "equal-installment"
    assert document["start"] == "2026-01-15"
    installments = document["installments"]
    assert isinstance(installments, list)
    assert installments[0] == {
        "period": 1,
        "due_date": "2026-02-15",
        "principal": "788.49",
        "interest": "100.00",
        "fee": "0.00",
        "payment": "888.49",
        "balance": "9211.51",
    }
    assert installments[-1]["payment"] == "888.47"
    assert installments[2]["balance"] == "7610.80"
    assert document["total_interest"] == "661.86"
    assert document["total_fee"] == "0.00"
    assert document["total_payment"] == "10661.86"
    for key, expected in (("apr_simple", "0.12"), ("apr_compound", "0.126825")):
        text = document[key]
        assert isinstance(text, str)
        assert len(text.split(".")[1]) >= 6
        assert abs(Decimal(text) - Decimal(expected)) <= TOLERANCE


@pytest.mark.parametrize("example", WORKED, ids=lambda example: example.name)
def test_worked_numbers_through_the_cli(example: Worked) -> None:
    document = fenqi("quote", *example.options(), "--json").json()
    rows = document["installments"]
    assert [row["payment"] for row in rows] == list(example.payments)
    assert sum(Decimal(row["principal"]) for row in rows) == Decimal(example.principal)
    cost = Decimal(document["total_interest"]) + Decimal(document["total_fee"])
    assert cost == Decimal(example.cost)
    if example.apr is not None:
        assert abs(Decimal(document["apr_simple"]) - Decimal(example.apr[0])) <= TOLERANCE
        assert abs(Decimal(document["apr_compound"]) - Decimal(example.apr[1])) <= TOLERANCE


def test_bullet_is_due_at_maturity_after_90_actual_days() -> None:
    document = quote(
        "--method", "bullet", "--principal", "10000", "--periods", "3", "--annual-rate", "12%"
    )
    assert document["installments"] == [
        {
            "period": 1,
            "due_date": "2026-04-15",
            "principal": "10000.00",
            "interest": "300.00",
            "fee": "0.00",
            "payment": "10300.00",
            "balance": "0.00",
        }
    ]


def test_an_upfront_fee_raises_the_apr_as_the_pboc_example_shows() -> None:
    document = quote(
        "--method",
        "flat-fee",
        "--principal",
        "100000",
        "--periods",
        "12",
        "--fee-rate",
        "0.5%",
        "--upfront-fee",
        "1000",
    )
    assert document["net_received"] == "99000.00"
    assert document["upfront_fee"] == "1000.00"
    assert abs(Decimal(str(document["apr_simple"])) - Decimal("0.1280")) <= TOLERANCE
    assert abs(Decimal(str(document["apr_compound"])) - Decimal("0.1358")) <= TOLERANCE


def test_day_count_option_changes_interest_to_actual_days() -> None:
    document = quote(
        "--method",
        "equal-installment",
        "--principal",
        "10000",
        "--periods",
        "3",
        "--annual-rate",
        "12%",
        "--day-count",
        "act/360",
    )
    rows = document["installments"]
    assert isinstance(rows, list)
    assert rows[0]["interest"] == "103.33"


def test_a_catalog_product_quotes_with_its_own_terms() -> None:
    document = quote("--product", "mall-12", "--principal", "5999")
    assert document["product"] == "mall-12"
    assert document["method"] == "flat-fee"
    assert document["periods"] == 12
    rows = document["installments"]
    assert isinstance(rows, list)
    assert rows[0]["fee"] == "35.99"  # 0.6% of 5,999.00 = 35.994
    cash = quote("--product", "cash", "--principal", "10000", "--periods", "12")
    assert cash["total_interest"] == "661.86"


def test_start_defaults_to_today() -> None:
    run = fenqi(
        "quote",
        "--principal",
        "100",
        "--periods",
        "1",
        "--method",
        "bullet",
        "--annual-rate",
        "1%",
        "--json",
    )
    assert run.json()["start"] == today().isoformat()  # the day in Beijing


def test_people_get_a_table_and_a_clearly_labelled_summary() -> None:
    run = fenqi("quote", "--product", "mall-12", "--principal", "5999", "--start", "2026-01-15")
    assert run.code == 0, run.err
    for label in (
        "Due date",
        "APR, compounded",
        "APR, simple",
        "Total interest",
        "Total fee",
        "Total repaid",
    ):
        assert label in run.out
    assert "2027-01-15" in run.out
    assert "13.8" in run.out  # the compounded APR of a 0.6%-a-month plan, 13.84%


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            (
                "--principal",
                "-5",
                "--periods",
                "12",
                "--method",
                "equal-installment",
                "--annual-rate",
                "12%",
            ),
            "negative",
        ),
        (
            (
                "--principal",
                "lots",
                "--periods",
                "12",
                "--method",
                "equal-installment",
                "--annual-rate",
                "12%",
            ),
            "not an amount",
        ),
        (
            (
                "--principal",
                "100",
                "--periods",
                "0",
                "--method",
                "equal-installment",
                "--annual-rate",
                "12%",
            ),
            "periods 0",
        ),
        (
            (
                "--principal",
                "100",
                "--periods",
                "x",
                "--method",
                "equal-installment",
                "--annual-rate",
                "12%",
            ),
            "whole number",
        ),
        (
            (
                "--principal",
                "100",
                "--periods",
                "12",
                "--method",
                "balloon",
                "--annual-rate",
                "12%",
            ),
            "unknown method",
        ),
        (
            (
                "--principal",
                "100",
                "--periods",
                "12",
                "--method",
                "equal-installment",
                "--annual-rate",
                "12%",
                "--fee-rate",
                "1%",
            ),
            "not a fee rate",
        ),
        (
            (
                "--principal",
                "100",
                "--periods",
                "12",
                "--method",
                "equal-installment",
                "--annual-rate",
                "40%",
            ),
            "over the cap of 24.00% by",
        ),
        (
            (
                "--principal",
                "100",
                "--periods",
                "12",
                "--method",
                "equal-installment",
                "--annual-rate",
                "12%",
                "--cap",
                "4xLPR",
            ),
            "over the cap of 12.00%",
        ),
        (
            ("--principal", "100", "--periods", "12", "--method", "equal-installment"),
            "--annual-rate: equal-installment needs an annual rate",
        ),
        (
            (
                "--principal",
                "100",
                "--periods",
                "12",
                "--method",
                "equal-installment",
                "--annual-rate",
                "12%",
                "--day-count",
                "30/365",
            ),
            "unknown day count",
        ),
        (
            ("--product", "mall-12", "--principal", "100", "--method", "bullet"),
            "--method: a product sets the method, rates and fees; drop it",
        ),
        (("--product", "gold", "--principal", "100"), "unknown product"),
        (
            (
                "--principal",
                "100",
                "--periods",
                "12",
                "--method",
                "equal-installment",
                "--annual-rate",
                "12%",
                "--nonsense",
            ),
            "No such option",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_saying_what_is_wrong(
    args: tuple[str, ...], says: str
) -> None:
    run = fenqi("quote", *args, "--start", "2026-01-15")
    assert run.code == 2
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert says in lines[0]


def test_a_bad_start_date_is_refused() -> None:
    run = fenqi(
        "quote",
        "--principal",
        "100",
        "--periods",
        "1",
        "--method",
        "bullet",
        "--annual-rate",
        "1%",
        "--start",
        "2026-02-30",
    )
    assert run.code == 2
    assert "YYYY-MM-DD" in run.err
