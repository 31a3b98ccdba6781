"""The nightly batch on SQLite and PostgreSQL: a loan whose card holds too little, closed day by
day — reminder, failed debits and their retries, grace, penalty from the day after the due date,
DPD and buckets, dunning messages — then paid up; and a loan written off at 180 DPD whose later
payment is a recovery. The books are checked after every day."""

from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.money import Money
from fenqi.services import books, borrowers, products, servicing
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context
from fenqi.store.schema import BucketMoveRow, LoanEventRow, LoanRow, SmsOutboxRow


@pytest.fixture
def shop(engine: Engine) -> Context:
    context = Context(engine, SimulatedChannel, actor="batch")
    products.load_products(context)
    return context


def short_card_loan(shop: Context, balance: str = "100") -> int:
    """10,000 over 12 months at 12% (the cash product), on a card holding ``balance``."""
    who = borrowers.create_borrower(shop, "王小明", "13500135000", Money.parse("50000"))
    borrowers.bind_method(shop, who["id"], "bank_card", "6222020000009876543",
                          sim_balance=Money.parse(balance))  # fmt: skip
    order = servicing.Order(who["id"], "JD-9", "京东", Money.parse("10000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    return int(servicing.checkout(shop, order)["id"])


def close_days(shop: Context, first: date, last: date) -> list[dict[str, object]]:
    days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    results = []
    for day in days:
        results.append(cob.close(shop, day, chunk_size=7))
        assert books.check_books(shop)["consistent"], day
        assert books.trial_balance(shop)["balanced"], day
    return results


def events(engine: Engine, loan: int) -> list[tuple[str, date, dict[str, object]]]:
    with Session(engine) as session:
        rows = session.execute(select(LoanEventRow.kind, LoanEventRow.effective, LoanEventRow.payload)
                               .where(LoanEventRow.loan_id == loan).order_by(LoanEventRow.seq))  # fmt: skip
        return [tuple(row) for row in rows]  # type: ignore[misc]


def outbox(engine: Engine, loan: int) -> list[tuple[date, str]]:
    with Session(engine) as session:
        rows = session.execute(select(SmsOutboxRow.day, SmsOutboxRow.stage)
                               .where(SmsOutboxRow.loan_id == loan).order_by(SmsOutboxRow.day))  # fmt: skip
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_short_card_fails_its_debits_falls_overdue_and_is_brought_current(
    shop: Context, engine: Engine
) -> None:
    loan = short_card_loan(shop)
    close_days(shop, date(2026, 1, 16), date(2026, 2, 11))
    assert outbox(engine, loan) == []  # nothing to say before the reminder
    close_days(shop, date(2026, 2, 12), date(2026, 2, 18))
    assert [(kind, day) for kind, day, _ in events(engine, loan)] == [
        ("debit_failed", date(2026, 2, 15)),  # on the due date
        ("debit_failed", date(2026, 2, 16)),  # and the three retries
        ("debit_failed", date(2026, 2, 17)),
        ("debit_failed", date(2026, 2, 18)),
    ]
    in_grace = servicing.show_loan(shop, loan, date(2026, 2, 18))
    assert (in_grace["dpd"], in_grace["bucket"], in_grace["outstanding_penalty"]) == (
        0,
        "M0",
        "0.00",
    )

    closed = date(2026, 2, 18)
    for day, dpd, penalty in [
        (date(2026, 2, 19), 4, "1.58"),  # 788.49 × 12% × 1.5 / 360 × 4 days = 1.577
        (date(2026, 2, 20), 5, "1.97"),
        (date(2026, 2, 25), 10, "3.94"),  # DOMAIN.md §10
    ]:
        close_days(shop, closed + timedelta(days=1), day)
        closed = day
        shown = servicing.show_loan(shop, loan, day)
        assert (shown["dpd"], shown["bucket"], shown["outstanding_penalty"]) == (dpd, "M1", penalty)
        assert shown["outstanding_fee"] == "44.42"  # the late fee, once
    assert [kind for kind, _, _ in events(engine, loan)].count("debit_failed") == 4  # no more
    stages = [stage for _, stage in outbox(engine, loan)]
    assert stages == ["reminder", "due", "overdue-1", "overdue-3", "overdue-7"]
    with Session(engine) as session:
        moves = session.execute(select(BucketMoveRow.day, BucketMoveRow.to_bucket)
                                .where(BucketMoveRow.loan_id == loan)).all()  # fmt: skip
        row = session.get(LoanRow, loan)
        assert row is not None
        assert (row.dpd, row.closed_through, row.next_action_date) == (
            10,
            date(2026, 2, 25),
            date(2026, 2, 26),
        )
    assert [tuple(move) for move in moves] == [(date(2026, 2, 19), "M1")]

    due = servicing.show_loan(shop, loan, date(2026, 2, 26))["amount_due"]
    servicing.pay(shop, loan, Money.parse(due), servicing.Source(manual=True), date(2026, 2, 26))
    close_days(shop, date(2026, 2, 26), date(2026, 2, 27))
    current = servicing.show_loan(shop, loan, date(2026, 2, 27))
    assert (current["status"], current["dpd"], current["bucket"]) == ("active", 0, "M0")
    with Session(engine) as session:
        row = session.get(LoanRow, loan)
        assert row is not None
        assert row.next_action_date == date(2026, 3, 12)  # the next reminder


def test_a_rerun_of_a_closed_day_changes_nothing(shop: Context, engine: Engine) -> None:
    loan = short_card_loan(shop)
    close_days(shop, date(2026, 2, 12), date(2026, 2, 20))
    before = (events(engine, loan), outbox(engine, loan), books.trial_balance(shop))
    again = cob.close(shop, date(2026, 2, 20))
    assert again["loans"] == 0
    assert (events(engine, loan), outbox(engine, loan), books.trial_balance(shop)) == before


def test_a_loan_180_days_past_due_is_written_off_and_a_later_payment_is_a_recovery(
    shop: Context, engine: Engine
) -> None:
    loan = short_card_loan(shop, balance="0")
    results = close_days(shop, date(2026, 2, 12), date(2026, 8, 14))
    assert sum(int(str(result["write_offs"])) for result in results) == 1
    written = servicing.show_loan(shop, loan, date(2026, 8, 14))
    assert (written["status"], written["written_off_on"]) == ("written_off", "2026-08-14")
    kind, day, payload = events(engine, loan)[-1]  # recorded by the run of that day
    assert (kind, day, payload) == ("write_off", date(2026, 8, 14),
                                    {"reason": "180 days past due (write-off at 180)"})  # fmt: skip
    with Session(engine) as session:
        row = session.get(LoanRow, loan)
        assert row is not None
        assert row.next_action_date is None  # nothing more for the batch
    servicing.pay(shop, loan, Money.parse("500"), servicing.Source(manual=True), date(2026, 9, 1))
    accounts = {line["account"]: line for line in books.trial_balance(shop)["accounts"]}
    assert accounts["recoveries"]["credit"] == "500.00"
    assert Money.parse(accounts["write_off_expense"]["debit"]) > Money.parse("10000")
    assert books.check_books(shop)["consistent"]
