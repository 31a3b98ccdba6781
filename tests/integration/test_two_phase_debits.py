"""Every debit of a bound method in its phases, through the in-process gateway simulator: the
gateway is asked with no transaction open (another writer changes the loan meanwhile), a
booking retried on a stale version never asks it again, and the batch's auto-debits are asked
outside its chunk's transaction too."""

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from fenqi.channels.gateways import DEBITED
from fenqi.channels.simulator import SimulatedChannel, SimulatedGateway
from fenqi.domain.money import Money
from fenqi.domain.withholding import Outcome
from fenqi.ports import GatewayAnswer, Gateways
from fenqi.services import audit, borrowers, products, servicing, withholding
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context, Replayed
from fenqi.services.errors import DeclinedError
from fenqi.services.policy import operator
from fenqi.services.views import PaymentTaken
from fenqi.store import units
from fenqi.store.errors import StaleError
from fenqi.store.schema import DebitRequestRow, LoanEventRow, LoanRow
from fenqi.wire import document, present

DAY = date(2026, 2, 15)  # the first due date of a plan opened on 2026-01-15


class WatchingGateway(SimulatedGateway):
    """The simulator, which, while it is asked, has another writer change the loan's row (it
    would wait for a lock the caller held, and fail after a second) and counts the asks."""

    asked = 0

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # fmt: skip
        WatchingGateway.asked += 1
        loan_id = int(order_id[2:].split("-", maxsplit=1)[0])
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SET LOCAL lock_timeout = '1s'"))
            touched = connection.execute(
                update(LoanRow).where(LoanRow.id == loan_id).values(dpd=LoanRow.dpd)
            )
            assert touched.rowcount == 1
        return super().request_debit(order_id, token_ref, amount, notify_url)


@pytest.fixture
def shop(engine: Engine) -> Context:
    WatchingGateway.asked = 0
    gateways = Gateways(dict.fromkeys(DEBITED, WatchingGateway(engine)), "http://127.0.0.1:9/")
    context = Context(engine, SimulatedChannel, operator("desk"), gateways=gateways)
    products.load_products(context)
    return context


def _plan(shop: Context, balance: str = "20000") -> tuple[int, int]:
    who = borrowers.create_borrower(shop, "王小明", "13500135000", Money.parse("50000"))
    card = borrowers.bind_method(shop, who.id, "bank_card", "6222020000009876543",
                                 sim_balance=Money.parse(balance))  # fmt: skip
    order = servicing.Order(who.id, "JD-1", "京东", Money.parse("6000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    return int(present(servicing.checkout(shop, order))["id"]), int(card.method.id)


def _count(engine: Engine, table: Any, **where: object) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return int(session.scalar(query) or 0)


def test_a_payment_asks_the_gateway_outside_any_transaction_and_books_once(shop: Context):
    loan, card = _plan(shop)
    paid = present(servicing.pay(shop, loan, Money.parse("500"),
                                 servicing.Source(method_id=card), DAY, idempotency_key="k-1"))  # fmt: skip
    assert paid["payment_id"] == f"P{loan}-1"
    again = present(servicing.pay(shop, loan, Money.parse("500"),
                                  servicing.Source(method_id=card), DAY, idempotency_key="k-1"))  # fmt: skip
    assert again == paid
    assert WatchingGateway.asked == 1
    assert _count(shop.engine, LoanEventRow, loan_id=loan, kind="payment") == 1
    assert _count(shop.engine, DebitRequestRow, loan_id=loan, booked="succeeded") == 1
    # Booked once, audited once: who took it, from which card (masked), with its receipt.
    [taken] = present(audit.audit_log(shop, f"loan:{loan}"))
    assert (taken["action"], taken["actor"], taken["after"]["receipt_id"]) == (
        "payment.take", "desk", f"R{loan}-1")  # fmt: skip
    assert taken["after"]["method"] == "622202*********6543"  # masked, as every list shows it


def test_a_booking_retried_on_a_stale_version_never_asks_the_gateway_again(
    shop: Context, monkeypatch: pytest.MonkeyPatch
):
    loan, card = _plan(shop)
    real, tries = units.DatabaseLoans.save, []

    def stale_once(self: units.DatabaseLoans, *args: Any) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise StaleError("another writer got there first")
        real(self, *args)

    monkeypatch.setattr(units.DatabaseLoans, "save", stale_once)
    servicing.pay(shop, loan, Money.parse("500"), servicing.Source(method_id=card), DAY)
    assert len(tries) == 2  # the booking ran again ...
    assert WatchingGateway.asked == 1  # ... and the gateway was asked once
    assert _count(shop.engine, LoanEventRow, loan_id=loan, kind="payment") == 1


def test_a_declined_payment_books_nothing_and_may_be_sent_again_with_its_key(shop: Context):
    loan, card = _plan(shop, balance="100")
    source = servicing.Source(method_id=card)
    with pytest.raises(DeclinedError):
        servicing.pay(shop, loan, Money.parse("500"), source, DAY, idempotency_key="k-2")
    borrowers.fund_method(shop, card, Money.parse("1000"))
    paid = present(
        servicing.pay(shop, loan, Money.parse("500"), source, DAY, idempotency_key="k-2")
    )
    assert paid["payment_id"] == f"P{loan}-1"
    assert WatchingGateway.asked == 2  # a new order after the decline
    assert _count(shop.engine, LoanEventRow, loan_id=loan) == 1


def test_the_batch_asks_the_gateway_outside_its_chunks_transaction(shop: Context):
    loan, _ = _plan(shop)
    closed = document(cob.close(shop, DAY))
    assert (closed["debits_tried"], closed["debits_succeeded"]) == (1, 1)
    assert WatchingGateway.asked == 1
    assert _count(shop.engine, LoanEventRow, loan_id=loan, kind="payment") == 1
    assert _count(shop.engine, DebitRequestRow, loan_id=loan, kind="cob", booked="succeeded") == 1


class UnansweringGateway(SimulatedGateway):
    """The simulator, which takes the money but whose answer never arrives (a timeout): only
    the reconciler's query finds out."""

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # fmt: skip
        super().request_debit(order_id, token_ref, amount, notify_url)
        return GatewayAnswer(order_id, Outcome.NO_ANSWER)


def test_a_payment_booked_after_it_was_sent_answers_its_retry_as_one_booked_at_once(
    engine: Engine,
):
    gateways = Gateways(dict.fromkeys(DEBITED, UnansweringGateway(engine)), "http://127.0.0.1:9/")
    shop = Context(engine, SimulatedChannel, operator("desk"), gateways=gateways)
    products.load_products(shop)
    loan, card = _plan(shop)
    source = servicing.Source(method_id=card)
    with pytest.raises(withholding.PaymentPendingError):
        servicing.pay(shop, loan, Money.parse("500"), source, DAY, idempotency_key="k-3")
    assert present(withholding.reconcile(shop, older_than=timedelta(0)))["succeeded"] == 1
    [booked] = present(audit.audit_log(shop, f"loan:{loan}"))
    assert (booked["action"], booked["actor"]) == ("payment.take", "desk")  # the reconciler's

    paid = servicing.pay(shop, loan, Money.parse("500"), source, DAY, idempotency_key="k-3")
    assert isinstance(paid, PaymentTaken)  # read back from the receipt the reconciler booked
    shown = present(paid)
    assert (shown["id"], shown["payment_id"], shown["amount"]) == (f"P{loan}-1", f"P{loan}-1",
                                                                   "500.00")  # fmt: skip
    assert shown["loan"]["id"] == loan
    again = servicing.pay(shop, loan, Money.parse("500"), source, DAY, idempotency_key="k-3")
    assert isinstance(again, Replayed)
    assert again == shown
    assert _count(shop.engine, LoanEventRow, loan_id=loan, kind="payment") == 1
