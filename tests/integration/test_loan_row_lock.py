"""Writers of one loan take turns: each locks the loan's row before reading it, so sixteen of
them at once all go through, in the order they came, without a single retry; readers never
wait for them; and a unit of work whose retries run out is refused as a conflict."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fenqi.clock import stamp
from fenqi.domain.events import Channel, Payment
from fenqi.domain.money import Money
from fenqi.loans.booking import book
from fenqi.services import books, borrowers, products, servicing
from fenqi.services.context import Context
from fenqi.services.errors import ConflictError
from fenqi.store import units
from fenqi.store.errors import StaleError, is_known_conflict
from fenqi.store.loans import book_balances, load_loan, save_bookings
from fenqi.store.schema import JournalEntryRow, LoanEventRow
from fenqi.wire import present
from tests.simulated import on_session, simulated_context

DAY = date(2026, 2, 10)
WRITERS = 16


def one_loan(engine: Engine) -> tuple[Context, int]:
    shop = simulated_context(engine, actor="lock-test")
    products.load_products(shop)
    who = borrowers.create_borrower(shop, "周杰", "13700137000", Money.parse("50000"))
    order = servicing.Order(who.id, "L-1", "m", Money.parse("10000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    return shop, int(present(servicing.checkout(shop, order))["id"])


def pay(shop: Context, loan: int, key: str) -> str:
    paid = present(servicing.pay(shop, loan, Money.parse("1.00"), servicing.Source(manual=True), DAY,
                         idempotency_key=key))  # fmt: skip
    return str(paid["payment_id"])


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_sixteen_writers_of_one_loan_all_go_through_without_a_retry(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop, loan = one_loan(engine)
    monkeypatch.setattr(units, "ATTEMPTS", 1)  # a writer that lost a race would fail
    with ThreadPoolExecutor(WRITERS) as writers:
        paid = list(writers.map(lambda n: pay(shop, loan, f"w-{n}"), range(WRITERS * 2)))
    assert len(set(paid)) == WRITERS * 2
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(LoanEventRow)) == WRITERS * 2
    assert present(books.check_books(shop))["consistent"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_writer_waits_for_the_one_before_it_and_a_reader_for_no_one(engine: Engine) -> None:
    shop, loan = one_loan(engine)
    done = threading.Event()
    with Session(engine) as holder, holder.begin():
        load_loan(holder, loan, for_update=True)  # a write to this loan in progress
        writer = threading.Thread(target=lambda: (pay(shop, loan, "after"), done.set()))
        writer.start()
        began = time.monotonic()
        shown = present(servicing.show_loan(shop, loan, DAY))  # a read does not wait for the lock
        assert time.monotonic() - began < 2
        assert shown["id"] == loan
        assert not done.wait(0.5)  # the writer waits its turn
    writer.join(10)
    assert done.is_set()  # and goes through once the lock is released
    assert present(servicing.list_receipts(shop, loan))[0]["payment_id"] == f"P{loan}-1"


def test_a_unit_of_work_whose_retries_run_out_is_a_conflict(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop, _ = one_loan(engine)
    monkeypatch.setattr(units, "BACKOFF_SECONDS", 0.0)
    tries = []

    def always_stale(_session: Session) -> None:
        tries.append(1)
        raise StaleError("another writer got there first")

    with pytest.raises(ConflictError, match="send it again"):
        on_session(shop, always_stale)
    assert len(tries) == units.ATTEMPTS


def test_a_chunk_saved_with_one_loan_changed_since_it_was_read_is_refused_whole(
    engine: Engine,
) -> None:
    """The batch's bulk write checks each loan's version as a single write does: one loan
    written by someone else after the chunk read it fails the whole chunk as stale (run again
    on fresh state), and nothing of it is kept."""
    shop, first = one_loan(engine)
    order = servicing.Order(borrowers.create_borrower(shop, "王五", "13700137001",
                                                      Money.parse("50000")).id,
                            "L-2", "m", Money.parse("10000"), "cash", 12, date(2026, 1, 15))  # fmt: skip
    second = int(present(servicing.checkout(shop, order))["id"])
    with Session(engine) as session, session.begin():
        loans = [load_loan(session, loan_id) for loan_id in (first, second)]
    pay(shop, second, "meanwhile")  # the second loan moves on after the chunk read it
    bookings = [(loan, book(loan, [], DAY, memo="", issued=stamp(), closing=True))
                for loan in loans]  # fmt: skip
    with pytest.raises(StaleError, match="changed"), Session(engine) as session, session.begin():
        save_bookings(session, bookings)
    with Session(engine) as session:
        assert load_loan(session, first).booked_through == date(2026, 1, 15)  # nothing kept


def test_a_booking_saved_after_its_loan_changed_is_refused_and_writes_nothing(
    engine: Engine,
) -> None:
    """One loan's booking (on PostgreSQL a single statement with its history's rows) is saved
    only while the loan is at the version it was worked out from: written after another
    payment, it is refused as a conflict to run again on fresh state (the other payment took
    its event's number, or its version moved), and nothing of it is kept."""
    shop, loan_id = one_loan(engine)
    with Session(engine) as session, session.begin():
        loan = load_loan(session, loan_id)
    pay(shop, loan_id, "meanwhile")
    before = written(engine, loan_id)
    paid = Payment(loan.next_seq, DAY, Money.parse("100"), Channel.MANUAL)
    booking = book(loan, [paid], DAY, memo="late", issued=stamp())
    refusal = pytest.raises((StaleError, IntegrityError))
    with refusal as refused, Session(engine) as session, session.begin():
        save_bookings(session, [(loan, booking)])
    assert is_known_conflict(refused.value)  # the event's number was taken: run again, fresh
    assert written(engine, loan_id) == before


def written(engine: Engine, loan_id: int) -> tuple[int, int, int, dict[str, int]]:
    """The loan's version, how many events and journal entries it has, and its books."""
    with Session(engine) as session:
        loan = load_loan(session, loan_id)
        entries = session.scalar(select(func.count()).select_from(JournalEntryRow)
                                 .where(JournalEntryRow.loan_id == loan_id))  # fmt: skip
        return loan.version, len(loan.events), int(entries or 0), book_balances(session, loan_id)
