"""Bills kept for repeat views (``Context.bills``, ``servicing.view_loan``): a plan viewed again
at the same version on the same day is served as it was shown, after one indexed row; a
payment, a reversal, the batch or a new day shows it afresh, never a stale one; and who may see
it is checked on every view, kept or not."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.loans.ports import UnansweredError
from fenqi.services import borrowers, credentials, products, servicing
from fenqi.services import close_of_business as cob
from fenqi.services.bills import KeptBills
from fenqi.services.context import Context, authenticated, authenticated_at_once
from fenqi.services.credentials import Presented
from fenqi.services.errors import NotFoundError
from fenqi.services.policy import Principal, Role, UnauthenticatedError
from fenqi.services.views import LoanView
from fenqi.store.database import Limits
from fenqi.store.quick import QUICK_SECONDS, PostgresQuickReads, SqliteQuickReads
from fenqi.store.schema import SmsSentRow
from fenqi.wire import document, present
from tests.e2e.cli import free_port
from tests.simulated import simulated_context

START = date(2026, 1, 15)
shown: list[int] = []


def counted(view: LoanView) -> dict[str, Any]:
    """The bill's document, counting how many times a plan was worked out and shown."""
    shown.append(view.summary.id)
    return document(view)


@pytest.fixture
def shop(engine: Engine) -> Context:
    context = simulated_context(engine, actor="desk", bills=KeptBills())
    products.load_products(context)
    shown.clear()
    return context


def plan(context: Context, phone: str, order: str) -> tuple[int, int]:
    who = borrowers.create_borrower(context, "张三", phone, Money.parse("50000"))
    made = servicing.Order(who.id, order, "华为商城", Money.parse("1200"), "cash", 3, START)
    return who.id, present(servicing.checkout(context, made))["id"]


def statements(engine: Engine) -> list[str]:
    said: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: said.append(args[2]))
    return said


def fresh(context: Context, loan: int, day: date) -> dict[str, Any]:
    """The plan on ``day`` worked out from its events, as a command shows it."""
    return document(servicing.show_loan(replace(context, bills=None), loan, day))


def test_a_repeat_view_is_the_bill_kept_after_one_row(shop: Context, engine: Engine) -> None:
    _, loan = plan(shop, "13800000001", "KEPT-1")
    first = servicing.view_loan(shop, loan, START, counted)
    said = statements(engine)
    again = servicing.view_loan(shop, loan, START, counted)
    asked = [text.split()[:3] for text in said if not text.startswith("BEGIN")]
    assert asked == [["SELECT", "loans.borrower_id,", "loans.version"]]
    assert again is first
    assert again == fresh(shop, loan, START)
    assert shown == [loan]  # worked out once
    credentials.create_user(shop, "agent", "agent password", Role.AGENT)
    by_key = replace(shop, principal=None,
                     credential=Presented(credentials.create_api_key(shop, "agent").api_key))  # fmt: skip
    servicing.view_loan(by_key, loan, START, counted)  # notes the key's use (once an hour)
    said.clear()
    assert servicing.view_loan(by_key, loan, START, counted) is first
    asked = [text.split()[:3] for text in said if not text.startswith("BEGIN")]
    assert asked == [["SELECT", "api_keys.secret_hash,", "api_keys.revoked,"]]  # and the plan's
    assert shown == [loan]


def test_a_payment_a_reversal_the_batch_and_a_new_day_each_show_the_plan_afresh(
    shop: Context,
) -> None:
    _, loan = plan(shop, "13800000002", "KEPT-2")
    bill = servicing.view_loan(shop, loan, START, counted)
    assert bill["installments"][0]["paid"] == "0.00"
    paid = present(servicing.pay(shop, loan, Money.parse("100"), servicing.Source(manual=True),
                                 START))  # fmt: skip
    after_payment = servicing.view_loan(shop, loan, START, counted)
    assert after_payment == fresh(shop, loan, START)
    assert after_payment["installments"][0]["paid"] == "100.00"
    servicing.reverse(shop, paid["id"], "taken twice", START, confirm=True)
    after_reversal = servicing.view_loan(shop, loan, START, counted)
    assert after_reversal == fresh(shop, loan, START) == bill
    late = START + timedelta(days=45)  # the first installment fell due and was not paid
    overdue = servicing.view_loan(shop, loan, late, counted)
    assert overdue == fresh(shop, loan, late)
    assert overdue["dpd"] > 0
    assert overdue["status"] == "overdue"
    closed = document(cob.close(shop, late))  # the batch books the days up to it: a new version
    assert closed["status"] == "done", closed
    assert servicing.view_loan(shop, loan, late, counted) == fresh(shop, loan, late)
    assert shown == [loan] * 5


def test_whoever_may_not_see_the_plan_is_refused_though_it_is_kept(shop: Context) -> None:
    mine, loan = plan(shop, "13800000003", "KEPT-3")
    other, _ = plan(shop, "13800000004", "KEPT-4")
    kept = servicing.view_loan(shop, loan, START, counted)
    her = replace(shop, principal=Principal(f"borrower:{mine}", borrower_id=mine))
    assert servicing.view_loan(her, loan, START, counted) is kept
    stranger = replace(shop, principal=Principal(f"borrower:{other}", borrower_id=other))
    with pytest.raises(NotFoundError):
        servicing.view_loan(stranger, loan, START, counted)
    with pytest.raises(NotFoundError):  # the same answer as for a plan that does not exist
        servicing.view_loan(stranger, loan + 100, START, counted)
    credentials.create_user(shop, "viewer", "viewer password", Role.VIEWER)
    made = credentials.create_api_key(shop, "viewer")
    by_key = replace(shop, principal=None, credential=Presented(made.api_key))
    assert servicing.view_loan(by_key, loan, START, counted) is kept
    credentials.revoke_api_key(shop, made.key_id)
    with pytest.raises(UnauthenticatedError):
        servicing.view_loan(by_key, loan, START, counted)
    forged = replace(shop, principal=None, credential=Presented(made.api_key[:-1] + "x"))
    with pytest.raises(UnauthenticatedError):
        servicing.view_loan(forged, loan, START, counted)
    with pytest.raises(UnauthenticatedError):
        servicing.view_loan(replace(shop, principal=None), loan, START, counted)
    assert shown == [loan]


def test_a_borrower_signed_in_sees_her_plan_kept_and_signed_out_sees_nothing(
    shop: Context,
) -> None:
    _, loan = plan(shop, "13800000005", "KEPT-5")
    servicing.view_loan(shop, loan, START, counted)
    sent = credentials.send_sign_in_code(shop, "13800000005")
    assert sent.sent
    token = _signed_in(shop, "13800000005")
    hers = replace(shop, principal=None, credential=Presented(token))
    assert servicing.view_loan(hers, loan, START, counted)["id"] == loan
    credentials.sign_out(shop, token)
    with pytest.raises(UnauthenticatedError):
        servicing.view_loan(hers, loan, START, counted)


def _signed_in(context: Context, phone: str) -> str:
    with Session(context.engine) as session:
        text = session.scalars(select(SmsSentRow.text).where(SmsSentRow.phone == phone)).all()[-1]
    code = "".join(char for char in text if char.isdigit())[:6]
    return credentials.sign_in_borrower(context, phone, code)[0]


# -- the bills kept, on their own ----------------------------------------------------------------


def one(view: object) -> object:
    return view


def other(view: object) -> object:
    return view


def test_a_bill_is_served_only_for_its_version_day_and_rendering() -> None:
    kept = KeptBills()
    day = START
    kept.keep(one, 1, 3, day, "v3")
    assert kept.get(one, 1, 3, day) == "v3"
    assert kept.get(one, 1, 4, day) is None  # the plan moved on
    assert kept.get(one, 1, 2, day) is None
    assert kept.get(one, 1, 3, day + timedelta(days=1)) is None  # another day
    assert kept.get(other, 1, 3, day) is None  # shown another way
    assert kept.get(one, 2, 3, day) is None  # another plan
    kept.keep(one, 1, 2, day, "v2")  # a slower reader's older bill does not replace it
    assert kept.get(one, 1, 3, day) == "v3"
    assert kept.get(one, 1, 2, day) is None
    kept.keep(one, 1, 4, day, "v4")
    assert kept.get(one, 1, 4, day) == "v4"
    assert kept.get(one, 1, 3, day) is None


def test_the_least_recently_shown_plans_are_forgotten_first() -> None:
    kept = KeptBills(plans=2)
    render: Callable[[object], object] = one
    kept.keep(render, 1, 1, START, "a")
    kept.keep(render, 2, 1, START, "b")
    assert kept.get(render, 1, 1, START) == "a"  # plan 1 shown again: plan 2 is the oldest
    kept.keep(render, 3, 1, START, "c")
    assert len(kept) == 2
    assert kept.get(render, 2, 1, START) is None
    assert kept.get(render, 1, 1, START) == "a"
    assert kept.get(render, 3, 1, START) == "c"


# -- a repeat view from the event loop (``servicing.kept_view``, ``QuickReads``) -----------------


def at_once(context: Context, loan: int, day: date = START) -> object:
    """``kept_view`` on an event loop of its own, with the quick reads the service has."""

    async def view() -> object:
        quick = quick_reads(context.engine)
        await quick.open()
        try:
            return await servicing.kept_view(replace(context, quick=quick), loan, day, counted)
        finally:
            await quick.close()

    return asyncio.run(view())


def quick_reads(engine: Engine) -> PostgresQuickReads | SqliteQuickReads:
    if engine.dialect.name == "postgresql":
        return PostgresQuickReads(engine, Limits.for_service())
    return SqliteQuickReads(engine)


def test_a_kept_bill_is_served_from_the_event_loop_with_its_caller_checked(
    shop: Context,
) -> None:
    mine, loan = plan(shop, "13800000006", "KEPT-6")
    other, _ = plan(shop, "13800000007", "KEPT-7")
    credentials.create_user(shop, "viewer", "viewer password", Role.VIEWER)
    made = credentials.create_api_key(shop, "viewer")
    by_key = replace(shop, principal=None, credential=Presented(made.api_key))
    assert at_once(by_key, loan) is None  # nothing kept yet (and the key's use not noted)
    kept = servicing.view_loan(by_key, loan, START, counted)  # worked out; the use noted
    assert at_once(by_key, loan) is kept
    assert at_once(by_key, loan, START + timedelta(days=1)) is None  # another day: not kept
    with pytest.raises(NotFoundError):
        at_once(by_key, loan + 100)
    assert at_once(shop, loan) is None  # a command's principal: no credential to check
    sent = credentials.send_sign_in_code(shop, "13800000006")
    assert sent.sent
    hers = replace(shop, principal=None, credential=Presented(_signed_in(shop, "13800000006")))
    assert at_once(hers, loan) is kept
    credentials.send_sign_in_code(shop, "13800000007")
    theirs = replace(shop, principal=None, credential=Presented(_signed_in(shop, "13800000007")))
    with pytest.raises(NotFoundError):  # another borrower's plan, as if there were none
        at_once(theirs, loan)
    forged = replace(shop, principal=None, credential=Presented(made.api_key[:-1] + "x"))
    with pytest.raises(UnauthenticatedError):
        at_once(forged, loan)
    credentials.revoke_api_key(shop, made.key_id)
    with pytest.raises(UnauthenticatedError):  # revoked: refused on the very next view
        at_once(by_key, loan)
    paid = servicing.Source(manual=True)
    servicing.pay(shop, loan, Money.parse("100"), paid, START)
    assert at_once(hers, loan) is None  # the plan moved on: worked out again, in a thread
    assert shown == [loan]
    assert mine != other


def test_quick_reads_answer_only_on_their_own_loop_and_never_wait_long(
    shop: Context, engine: Engine, tmp_path: Path
) -> None:
    _, loan = plan(shop, "13800000008", "KEPT-8")
    if engine.dialect.name == "sqlite":  # no event loop of its own; a file it cannot read
        unreadable = SqliteQuickReads(create_engine(f"sqlite:///{tmp_path / 'none.sqlite3'}"))

        async def empty() -> None:
            with pytest.raises(UnansweredError):
                await unreadable.key_holder("nokey", loan)
            assert await quick_reads(engine).key_holder("nokey", loan) is None

        asyncio.run(empty())
        return
    quick = PostgresQuickReads(engine, Limits.for_service())

    async def opened_then_closed() -> None:
        with pytest.raises(UnansweredError):  # not opened on this event loop
            await quick.key_holder("nokey", loan)
        await quick.open()
        assert await quick.key_holder("nokey", loan) is None  # an answer: no such key
        await quick.close()  # closed with the loop, as the server's lifespan does
        with pytest.raises(UnansweredError):
            await quick.key_holder("nokey", loan)

    asyncio.run(opened_then_closed())
    gone = create_engine(engine.url.set(host="127.0.0.1", port=free_port()))
    nowhere = PostgresQuickReads(gone, Limits.for_service())

    async def no_server() -> float:
        await nowhere.open()
        began = time.monotonic()
        with pytest.raises(UnansweredError):
            await nowhere.session_holder("nohash", loan)
        waited = time.monotonic() - began
        await nowhere.close()
        return waited

    assert asyncio.run(no_server()) < QUICK_SECONDS + 4.0  # not the 12 s a statement may take


def test_a_writer_is_authenticated_from_the_event_loop_as_in_a_unit_of_work(
    shop: Context,
) -> None:
    credentials.create_user(shop, "agent", "agent password", Role.AGENT)
    made = credentials.create_api_key(shop, "agent")
    by_key = replace(shop, principal=None, credential=Presented(made.api_key))

    def at_once_who(context: Context) -> object:
        async def who() -> object:
            quick = quick_reads(context.engine)
            await quick.open()
            try:
                return await authenticated_at_once(replace(context, quick=quick))
            finally:
                await quick.close()

        return asyncio.run(who())

    assert at_once_who(by_key) is None  # its use is to be noted: a write, in a unit of work
    assert authenticated(by_key) == Principal("agent", Role.AGENT)
    assert at_once_who(by_key) == Principal("agent", Role.AGENT)
    assert asyncio.run(authenticated_at_once(by_key)) is None  # no quick reads: in a thread
    forged = replace(by_key, credential=Presented(made.api_key[:-1] + "x"))
    with pytest.raises(UnauthenticatedError):
        at_once_who(forged)
    credentials.revoke_api_key(shop, made.key_id)
    with pytest.raises(UnauthenticatedError):
        at_once_who(by_key)
    assert at_once_who(shop) == shop.principal  # a command's operator, as she is
