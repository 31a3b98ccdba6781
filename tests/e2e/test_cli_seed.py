"""``fenqi seed`` end to end, on a SQLite file: a seeded portfolio is closed the next day by
``fenqi cob`` and its books still check."""

from pathlib import Path

from tests.e2e.cli import fenqi, refused

SEED = ("seed", "--loans", "50", "--borrowers", "10", "--start", "2026-06-01")


def test_seed_then_close_the_next_day_and_the_books_agree(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'seeded.sqlite3'}"
    assert fenqi("db", "init", "--db", url, "--json").json()["products_loaded"] == 5
    seeded = fenqi(*SEED, "--db", url, "--json")
    assert seeded.err == ""  # no progress bar with --json
    summary = seeded.json()
    assert (summary["loans"], summary["borrowers"], summary["as_of"]) == (50, 10, "2026-06-01")
    assert (summary["first_loan_id"], summary["last_loan_id"]) == (1, 50)
    assert sum(summary["behaviours"].values()) == 10
    assert sum(summary["loans_by_status"].values()) == 50
    closed = fenqi("cob", "--date", "2026-06-02", "--db", url, "--json").json()
    assert closed["status"] == "done"
    assert closed["business_date"] == "2026-06-02"
    check = fenqi("ledger", "check", "--db", url, "--json").json()
    assert check == {"loans_checked": 50, "differences": [], "consistent": True}


def test_the_same_seed_gives_the_same_summary(tmp_path: Path) -> None:
    summaries = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.sqlite3"
        fenqi("db", "init", "--db", url)
        summaries.append(fenqi(*SEED, "--seed", "42", "--db", url, "--json").json())
    assert summaries[0] == summaries[1]


def test_a_database_without_products_is_seeded_from_the_shipped_catalog(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bare.sqlite3'}"
    assert fenqi("db", "upgrade", "--db", url).code == 0  # tables, no products
    assert fenqi(*SEED, "--db", url, "--json").json()["loans"] == 50
    codes = {product["code"] for product in fenqi("product", "list", "--db", url, "--json").json()}
    assert {"mall-3", "mall-12", "cash"} <= codes


def test_bad_input_is_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    refused(fenqi(*SEED, "--db", url), "is not initialised or not up to date; run: fenqi db init")
    fenqi("db", "init", "--db", url)
    refused(fenqi("seed", "--loans", "0", "--borrowers", "3", "--start", "2026-06-01",
                  "--db", url), "seed at least 1 loan and 1 borrower")  # fmt: skip
    refused(fenqi("seed", "--loans", "5", "--borrowers", "3", "--start", "June 1", "--db", url),
            '--start: "June 1" is not a date')  # fmt: skip
    refused(fenqi("seed", "--loans", "many", "--borrowers", "3", "--start", "2026-06-01",
                  "--db", url), '--loans: "many" is not a whole number')  # fmt: skip
