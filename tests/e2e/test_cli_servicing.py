"""The servicing commands end to end, through the real ``fenqi`` in a child process: a borrower's
whole story from checkout to payoff and the books, the refusals she can meet, and the
corrections (a refund, a reversal, a waiver). Each subprocess costs most of a second, so the steps
are grouped into a few stories."""

import json
from dataclasses import dataclass
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli import Run, fenqi, on, refused

START = "2026-01-15"
DUE_DATES = ("2026-02-15", "2026-03-15", "2026-04-15")
PAYMENT = "888.49"  # 10,000.00 at 12% over 12 equal installments
LOAN_KEYS = {"id", "status", "dpd", "bucket", "outstanding_principal", "outstanding_interest",
             "outstanding_fee", "outstanding_penalty", "credit_balance", "installments"}  # fmt: skip
INSTALLMENT_KEYS = {"period", "due_date", "principal", "interest", "fee", "penalty", "payment",
                    "paid", "outstanding", "status"}  # fmt: skip
_phones = count(13800000001)


@dataclass(frozen=True)
class Shop:
    """One database: runs ``fenqi`` commands on it."""

    url: str

    def run(self, *args: str, today: str | None = None) -> Run:
        """``fenqi args`` on this database; ``today`` runs it on that day (FENQI_TODAY)."""
        return fenqi(*args, "--db", self.url, env=None if today is None else on(today))

    def json(self, *args: str, today: str | None = None) -> Any:
        return self.run(*args, "--json", today=today).json()

    def borrower(self, limit: str, sim_balance: str) -> tuple[int, int]:
        """A new borrower with a bank card holding ``sim_balance``: (borrower id, method id)."""
        who = self.json("borrower", "create", "--name", "李四", "--phone", str(next(_phones)),
                        "--limit", limit)  # fmt: skip
        card = self.json("method", "bind", "--borrower", str(who["id"]), "--kind", "bank_card",
                         "--account", "6222 0212 3456 7890", "--sim-balance", sim_balance)  # fmt: skip
        return who["id"], card["id"]

    def checkout(self, borrower: int, order: str, amount: str = "10000") -> Run:
        return self.run("checkout", "--borrower", str(borrower), "--order", order, "--merchant",
                        "京东", "--item", "小米 15", "--amount", amount, "--product", "cash",
                        "--periods", "12", "--date", START, "--json", today=START)  # fmt: skip


def initialised(path: Path) -> Shop:
    shop = Shop(f"sqlite:///{path / 'f.sqlite3'}")
    assert shop.json("db", "init")["products_loaded"] == 5  # the shipped catalog, at once
    return shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """A database shared by the short tests; each makes its own borrower or loan in it."""
    return initialised(tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="module")
def wealthy(shop: Shop) -> int:
    """A borrower with room for several loans and a card that pays them all."""
    return shop.borrower(limit="100000", sim_balance="100000")[0]


def test_a_borrowers_whole_story_from_checkout_to_payoff_and_the_books(tmp_path: Path) -> None:
    shop = initialised(tmp_path)
    borrower, card = shop.borrower(limit="20000", sim_balance="20000")

    loan = shop.checkout(borrower, "JD-1").json()
    assert loan["status"] == "active"
    first = loan["installments"][0]
    assert (first["payment"], first["due_date"]) == (PAYMENT, "2026-02-15")
    loan_id = str(loan["id"])

    shown = shop.json("loan", "show", loan_id, "--as-of", START)
    assert set(shown) >= LOAN_KEYS
    assert len(shown["installments"]) == 12
    assert all(set(row) >= INSTALLMENT_KEYS for row in shown["installments"])
    assert shown["outstanding_principal"] == "10000.00"
    assert (shown["merchant"], shown["item"]) == ("京东", "小米 15")

    for due in DUE_DATES:
        receipt = shop.json("pay", loan_id, "--amount", PAYMENT, "--date", due, today=due)
        assert receipt["kind"] == "payment"
        assert receipt["method"]["id"] == card
        assert receipt["loan"]["dpd"] == 0
    assert receipt["loan"]["outstanding_principal"] == "7610.80"

    quote = shop.json("payoff-quote", loan_id, "--date", "2026-04-30")
    assert quote["amount"] == "7648.85"
    assert (quote["principal"], quote["interest"]) == ("7610.80", "38.05")
    assert quote["valid_through"] == "2026-04-30"

    payoff = shop.json("prepay", loan_id, "--full", "--date", "2026-04-30", today="2026-04-30")
    assert payoff["kind"] == "prepayment"
    assert payoff["amount"] == "7648.85"
    assert payoff["loan"]["status"] == "settled"
    assert payoff["loan"]["outstanding_principal"] == "0.00"

    assert payoff["id"] == payoff["payment_id"]  # what pay and prepay create is the payment
    stored = shop.json("receipt", "show", payoff["receipt_id"])
    assert stored == {
        **{k: v for k, v in payoff.items() if k != "loan"},
        "id": payoff["receipt_id"],
    }
    assert shop.json("receipt", "show", payoff["payment_id"]) == stored  # either id finds it

    [summary] = shop.json("loan", "list", "--borrower", str(borrower), "--as-of", "2026-04-30")
    assert (summary["id"], summary["status"]) == (loan["id"], "settled")

    books = shop.json("ledger", "trial-balance")
    assert books["balanced"] is True
    assert books["total_debit"] == books["total_credit"]
    assert Decimal(books["total_debit"]) > 0
    check = shop.json("ledger", "check")
    assert (check["consistent"], check["loans_checked"], check["differences"]) == (True, 1, [])

    people = shop.run("loan", "show", loan_id, "--as-of", "2026-04-30")
    assert people.code == 0, people.err
    assert "7,648.85" in people.out  # the payoff, as the last row of the installments table
    assert "12.68%" in people.out  # the APR agreed to, as the quote showed it


def test_refusals_exit_2_in_one_line_and_move_no_money(shop: Shop) -> None:
    borrower, card = shop.borrower(limit="20000", sim_balance="1000")  # one installment's worth
    loan = str(shop.checkout(borrower, "TB-1").json()["id"])
    pay = ("pay", loan, "--amount", PAYMENT, "--date", "2026-02-15", "--idempotency-key", "k-1")

    first = shop.json(*pay, today="2026-02-15")
    retried = shop.run(*pay, "--json", today="2026-02-15")
    assert json.loads(retried.out) == first  # the very same result, and nothing moved again
    assert "used before" in retried.err
    state = shop.json("loan", "show", loan, "--as-of", "2026-02-15")
    assert [row["paid"] for row in state["installments"][:2]] == [PAYMENT, "0.00"]
    assert state["outstanding_principal"] == "9211.51"

    refused(shop.run(*pay[:3], "888.48", *pay[4:], today="2026-02-15"), "idempotency key")
    second = ("pay", loan, "--amount", PAYMENT, "--date", "2026-03-15")
    refused(shop.run(*second, today="2026-03-15"), "insufficient funds")
    assert shop.json("method", "fund", str(card), "--sim-balance", "900")["sim_balance"] == "900.00"
    assert shop.json(*second, today="2026-03-15")["loan"]["outstanding_principal"] == "8415.14"
    # 20,000.00 less the 8,415.14 of principal the first loan still holds
    refused(shop.checkout(borrower, "TB-2", amount="15000"), "available limit of 11584.86")
    refused(shop.checkout(borrower, "TB-1", amount="100"), "TB-1")
    refused(shop.run("prepay", loan, "--amount", "100", "--full"), "--full")


def test_a_database_not_yet_initialised_says_to_run_db_init(tmp_path: Path) -> None:
    refused(Shop(f"sqlite:///{tmp_path / 'new.sqlite3'}").run("loan", "show", "1"), "fenqi db init")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("pay", "1", "--amount", "-5"), "--amount"),
        (("pay", "1", "--amount", "5", "--date", "2026-02-30"), "YYYY-MM-DD"),
        (("pay", "1", "--amount", "5", "--method", "1", "--channel", "manual"), "not both"),
        (("prepay", "1", "--full", "--mode", "faster"), "reduce-installment, shorten-term"),
        (("waive", "1", "--what", "interest", "--amount", "1", "--reason", "x"), "penalty, fee"),
    ],
)
def test_bad_text_is_refused_before_the_database_is_read(
    shop: Shop, args: tuple[str, ...], says: str
) -> None:
    refused(shop.run(*args), says)


def test_a_partial_refund_reprices_the_plan_on_the_rest(shop: Shop, wealthy: int) -> None:
    loan = shop.checkout(wealthy, "RF-1").json()
    refund = shop.json("refund", str(loan["id"]), "--amount", "2000", "--date", "2026-01-20",
                       today="2026-01-20")  # fmt: skip
    assert refund["amount"] == "2000.00"
    assert refund["loan"]["outstanding_principal"] == "8000.00"
    assert refund["loan"]["status"] == "active"


def test_a_reversed_payment_is_as_if_never_made(shop: Shop, wealthy: int) -> None:
    loan = str(shop.checkout(wealthy, "RV-1").json()["id"])
    paid = shop.json("pay", loan, "--amount", PAYMENT, "--date", "2026-02-15", today="2026-02-15")
    assert paid["loan"]["outstanding_principal"] == "9211.51"
    reversal = shop.json("reverse", paid["payment_id"], "--reason", "paid twice by mistake",
                         "--date", "2026-02-16", today="2026-02-16")  # fmt: skip
    assert (reversal["payment_id"], reversal["amount"]) == (paid["payment_id"], PAYMENT)
    assert reversal["loan"]["outstanding_principal"] == "10000.00"


def test_a_waiver_forgives_the_penalty_owed(shop: Shop, wealthy: int) -> None:
    loan = str(shop.checkout(wealthy, "WV-1").json()["id"])
    late = shop.json("loan", "show", loan, "--as-of", "2026-03-01")  # 14 days past 02-15
    assert late["status"] == "overdue"
    owed = late["outstanding_penalty"]
    assert Decimal(owed) > 0
    waiver = shop.json("waive", loan, "--what", "penalty", "--amount", owed,
                       "--reason", "first late payment", "--date", "2026-03-01",
                       today="2026-03-01")  # fmt: skip
    assert (waiver["what"], waiver["amount"]) == ("penalty", owed)
    assert waiver["loan"]["outstanding_penalty"] == "0.00"


def test_paying_the_payoff_quote_with_pay_settles_the_plan(shop: Shop, wealthy: int) -> None:
    """The review's case: 1,000.00 in 3 from 03-01, and the quote (1,000.00) paid at once with
    `pay` is the payoff; it used to pay the installments' interest ahead and leave 20.07 that
    nothing could pay, and the borrower went overdue."""
    today = "2026-03-01"
    loan = str(shop.json("checkout", "--borrower", str(wealthy), "--order", "PO-1", "--merchant",
                         "m", "--amount", "1000", "--product", "cash", "--periods", "3",
                         today=today)["id"])  # fmt: skip
    assert shop.json("payoff-quote", loan, today=today)["amount"] == "1000.00"
    paid = shop.json("pay", loan, "--amount", "1000", "--channel", "manual", today=today)
    assert (paid["kind"], paid["interest"]) == ("prepayment", "0.00")
    assert (paid["loan"]["status"], paid["loan"]["outstanding_principal"]) == ("settled", "0.00")
    later = shop.json("loan", "show", loan, "--as-of", "2026-06-10")
    assert (later["status"], later["dpd"], later["amount_due"]) == ("settled", 0, "0.00")
    assert shop.json("ledger", "check")["consistent"] is True


def test_a_quote_of_nothing_is_paid_off_with_nothing_to_pay(shop: Shop, wealthy: int) -> None:
    """Paid ahead so far (600.00 today and 403.00 recorded as paid on 02-25) that the payoff,
    1,003.00, is covered: the quote is 0.00 with 17.07 still shown owed. `pay` of more says how
    she gets out; `prepay --full` settles the plan for 0.00."""
    loan = str(shop.json("checkout", "--borrower", str(wealthy), "--order", "PO-2", "--merchant",
                         "m", "--amount", "1000", "--product", "cash", "--periods", "3",
                         today="2026-02-20")["id"])  # fmt: skip
    today = "2026-03-01"
    shop.json("pay", loan, "--amount", "600", today=today)
    shop.json("pay", loan, "--amount", "403", "--date", "2026-02-25", today=today)
    assert shop.json("loan", "show", loan, today=today)["outstanding_principal"] == "17.07"
    assert shop.json("payoff-quote", loan, today=today)["amount"] == "0.00"
    refused(shop.run("pay", loan, "--amount", "0.01", today=today),
            "a full payoff settles it with nothing to pay")  # fmt: skip
    payoff = shop.json("prepay", loan, "--full", today=today)
    assert (payoff["kind"], payoff["amount"]) == ("prepayment", "0.00")
    assert (payoff["loan"]["status"], payoff["loan"]["outstanding_principal"]) == ("settled",
                                                                                   "0.00")  # fmt: skip
    assert shop.json("loan", "show", loan, "--as-of", "2026-06-10")["status"] == "settled"
    assert shop.json("ledger", "check")["consistent"] is True


def test_a_waiver_forgives_the_late_fee_owed_and_the_books_follow(shop: Shop, wealthy: int) -> None:
    """The late fee (滞纳金) is outstanding fee: what `loan show` says is owed can be waived."""
    loan = str(shop.checkout(wealthy, "WV-FEE").json()["id"])
    late = shop.json("loan", "show", loan, "--as-of", "2026-02-25")  # 888.49 unpaid since 02-15
    assert late["outstanding_fee"] == "44.42"  # 5% of it when grace ended
    refused(shop.run("waive", loan, "--what", "fee", "--amount", "44.43", "--reason", "x",
                     "--date", "2026-02-25", today="2026-02-25"), "only 44.42 of fee")  # fmt: skip
    waiver = shop.json("waive", loan, "--what", "fee", "--amount", "44.42", "--reason",
                       "first late payment", "--date", "2026-02-25", today="2026-02-25")  # fmt: skip
    assert (waiver["what"], waiver["amount"]) == ("fee", "44.42")
    assert waiver["loan"]["outstanding_fee"] == "0.00"
    assert shop.json("loan", "show", loan, "--as-of", "2026-02-25")["outstanding_fee"] == "0.00"
    assert shop.json("ledger", "trial-balance")["balanced"] is True
    check = shop.json("ledger", "check")
    assert (check["consistent"], check["differences"]) == (True, [])


@pytest.mark.parametrize("mode", ["reduce-installment", "shorten-term"])
def test_a_prepayment_on_a_due_date_keeps_that_installment_paid_and_the_borrower_current(
    shop: Shop, wealthy: int, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/domain.md#which-period-a-day-belongs-to: prepaid on 15 April after paying
    installment 3, 3,000.00 carries no interest and re-amortises installments 4-12; she is never
    overdue."""

    def on(day: str) -> str:
        monkeypatch.setenv("FENQI_TODAY", day)  # each step is done on its own day
        return day

    on(START)
    loan = str(shop.checkout(wealthy, f"DD-{mode}").json()["id"])
    for due in DUE_DATES:
        shop.json("pay", loan, "--amount", PAYMENT, "--date", on(due))
    prepaid = shop.json(
        "prepay", loan, "--amount", "3000", "--mode", mode, "--date", on("2026-04-15")
    )
    assert (prepaid["interest"], prepaid["principal"]) == ("0.00", "3000.00")
    assert prepaid["loan"]["outstanding_principal"] == "4610.80"
    rows = shop.json("loan", "show", loan, "--as-of", "2026-04-15")["installments"]
    assert (rows[2]["status"], rows[2]["paid"]) == ("paid", PAYMENT)
    if mode == "reduce-installment":
        assert rows[3]["outstanding"] == "538.27"
        assert [row["payment"] for row in rows[4:]] == ["538.27"] * 7 + ["538.25"]
    else:
        assert rows[3]["outstanding"] == PAYMENT
        assert [row["payment"] for row in rows[4:]] == [PAYMENT] * 4 + ["316.94"]
        assert rows[-1]["due_date"] == "2026-10-15"
    shop.json("pay", loan, "--amount", rows[3]["outstanding"], "--date", on("2026-05-15"))
    for look in ("2026-05-20", "2026-06-14"):
        shown = shop.json("loan", "show", loan, "--as-of", on(look))
        assert (shown["status"], shown["dpd"], shown["outstanding_penalty"]) == (
            "active",
            0,
            "0.00",
        )
        assert shown["installments"][2]["status"] == "paid"


def test_a_reversal_that_reopens_a_settled_plan_needs_yes(
    shop: Shop, wealthy: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its consequences are printed and it is refused (exit 2) until --yes confirms it."""

    def on(day: str) -> str:
        monkeypatch.setenv("FENQI_TODAY", day)  # each step is done on its own day
        return day

    on(START)
    loan = str(shop.checkout(wealthy, "RV-SETTLED").json()["id"])
    for due in DUE_DATES:
        shop.json("pay", loan, "--amount", PAYMENT, "--date", on(due))
    payoff = shop.json("prepay", loan, "--full", "--date", on("2026-04-30"))
    assert payoff["loan"]["status"] == "settled"
    reverse = ("reverse", payoff["payment_id"], "--reason", "recalled", "--date", on("2026-05-20"))
    asked = shop.run(*reverse)
    refused(asked, "add --yes")
    for says in ("reopens settled loan", "from settled to overdue", "5 days past due", "penalty",
                 "amount due"):  # fmt: skip
        assert says in asked.err, asked.err
    assert shop.json("loan", "show", loan)["status"] == "settled"  # nothing changed
    done = shop.json(*reverse, "--yes")
    assert done["consequences"]["status_after"] == "overdue"
    shown = shop.json("loan", "show", loan)
    assert (shown["status"], shown["dpd"], shown["written_off_on"]) == ("overdue", 5, None)
