"""Seeding on SQLite and PostgreSQL: 300 loans for 60 borrowers whose two years of history run
through 2026-06-01. Every loan's books equal its replayed state, every behaviour is there, some
loans are overdue, the rows say what the replay says, and the nightly batch carries on from the
next day with debits that succeed and debits that fail."""

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from fenqi import seeding
from fenqi.catalog import shipped_catalog_text
from fenqi.domain.events import Event, WriteOff
from fenqi.domain.loan import LoanStatus, replay_to_checkpoint
from fenqi.domain.money import Money
from fenqi.loans.aggregate import Loan
from fenqi.services import books, borrowers, products, servicing
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context, Document
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.store.database import make_engine, upgrade
from fenqi.store.loans import load_loan
from fenqi.store.schema import (
    BorrowerRow,
    ConsentRow,
    JournalEntryRow,
    LoanEventRow,
    LoanRow,
    OrderRow,
    PaymentMethodRow,
)
from fenqi.wire import document, present
from tests.simulated import on_session, simulated_context

DAY = date(2026, 6, 1)


@pytest.fixture
def shop(engine: Engine) -> Context:
    context = simulated_context(engine, actor="seed")
    products.seed_products(context)
    return context


@pytest.fixture
def seeded(shop: Context) -> Document:
    return seeding.seed(shop, 300, 60, DAY, 7)


def test_the_books_equal_every_loans_replayed_state(shop: Context, seeded: Document) -> None:
    assert present(books.check_books(shop)) == {
        "loans_checked": 300,
        "differences": [],
        "consistent": True,
    }
    assert present(books.trial_balance(shop))["balanced"]
    assert (seeded["loans"], seeded["borrowers"], seeded["journal_entries"]) == (300, 60, 300)


def test_every_behaviour_is_there_and_some_loans_are_overdue(seeded: Document) -> None:
    assert set(seeded["behaviours"]) == {kind.value for kind in seeding.Behaviour}
    assert all(count > 0 for count in seeded["behaviours"].values()), seeded["behaviours"]
    statuses = seeded["loans_by_status"]
    assert statuses["overdue"] > 0
    assert statuses["active"] > 0
    assert statuses["settled"] > 0  # two years back, short plans are paid off
    assert sum(statuses.values()) == 300
    assert seeded["payments"] > 0
    assert seeded["failed_debits"] > 0


def test_each_loan_row_says_what_its_replay_says(shop: Context, engine: Engine) -> None:
    seeding.seed(shop, 60, 12, DAY, 3)
    with Session(engine) as session:
        rows = list(session.scalars(select(LoanRow).order_by(LoanRow.id)))
    for row in rows:
        shown = present(servicing.show_loan(shop, row.id, DAY))
        assert (row.status, row.dpd) == (shown["status"], shown["dpd"]), row.id
        assert Money(row.outstanding_principal) == Money.parse(shown["outstanding_principal"])
        assert (row.version, row.booked_through, row.closed_through) == (1, DAY, DAY)
        assert row.next_action_date is None or row.next_action_date > DAY
        assert row.terms["apr_cap"] == "6/25"  # the shipped products' 24%, as checkout keeps it
        assert row.opened < DAY


def test_the_history_is_what_the_behaviours_make(seeded: Document, engine: Engine) -> None:
    with Session(engine) as session:
        kinds = dict(
            session.execute(
                select(LoanEventRow.kind, func.count()).group_by(LoanEventRow.kind)
            ).all()
        )
        stored = session.execute(select(LoanEventRow.kind, LoanEventRow.payload)).all()
        payloads = [payload for _, payload in stored]
        cards = session.scalar(select(func.count()).select_from(PaymentMethodRow))
        counts = [session.scalar(select(func.count()).select_from(table))
                  for table in (OrderRow, ConsentRow, JournalEntryRow)]  # fmt: skip
        phones = session.scalar(select(func.count(func.distinct(BorrowerRow.phone))))
    assert kinds == {"payment": seeded["payments"], "debit_failed": seeded["failed_debits"],
                     "write_off": seeded["write_offs"]}  # fmt: skip
    assert seeded["write_offs"] >= seeded["loans_by_status"]["written_off"] > 0
    channels = {payload["channel"] for payload in payloads if "channel" in payload}
    assert channels == {"bank_card", "manual"}  # auto-debits by on-time payers, the rest by hand
    reasons = {
        payload["reason"].split(":")[0] for kind, payload in stored if kind == "debit_failed"
    }
    assert reasons == {"insufficient funds", "no repayment method bound"}
    behaviours = seeded["behaviours"]
    assert cards == behaviours["on_time"] + behaviours["late"] + behaviours["chronically_late"]
    assert counts == [300, 300, 300]
    assert phones == 60


def test_a_loan_is_written_off_on_the_night_the_batch_would_have_found_it_past_the_dpd(
    shop: Context, seeded: Document
) -> None:
    """Each loan closed night by night from its start, as the batch would have: the first night
    its DPD reached the product's write-off DPD is the day of its seeded write-off; a loan that
    never got there has none."""
    for loan_id in range(seeded["first_loan_id"], seeded["last_loan_id"] + 1):
        record = on_session(shop, lambda session, loan=loan_id: load_loan(session, loan))
        events = [event for event in record.events if not isinstance(event, WriteOff)]
        recorded = [event.effective for event in record.events if isinstance(event, WriteOff)]
        night = night_past_write_off_dpd(record, events)
        assert recorded == ([] if night is None else [night]), loan_id


def night_past_write_off_dpd(record: Loan, events: list[Event]) -> date | None:
    """The first night through DAY on which the loan's DPD reached its write-off DPD, closed
    one night after another from a checkpoint (a day's replay each)."""
    terms, policy, cap = record.terms, record.policy, record.cap
    on, kept = terms.start, None
    while on <= DAY:
        todays = [event for event in events if event.effective == on]
        state, kept = replay_to_checkpoint(terms, policy, todays, on, cap, since=kept)
        if state.dpd >= policy.write_off_dpd:
            return on
        if state.status is LoanStatus.SETTLED:  # only payments follow: it stays settled
            return None
        on += timedelta(days=1)
    return None


def test_the_batch_carries_on_the_next_day(shop: Context, seeded: Document) -> None:
    closed = document(cob.close(shop, date(2026, 6, 2)))
    assert closed["status"] == "done"
    assert closed["debits_succeeded"] > 0, closed  # funded cards on their due dates
    assert closed["debits_failed"] > 0, closed  # empty cards, and nothing bound
    assert present(books.check_books(shop))["consistent"]
    assert present(books.trial_balance(shop))["balanced"]
    assert document(cob.close(shop, date(2026, 6, 2)))["loans"] == 0  # closed once


def test_every_seeded_payment_has_its_receipt_as_the_services_issue_them(
    shop: Context, seeded: Document, engine: Engine
) -> None:
    with Session(engine) as session:
        loans = session.scalars(select(LoanRow.id).order_by(LoanRow.id)).all()
    by_card = by_hand = 0
    for loan in loans:
        receipts = [present(listed) for listed in servicing.list_receipts(shop, loan)]
        events = present(servicing.loan_history(shop, loan))["events"]
        paid = [event for event in events if event["kind"] == "payment"]
        amounts = [event["payload"]["amount"] for event in paid]
        assert [receipt["amount"] for receipt in receipts] == amounts
        left = Money.parse(present(servicing.show_loan(shop, loan, DAY))["principal"])
        for receipt in receipts:
            applied = sum(Money.parse(part["amount"]) for part in receipt["allocation"])
            assert applied + Money.parse(receipt["to_credit"]) == Money.parse(receipt["amount"])
            left = Money(left - Money.parse(receipt["principal"]))
            assert Money.parse(receipt["outstanding_principal"]) == left
            if receipt["channel"] == "manual":
                by_hand += 1
                assert receipt["method"] is None
            else:
                by_card += 1
                assert receipt["method"]["masked_account"].startswith("6")
    assert by_card > 0
    assert by_hand > 0


def test_a_second_seed_and_a_checkout_take_new_ids(shop: Context, seeded: Document) -> None:
    again = seeding.seed(shop, 40, 10, DAY, 7)  # the same seed: new people, new numbers
    assert (again["first_loan_id"], again["last_loan_id"]) == (301, 340)
    who = borrowers.create_borrower(shop, "周杰", "13912345678", Money.parse("20000"))
    assert who.id == 71
    card = borrowers.bind_method(shop, who.id, "bank_card", "6222020000009876543")  # a free id
    assert card.method.borrower_id == who.id
    order = servicing.Order(who.id, "TM-NEW-1", "天猫", Money.parse("3999"), "mall-6", None, DAY)
    assert present(servicing.checkout(shop, order))["id"] == 341
    assert present(books.check_books(shop))["consistent"]


def test_a_bare_database_gets_the_shipped_products(engine: Engine) -> None:
    bare = simulated_context(engine, actor="seed")  # migrated, but no catalog loaded
    assert seeding.seed(bare, 5, 1, DAY, 1)["loans"] == 5
    assert {"mall-3", "mall-6", "mall-12", "mall-24", "cash"} <= {
        product["code"] for product in present(products.list_products(bare))
    }


def test_a_catalog_without_the_seeded_plans_or_no_loans_is_refused(engine: Engine) -> None:
    own = simulated_context(engine, actor="seed")
    only_mall_3 = shipped_catalog_text().split("[[product]]")[1]
    products.load_catalog(own, f"[[product]]{only_mall_3}")  # an operator's own catalog
    with pytest.raises(NotFoundError, match='unknown product "mall-6"; choose one of: mall-3'):
        seeding.seed(own, 5, 1, DAY, 1)
    with pytest.raises(RefusedError, match="at least 1 loan and 1 borrower, not 0 and 5"):
        seeding.seed(own, 0, 5, DAY, 1)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(BorrowerRow)) == 0


def test_the_same_seed_makes_the_same_portfolio_in_one_process_or_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seeding, "LOANS_PER_TRANSACTION", 50)  # 4 batches: workers are used
    dumps = []
    for processes in (1, 2):
        engine = make_engine(f"sqlite:///{tmp_path / f'p{processes}.sqlite3'}")
        upgrade(engine)
        context = simulated_context(engine, actor="seed")
        products.seed_products(context)
        summary = seeding.seed(context, 200, 40, DAY, 11, processes=processes)
        with Session(engine) as session:
            tables = [session.execute(select(table).order_by(*table.primary_key.columns)).all()
                      for table in (LoanRow.__table__, LoanEventRow.__table__,
                                    JournalEntryRow.__table__, BorrowerRow.__table__)]  # fmt: skip
        dumps.append((summary, tables))
        engine.dispose()
    assert dumps[0] == dumps[1]
