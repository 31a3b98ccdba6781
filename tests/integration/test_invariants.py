"""A broken invariant is fenqi's bug, not the caller's input nor a race: it is never retried, the
API answers 500 ``internal-error`` without a trace, the command line exits 3 with one line, and a
batch chunk that meets one fails at once. Only known conflicts are run again."""

from collections.abc import Callable
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from fenqi import cli
from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain import ledger
from fenqi.domain.ledger import Balances, Line, UnbalancedEntryError
from fenqi.domain.money import Money
from fenqi.http.app import create_app
from fenqi.loans import booking
from fenqi.services import borrowers, close_of_business, credentials, products, servicing
from fenqi.services.context import Context
from fenqi.services.policy import Role, operator
from fenqi.store.errors import BrokenConstraintError, StaleError
from fenqi.wire import document, present
from tests.simulated import on_session

START = date(2026, 1, 15)


@pytest.fixture
def context(engine: Engine) -> Context:
    shop = Context(engine, SimulatedChannel, operator("desk"))
    products.load_products(shop)
    return shop


def plan(context: Context) -> int:
    who = borrowers.create_borrower(context, "张三", "13800138000", Money.parse("50000"))
    borrowers.bind_method(context, who.id, "bank_card", "6222020000001234567",
                          sim_balance=Money.parse("100000"))  # fmt: skip
    order = servicing.Order(who.id, "JD-1", "华为商城", Money.parse("1000"), "cash", 3, START)
    return int(present(servicing.checkout(context, order))["id"])


class Unbalanced:
    """From ``start()`` on, every journal entry worked out is one fen short of balancing, as a
    wrong projection would make it; ``tried`` counts the entries tried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.tried: list[int] = []

    def start(self) -> None:
        def short(before: Balances, after: Balances) -> tuple[Line, ...]:
            self.tried.append(1)
            return ledger.journal(before, {**after, "phantom": after.get("phantom", 0) + 1})

        self.monkeypatch.setattr(booking, "journal", short)


@pytest.fixture
def unbalanced(monkeypatch: pytest.MonkeyPatch) -> Unbalanced:
    return Unbalanced(monkeypatch)


def counted(work: Callable[[Session], None]) -> tuple[list[int], Callable[[Session], None]]:
    calls: list[int] = []

    def once_more(session: Session) -> None:
        calls.append(1)
        work(session)

    return calls, once_more


def test_an_unbalanced_entry_is_an_invariant_broken_once_and_changes_nothing(
    context: Context, unbalanced: Unbalanced
) -> None:
    loan = plan(context)
    unbalanced.start()
    with pytest.raises(UnbalancedEntryError):
        servicing.pay(context, loan, Money.parse("100"), servicing.Source(manual=True), START)
    assert len(unbalanced.tried) == 1  # worked out once: never retried
    assert servicing.list_receipts(context, loan) == []


def test_a_constraint_no_race_explains_is_broken_at_once_and_a_stale_version_is_retried(
    context: Context,
) -> None:
    def null_name(session: Session) -> None:  # borrowers.name is NOT NULL
        session.execute(text("INSERT INTO borrowers (name, phone, credit_limit, created_at) "
                             "VALUES (NULL, '13900000000', 0, CURRENT_TIMESTAMP)"))  # fmt: skip

    calls, work = counted(null_name)
    with pytest.raises(BrokenConstraintError, match="a constraint broken") as broken:
        on_session(context, work)
    assert calls == [1]
    assert "13900000000" not in str(broken.value)  # the values stay out of what is said

    stale = [StaleError("another writer first")]

    def first_stale(_session: Session) -> None:
        if stale:
            raise stale.pop()

    calls, work = counted(first_stale)
    on_session(context, work)
    assert calls == [1, 1]


def test_the_api_answers_an_invariant_broken_with_a_500_problem_and_no_trace(
    context: Context, database_url: str, unbalanced: Unbalanced
) -> None:
    loan = plan(context)
    credentials.create_user(context, "agent", "agent password", Role.AGENT)
    key = credentials.create_api_key(context, "agent").api_key
    unbalanced.start()
    with TestClient(create_app(database_url), raise_server_exceptions=False) as client:
        answer = client.post(f"/api/loans/{loan}/payments", headers={"X-API-Key": key,
                             "Idempotency-Key": "k-1"}, json={"amount": "100.00",
                             "channel": "manual"})  # fmt: skip
    assert answer.status_code == 500
    problem = answer.json()
    assert problem["type"] == "urn:fenqi:problem:internal-error"
    assert problem["title"] == "Internal error"
    assert "phantom" not in answer.text
    assert "Traceback" not in answer.text
    assert len(unbalanced.tried) == 1


def test_the_command_line_exits_3_with_one_line(
    context: Context,
    database_url: str,
    unbalanced: Unbalanced,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loan = plan(context)
    unbalanced.start()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(["pay", str(loan), "--amount", "100", "--channel", "manual", "--db", database_url])
    assert exited.value.code == cli.BROKEN
    said = capsys.readouterr().err
    assert said.count("\n") == 1
    assert said.startswith("fenqi: error: internal error")
    assert len(unbalanced.tried) == 1


def test_a_batch_chunk_that_breaks_an_invariant_fails_at_once(
    context: Context, unbalanced: Unbalanced
) -> None:
    plan(context)
    unbalanced.start()
    closed = document(close_of_business.close(context, date(2026, 2, 16), today=date(2026, 2, 16)))
    assert closed["status"] == "failed"
    report = document(close_of_business.run_report(context, closed["id"]))
    [chunk] = report["chunks"]
    assert (chunk["status"], chunk["attempts"]) == ("failed", 1)
    assert "UnbalancedEntryError" in chunk["error"]
