"""The nightly batch through the command line, on SQLite and on PostgreSQL: a 10,000 / 12 / 12%
loan on a card too short to pay, closed day by day with `fenqi cob`, its messages sent only inside
the contact window, then paid up; the runs and the aging report."""

from typing import Any

import pytest

from tests.e2e.cli import Run, fenqi, on


class Shop:
    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, *args: str, today: str | None = None) -> Run:
        return fenqi(*args, "--db", self.url, env=None if today is None else on(today))

    def json(self, *args: str, today: str | None = None) -> Any:
        return self.run(*args, "--json", today=today).json()


@pytest.fixture
def shop(database_url: str) -> Shop:
    store = Shop(database_url)
    assert store.run("db", "init").code == 0
    return store


def test_a_short_card_through_the_batch_and_back_to_current(shop: Shop) -> None:
    who = shop.json(
        "borrower", "create", "--name", "赵敏", "--phone", "13700000001", "--limit", "20000"
    )
    shop.json("method", "bind", "--borrower", str(who["id"]), "--kind", "bank_card",
              "--account", "6222020000001111", "--sim-balance", "50")  # fmt: skip
    loan = shop.json("checkout", "--borrower", str(who["id"]), "--order", "JD-77", "--merchant", "京东",
                     "--amount", "10000", "--product", "cash", "--periods", "12",
                     "--date", "2026-01-15", today="2026-01-15")["id"]  # fmt: skip

    runs = shop.json("cob", "--through", "2026-02-25")
    assert [run["business_date"] for run in runs][-1] == "2026-02-25"
    assert sum(run["debits_failed"] for run in runs) == 4  # the due date and three retries
    assert sum(run["debits_succeeded"] for run in runs) == 0
    assert sum(run["newly_overdue"].get("M1", 0) for run in runs) == 1
    shown = shop.json("loan", "show", str(loan), "--as-of", "2026-02-25")
    assert (shown["dpd"], shown["bucket"], shown["outstanding_penalty"]) == (10, "M1", "3.94")

    outbox = shop.json("sms", "outbox")
    assert [message["stage"] for message in outbox] == ["reminder", "due", "overdue-1", "overdue-3",
                                                         "overdue-7"]  # fmt: skip
    assert all(message["status"] == "pending" for message in outbox)
    night = shop.json("sms", "dispatch", "--now", "2026-02-25T22:30")
    assert night["sent"] == 0  # outside 08:00–21:00
    morning = shop.json("sms", "dispatch", "--now", "2026-02-26T08:30")
    assert morning["sent"] == 2  # at most two a day to one borrower
    assert shop.json("sms", "dispatch", "--now", "2026-02-27T09:00")["sent"] == 2

    aging = shop.json("report", "aging", "--date", "2026-02-25")
    assert next(row for row in aging["buckets"] if row["bucket"] == "M1")["loans"] == 1

    due = shop.json("loan", "show", str(loan), "--as-of", "2026-02-26")["amount_due"]
    shop.json("pay", str(loan), "--amount", due, "--channel", "manual", "--date", "2026-02-26",
              today="2026-02-26")  # fmt: skip
    shop.json("cob", "--date", "2026-02-26")
    current = shop.json("loan", "show", str(loan), "--as-of", "2026-02-26")
    assert (current["status"], current["dpd"], current["bucket"]) == ("active", 0, "M0")
    assert shop.json("ledger", "check")["consistent"]

    status = shop.json("cob", "status")
    assert status[0]["business_date"] == "2026-02-26"
    assert status[0]["status"] == "done"
    report = shop.json("report", "cob", str(status[0]["id"]))
    assert report["loans"] == 1


def test_cob_needs_a_day(shop: Shop) -> None:
    refused = shop.run("cob")
    assert refused.code == 2
    assert "--date" in refused.err
