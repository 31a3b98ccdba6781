"""The command line's guards, through the real ``fenqi`` in a child process: a payment stops at
the payoff unless ``--allow-overpayment`` is given, a credit balance goes back where it came
from, simulated balances need simulation mode, ids and amounts are ASCII and capped, and staff
book within the window of today. Each refusal exits 2 with one line."""

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from fenqi.catalog import shipped_catalog_text
from fenqi.store.schema import AuditLogRow
from tests.e2e.cli import Initialised, Run, fenqi, on, refused

START, PAID = "2026-01-15", "2026-02-15"
WAIVE = ("waive", "1", "--what", "fee", "--amount", "1", "--reason", "x")


class Desk:
    """One database, and the ``fenqi`` commands an operator runs on it."""

    def __init__(self, url: str) -> None:
        self.url = url  # a database as `fenqi db init` leaves it

    def run(self, *args: str, today: str | None = None, **env: str) -> Run:
        settings = {**({} if today is None else on(today)), **env}
        return fenqi(*args, "--db", self.url, env=settings)

    def json(self, *args: str, today: str | None = None, **env: str) -> Any:
        return self.run(*args, "--json", today=today, **env).json()

    def loan(self, amount: str = "1000") -> str:
        """A borrower with a card holding 100,000.00 and a 3-month cash plan from START."""
        who = self.json("borrower", "create", "--name", "张三", "--phone", "13800138000",
                        "--limit", "50000")  # fmt: skip
        self.json("method", "bind", "--borrower", str(who["id"]), "--kind", "bank_card",
                  "--account", "6222020000001234567", "--sim-balance", "100000")  # fmt: skip
        made = self.json("checkout", "--borrower", str(who["id"]), "--order", "JD-1",
                         "--merchant", "京东", "--amount", amount, "--product", "cash",
                         "--periods", "3", "--date", START, today=START)  # fmt: skip
        return str(made["id"])


@pytest.fixture
def desk(tmp_path: Path, initialise: Initialised) -> Desk:
    return Desk(initialise(tmp_path / "f.sqlite3"))


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory, initialise: Initialised) -> str:
    """An empty initialised database, for refusals that never reach a row."""
    return initialise(tmp_path_factory.mktemp("rules") / "f.sqlite3")


def test_a_payment_beyond_the_payoff_needs_allow_overpayment(desk: Desk) -> None:
    loan = desk.loan()
    payoff = desk.json("payoff-quote", loan, "--date", PAID)["amount"]
    for amount in ("50000", "999999999999.99"):
        refused(desk.run("pay", loan, "--amount", amount, "--date", PAID, today=PAID),
                f"the most that can be taken is {payoff}")  # fmt: skip
    refused(desk.run("prepay", loan, "--amount", "50000", "--date", PAID, today=PAID),
            f"the most that can be taken is {payoff}")  # fmt: skip
    assert desk.json("loan", "show", loan, "--as-of", PAID)["outstanding_principal"] == "1000.00"
    taken = desk.json("prepay", loan, "--amount", "1100", "--channel", "manual", "--date", PAID,
                      "--allow-overpayment", today=PAID, FENQI_ACTOR="王经理")  # fmt: skip
    assert taken["loan"]["status"] == "settled"
    with Session(create_engine(desk.url)) as session:
        approved = session.scalars(select(AuditLogRow).where(
            AuditLogRow.action == "payment.overpayment")).one()  # fmt: skip
    assert (approved.actor, approved.after["payoff"]) == ("王经理", payoff)

    back = desk.json("refund-credit", loan, "--date", PAID, today=PAID)
    assert [(p["channel"], p["amount"]) for p in back["paid_to"]] == [
        ("manual", taken["loan"]["credit_balance"])
    ]  # paid in by hand, so back by hand: not to the card bound as the default
    shown = desk.run("refund-credit", loan, "--date", PAID, today=PAID)
    refused(shown, "credit balance of 0.00")


def test_simulated_balances_need_simulation_mode(desk: Desk) -> None:
    who = desk.json("borrower", "create", "--name", "李四", "--phone", "13900139000",
                    "--limit", "1000")  # fmt: skip
    bind = ("method", "bind", "--borrower", str(who["id"]), "--kind", "alipay",
            "--account", "li@example.com")  # fmt: skip
    refused(desk.run(*bind, "--sim-balance", "999999999999.99", FENQI_SIMULATION="0"),
            "simulation mode")  # fmt: skip
    method = desk.json(*bind, FENQI_SIMULATION="0")["id"]
    refused(desk.run("method", "fund", str(method), "--sim-balance", "5", FENQI_SIMULATION="0"),
            "simulation mode")  # fmt: skip
    refused(desk.run("method", "fund", str(method), "--sim-balance", "5", FENQI_SIMULATION="yes"),
            "FENQI_SIMULATION")  # fmt: skip
    funded = desk.json("method", "fund", str(method), "--sim-balance", "5")  # on by default
    assert funded["sim_balance"] == "5.00"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("reverse", "P١-١", "--reason", "x"), "is not a payment id"),
        (("receipt", "show", "R１-1"), "is not a receipt id"),
        (("borrower", "show", "99999999999999999999"), "too large"),
        (("loan", "show", "١"), "not a whole number"),
        (("pay", "1", "--amount", "1000000000000"), "the most an amount may be"),
        (("pay", "1", "--amount", "99999999999999999999999"), "the most an amount may be"),
        (("pay", "1", "--amount", "5", "--date", "9999-12-31"), "--date"),
        (("pay", "1", "--amount", "5", "--date", "20260215"), "YYYY-MM-DD"),
        (("loan", "show", "1", "--as-of", "0001-01-01"), "--as-of"),
        (("payoff-quote", "1", "--date", "9999-12-31"), "--date"),
        ((*WAIVE, "--date", "2026-01-01"), "31 days before today"),
        (("refund", "1", "--amount", "1", "--date", "2026-03-01"), "after today"),
    ],
)
def test_ids_amounts_and_dates_are_refused_in_one_line(
    initialised: str, args: tuple[str, ...], says: str
) -> None:
    refused(fenqi(*args, "--db", initialised, env=on("2026-02-15")), says)


def test_settings_and_catalogs_that_cannot_be_used_exit_2(desk: Desk, tmp_path: Path) -> None:
    loan = desk.loan()
    refused(desk.run("pay", loan, "--amount", "1", "--date", PAID, today=PAID,
                     FENQI_BACKDATE_DAYS="forever"), "FENQI_BACKDATE_DAYS")  # fmt: skip
    wider = desk.run("pay", loan, "--amount", "1", "--date", PAID, today="2026-04-01",
                     FENQI_BACKDATE_DAYS="60")  # fmt: skip
    assert wider.code == 0, wider.err
    deep = tmp_path / "deep.toml"
    # Deep, yet within the 200,000 characters a catalog may hold: refused for its depth.
    deep.write_text("[[product]]\ncode = 'x'\nperiods = " + "[" * 99_000 + "]" * 99_000)
    refused(desk.run("product", "load", str(deep)), "too deeply")
    nul = tmp_path / "nul.toml"
    nul.write_text("[[product]]\ncode = 'x\x00'\n")
    refused(desk.run("product", "load", str(nul)), "not valid TOML")


ESCAPED_NUL = b'[[product]]\ncode = "x3"\nname = "a\\u0000b"\nperiods = [3]\n'
CATALOG_READERS = {
    "product load": ("product", "load"),
    "quote --catalog": ("quote", "--product", "mall-12", "--principal", "5999", "--catalog"),
}


@pytest.mark.parametrize("reader", CATALOG_READERS)
def test_a_catalog_file_is_read_bounded_and_refused_in_one_line(
    initialised: str, tmp_path: Path, reader: str
) -> None:
    """Every catalog a command reads: UTF-8 only, a regular file only (a FIFO would wait for a
    writer, a device may never end), at most the API's 200,000 characters, and no NUL even
    written as TOML's escape. Each refusal is one line, exit 2, and reads no more than the cap."""
    files = {
        "binary.toml": (b"\xff\xfe[[product]]\n", "is not UTF-8 text"),
        "escaped-nul.toml": (ESCAPED_NUL, "product[1].name holds a NUL"),
        "large.toml": (b"#" * 200_001 + b"\n", "longer than 200,000 characters"),
    }
    for name, (content, says) in files.items():
        (tmp_path / name).write_bytes(content)
        refused(_read_catalog(reader, tmp_path / name, initialised), says)
    os.mkfifo(tmp_path / "fifo.toml")  # no writer: opening it to read would wait forever
    for special in (tmp_path / "fifo.toml", Path(os.devnull), tmp_path):
        refused(_read_catalog(reader, special, initialised), "is not a regular file")
    at_the_cap = tmp_path / "at-the-cap.toml"
    shipped = shipped_catalog_text()
    at_the_cap.write_text(shipped + "#" * (200_000 - len(shipped) - 1) + "\n")
    assert len(at_the_cap.read_text()) == 200_000
    assert _read_catalog(reader, at_the_cap, initialised).code == 0


def _read_catalog(reader: str, path: Path, db: str) -> Run:
    args = (*CATALOG_READERS[reader], str(path))
    return fenqi(*args, *(("--db", db) if reader == "product load" else ()))


@pytest.mark.parametrize("today", ["9999-12-31", "0001-01-01", "garbage", "2026-13-01"])
def test_a_fenqi_today_that_cannot_be_used_stops_every_command_before_it_begins(
    desk: Desk, tmp_path: Path, today: str
) -> None:
    """The clock override is checked before a command does anything: one line naming it, exit
    2; no traceback, no loan dated 0001-01-01, no database made, no server started."""
    loan = desk.loan()
    who = desk.json("loan", "show", loan)["borrower_id"]
    commands = [
        ("quote", "--principal", "1000", "--periods", "3", "--method", "equal-installment",
         "--annual-rate", "12%"),
        ("checkout", "--borrower", str(who), "--order", "JD-2", "--merchant", "京东",
         "--amount", "100", "--product", "cash", "--periods", "3", "--db", desk.url),
        ("cob", "status", "--db", desk.url),
        ("loan", "list", "--borrower", str(who), "--db", desk.url),
        ("serve", "--port", "1", "--db", desk.url),
        ("db", "init", "--db", f"sqlite:///{tmp_path / 'new.sqlite3'}"),
    ]  # fmt: skip
    for command in commands:
        refused(fenqi(*command, env={"FENQI_TODAY": today}), "FENQI_TODAY")
    assert len(desk.json("loan", "list", "--borrower", str(who))) == 1
    assert not (tmp_path / "new.sqlite3").exists()
