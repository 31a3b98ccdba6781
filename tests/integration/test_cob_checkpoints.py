"""The batch starts each loan's replay at the checkpoint it left the night before, and takes its
journal balances from the row when nothing was written since. Closing days that way writes
exactly what closing them by replaying every loan from its first event and adding up its journal
writes, including for loans whose desk work since reaches back before the checkpoint (a
reversal) or wrote to their journal (payments)."""

import shutil
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fenqi import seeding
from fenqi.domain.money import Money
from fenqi.services import books, servicing
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context
from fenqi.store.database import make_engine, upgrade
from fenqi.store.schema import LoanEventRow, LoanRow
from fenqi.wire import present
from tests.batch_writes import snapshot
from tests.simulated import simulated_context

START = date(2026, 3, 1)
DAYS = 40
DESK_DAY = 12  # the day payments are taken by hand, and one of them reversed


def desk_work(shop: Context, day: date) -> None:
    """Pays 300.00 by hand on a few overdue loans, then reverses the first payment; and reverses
    the last payment of a plan settled long ago, which puts it past the write-off DPD at once
    (confirmed), for the night's batch to write off."""
    with Session(shop.engine) as session:
        overdue = session.scalars(select(LoanRow.id).where(LoanRow.status == "overdue")
                                  .order_by(LoanRow.id).limit(4))  # fmt: skip
        loans = list(overdue)
        settled = session.execute(
            select(LoanEventRow.loan_id, func.max(LoanEventRow.seq))
            .join(LoanRow, LoanRow.id == LoanEventRow.loan_id)
            .where(LoanRow.status == "settled", LoanEventRow.kind == "payment")
            .group_by(LoanEventRow.loan_id)
            .having(func.max(LoanEventRow.effective) < day - timedelta(days=200))
            .order_by(LoanEventRow.loan_id)
        ).first()
    assert loans, "the seeded portfolio has overdue loans"
    assert settled is not None, "the seeded portfolio has plans settled long ago"
    paid = [present(servicing.pay(shop, loan, Money.parse("300"), servicing.Source(manual=True), day))
            for loan in loans]  # fmt: skip
    servicing.reverse(shop, str(paid[0]["payment_id"]), "taken twice", day)
    servicing.reverse(shop, f"P{settled[0]}-{settled[1]}", "recalled", day, confirm=True)


def close_days(path: Path, *, checkpoints: bool) -> dict[str, object]:
    engine = make_engine(f"sqlite:///{path}")
    shop = simulated_context(engine, actor="batch")
    for k in range(1, DAYS + 1):
        day = START + timedelta(days=k)
        if not checkpoints:
            with engine.begin() as connection:
                connection.execute(update(LoanRow).values(checkpoint=None, checkpoint_seq=None,
                                                          journal_balances=None))  # fmt: skip
        if k == DESK_DAY:
            desk_work(shop, day)
        cob.close(shop, day, chunk_size=16)
    assert present(books.check_books(shop))["consistent"]
    written = snapshot(engine, checkpoints=False)
    engine.dispose()
    return written


def test_closing_from_checkpoints_writes_what_replaying_every_loan_from_the_start_writes(
    tmp_path: Path,
) -> None:
    kept = tmp_path / "checkpoints.sqlite3"
    engine = make_engine(f"sqlite:///{kept}")
    upgrade(engine)
    seeding.seed(simulated_context(engine, actor="seed"), 150, 40, START, 7, processes=1)
    engine.dispose()
    from_start = tmp_path / "from-the-start.sqlite3"
    shutil.copy(kept, from_start)

    written = close_days(kept, checkpoints=True)
    assert written == close_days(from_start, checkpoints=False)
    assert any(kind == "payment" for _, _, kind, _, _ in written["events"])  # type: ignore[attr-defined]
    assert any(kind == "reversal" for _, _, kind, _, _ in written["events"])  # type: ignore[attr-defined]
    by_the_batch = [row for row in written["events"] if row[2] == "write_off" and row[3] > START]  # type: ignore[attr-defined]
    assert by_the_batch, "the batch wrote a loan off in those days"
    with Session(make_engine(f"sqlite:///{kept}")) as session:
        resumable = session.scalar(select(LoanRow.id).where(LoanRow.checkpoint_seq.is_not(None)))
    assert resumable is not None
