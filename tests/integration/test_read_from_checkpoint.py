"""A bill is read from the checkpoint the loan's last write kept in its row, replaying only the
events recorded after it; for a day before the checkpoint's, it is read from the loan's first
event, and so it is when an event recorded after the checkpoint reaches back before it (a
backdated payment, a reversal: here, a checkpoint left as an earlier write kept it). Either way,
for any history of payments, prepayments, merchant refunds and reversals, and any day, the plan
read is the one a replay from the first event gives."""

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session

from fenqi.domain.events import Channel, Payment, PrepayMode
from fenqi.domain.loan import Checkpoint, LoanState, replay
from fenqi.domain.money import Money
from fenqi.loans.booking import book
from fenqi.services import borrowers, products, servicing
from fenqi.services.context import Context
from fenqi.services.errors import RefusedError
from fenqi.services.views import LoanView
from fenqi.store.database import make_engine, upgrade
from fenqi.store.loans import load_loan, read_loan
from fenqi.store.schema import LoanRow
from fenqi.wire import present
from tests.simulated import simulated_context

START = date(2026, 1, 10)
HORIZON = 420  # days: past the last due date of a 12-period plan
PHONES = itertools.count(13800000000)

operations = st.lists(
    st.tuples(
        st.sampled_from(["pay", "pay", "pay", "prepay", "refund", "reverse"]),
        st.integers(0, HORIZON),
        st.integers(1, 4_000_00),
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    folder: Path = tmp_path_factory.mktemp("read-from-checkpoint")
    engine = make_engine(f"sqlite:///{folder / 'fenqi.sqlite3'}")
    upgrade(engine)
    context = simulated_context(engine, actor="test")
    products.load_products(context)
    yield context
    engine.dispose()


def apply(shop: Context, loan: int, operation: tuple[str, int, int], paid: list[str]) -> None:
    """One operation on the loan; one the rules refuse (nothing owed, more than the payoff, a
    day before the plan) changes nothing, which is as good a history as any."""
    kind, offset, amount = operation
    day, money = START + timedelta(days=offset), Money(amount)
    by_hand = servicing.Source(manual=True)
    try:
        if kind == "pay":
            paid.append(present(servicing.pay(shop, loan, money, by_hand, day))["id"])
        elif kind == "prepay":
            done = present(servicing.prepay(shop, loan, money, mode=PrepayMode.REDUCE_INSTALLMENT,
                                    source=by_hand, day=day))  # fmt: skip
            paid.append(done["id"])
        elif kind == "refund":
            servicing.refund(shop, loan, money, day)
        elif paid:
            servicing.reverse(shop, paid.pop(0), "taken twice", day, confirm=True)
    except RefusedError:
        pass


def checkpoint_of(shop: Context, loan: int) -> dict[str, object] | None:
    """The loan row's checkpoint columns, if it keeps one."""
    with Session(shop.engine) as session:
        row = session.get(LoanRow, loan)
        assert row is not None
        if row.checkpoint_seq is None:
            return None
        return {"checkpoint": row.checkpoint, "checkpoint_seq": row.checkpoint_seq}


def replayed_from_the_first_event(shop: Context, loan: int, as_of: date) -> LoanView:
    with Session(shop.engine) as session:
        record = load_loan(session, loan)
        state = replay(record.terms, record.policy, record.events, as_of, record.cap)
        return LoanView.of(record, state, consent=None)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(history=operations, stale_after=st.one_of(st.none(), st.integers(1, 8)),
       days=st.lists(st.integers(-30, HORIZON + 60), min_size=1, max_size=3))  # fmt: skip
def test_a_bill_read_from_the_checkpoint_is_the_bill_replayed_from_the_first_event(
    shop: Context, history: list[tuple[str, int, int]], stale_after: int | None, days: list[int]
) -> None:
    """``stale_after``: the checkpoint kept after that many operations is put back at the end,
    as if the later writes had left it as it was."""
    who = borrowers.create_borrower(shop, "赵六", str(next(PHONES)), Money(10**9))
    order = servicing.Order(who.id, f"R{who.id}", "m", Money(20_000_00), "cash", 12, START)
    loan = present(servicing.checkout(shop, order))["id"]
    paid: list[str] = []
    kept = None
    for done, operation in enumerate(history, start=1):
        apply(shop, loan, operation, paid)
        if done == stale_after:
            kept = checkpoint_of(shop, loan)
    if kept is not None:
        with shop.engine.begin() as connection:
            connection.execute(update(LoanRow).where(LoanRow.id == loan).values(**kept))
    for offset in days:
        as_of = START + timedelta(days=offset)
        expected = replayed_from_the_first_event(shop, loan, as_of)
        shown = servicing.show_loan(shop, loan, as_of)
        assert (shown.summary, shown.installments) == (expected.summary, expected.installments)
        assert servicing.list_loans(shop, who.id, as_of) == [expected.summary]

    with Session(shop.engine) as session:
        written = load_loan(session, loan)
        kept_on, writes = written.booked_through, written.version - 1
        row = session.get(LoanRow, loan)
        assert row is not None
        since = Checkpoint.from_document(row.checkpoint)
        after = read_loan(session, loan, kept_on + timedelta(days=10))
        before = None if since is None else read_loan(session, loan, since.day - timedelta(days=1))
    note(f"{writes} writes after checkout, the last booked on {kept_on}; checkpoint {since}")
    if writes and kept is None:  # the last write kept a checkpoint on its booking day
        assert after.since is not None, "a day after the checkpoint's starts there"
        assert after.since.day == kept_on
        assert after.events == []
    if before is not None:
        assert before.since is None, "a day before the checkpoint is replayed from the first event"


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(history=operations, pay_on=st.integers(0, HORIZON), amount=st.integers(1, 4_000_00))
def test_a_payment_booked_from_the_checkpoint_books_what_one_from_the_first_event_does(
    shop: Context, history: list[tuple[str, int, int]], pay_on: int, amount: int
) -> None:
    """A payment's unit of work reads its loan from the checkpoint when one serves the payment's
    day; what it books (entries, receipt, the loan after, its payoff, the next checkpoint) is
    what booking the same payment on the loan read from its first event gives (earlier
    payments' allocations are history, which a checkpoint does not keep)."""
    who = borrowers.create_borrower(shop, "孙七", str(next(PHONES)), Money(10**9))
    order = servicing.Order(who.id, f"W{who.id}", "m", Money(20_000_00), "cash", 12, START)
    loan = present(servicing.checkout(shop, order))["id"]
    paid: list[str] = []
    for operation in history:
        apply(shop, loan, operation, paid)
    day = START + timedelta(days=pay_on)
    with Session(shop.engine) as session:
        resumed = load_loan(session, loan, as_of=day)
        whole = load_loan(session, loan)
    stamped = datetime(2026, 12, 1, tzinfo=UTC)
    made = []
    for record in (resumed, whole):
        event = Payment(record.next_seq, day, Money(amount), Channel.MANUAL)
        payoff = record.payoff_on(record.booking_day(day))
        booking = book(record, [event], day, memo="payment", issued=stamped)
        made.append((payoff, booking.entries, booking.receipts, since(booking.state, event.seq),
                     booking.books, booking.next_action, booking.checkpoint))  # fmt: skip
    note(f"read from {resumed.since}, {len(resumed.events)} of {len(whole.events)} events")
    assert made[0] == made[1]


def since(state: LoanState, seq: int) -> LoanState:
    """``state`` with the allocations and payoffs of events from ``seq`` on only."""
    return replace(state, allocations={k: v for k, v in state.allocations.items() if k >= seq},
                   payoffs={k: v for k, v in state.payoffs.items() if k >= seq})  # fmt: skip
