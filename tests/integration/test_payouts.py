"""Money paid back to a bound method goes through its gateway in phases, on SQLite and
PostgreSQL: the gateway is asked only once the unit of work that booked the payout has
committed, never by a unit retried on a stale version; a payout bigger than one debit is a
refund of each; a declined payout is said, listed and can be sent again; an answer lost leaves
it pending for the reconciler; and a hundred reversals or credit refunds of one payment at once
pay it back once."""

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from fenqi.channels.gateways import DEBITED
from fenqi.channels.simulator import SimulatedGateway
from fenqi.domain.money import Money
from fenqi.domain.withholding import Kind, Outcome, Status
from fenqi.ports import GatewayAnswer, Gateways
from fenqi.services import audit, books, payouts, products, servicing, withholding
from fenqi.services.context import Context, Replayed
from fenqi.services.errors import ConflictError, NotFoundError, RefusedError
from fenqi.services.servicing import Source
from fenqi.store import units
from fenqi.store.errors import StaleError
from fenqi.store.schema import DebitRequestRow, SimOrderRow
from fenqi.wire import Document, present
from tests.e2e.cli import fenqi, refused
from tests.funded import NO_PAYING_AHEAD, balance, funded_plan
from tests.simulated import simulated_context

START = date(2026, 1, 15)
DAY = date(2026, 2, 15)  # the first due date


@dataclass
class Watching:
    """The in-process simulator, watched: every refund it is asked for, whether the request it
    pays was committed before it was asked, and answers it is told to give instead."""

    engine: Engine
    inner: SimulatedGateway = field(init=False)
    refunds: list[str] = field(default_factory=list)
    uncommitted: list[str] = field(default_factory=list)
    decline: int = 0  # how many refunds to decline, before paying any
    lose: int = 0  # how many refunds to pay and then answer nothing about

    def __post_init__(self) -> None:
        self.inner = SimulatedGateway(self.engine)

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # fmt: skip
        return self.inner.request_debit(order_id, token_ref, amount, notify_url)

    def query(self, order_id: str) -> GatewayAnswer:
        return self.inner.query(order_id)

    def refund(self, refund_id: str, order_id: str, amount: Money) -> GatewayAnswer:
        self.refunds.append(refund_id)
        with Session(self.engine) as session:  # what another connection sees: committed rows
            if session.get(DebitRequestRow, (_loan(refund_id), refund_id)) is None:
                self.uncommitted.append(refund_id)
        if self.decline:
            self.decline -= 1
            return GatewayAnswer(refund_id, Outcome.FAILED, reason="account closed")
        answer = self.inner.refund(refund_id, order_id, amount)
        if self.lose:
            self.lose -= 1
            return GatewayAnswer(refund_id, Outcome.NO_ANSWER)
        return answer

    def query_refund(self, refund_id: str) -> GatewayAnswer:
        return self.inner.query_refund(refund_id)

    def read_notification(self, headers: Mapping[str, str], body: bytes) -> GatewayAnswer:
        return self.inner.read_notification(headers, body)


def _loan(order_id: str) -> int:
    return int(order_id[2:].split("-", maxsplit=1)[0])


@pytest.fixture
def gateway(engine: Engine) -> Watching:
    return Watching(engine)


@pytest.fixture
def context(engine: Engine, gateway: Watching) -> Context:
    shop = simulated_context(engine, actor="desk")
    shop = Context(shop.engine, shop.channel, shop.principal,
                   gateways=Gateways(dict.fromkeys(DEBITED, gateway), "memory:"))  # fmt: skip
    products.load_products(shop)
    products.load_catalog(shop, NO_PAYING_AHEAD, "test")
    return shop


def plan(context: Context, amount: str = "1200", product: str = "cash",
         periods: int = 3) -> tuple[int, int]:  # fmt: skip
    return funded_plan(context, amount, product, periods)


def refunds_paid(engine: Engine) -> list[tuple[str, int]]:
    """The refunds the simulator paid: (the debit order, amount)."""
    with Session(engine) as session:
        query = select(SimOrderRow.refers_to, SimOrderRow.amount).where(
            SimOrderRow.refers_to.is_not(None), SimOrderRow.outcome == Outcome.SUCCEEDED.value
        )
        return [(str(order), int(amount)) for order, amount in session.execute(query)]


def refund_requests(engine: Engine) -> list[DebitRequestRow]:
    with Session(engine) as session:
        query = select(DebitRequestRow).where(DebitRequestRow.kind == Kind.REFUND.value)
        return list(session.scalars(query.order_by(DebitRequestRow.created_at)))


@pytest.fixture
def stale_saves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Makes the next saves of a booking stale (as if another writer got there first): set
    the list's one number to how many."""
    left = [0]
    real = units.DatabaseLoans.save

    def save(self: units.DatabaseLoans, loan: object, booking: object) -> None:
        real(self, loan, booking)  # type: ignore[arg-type]
        if left[0] > 0:
            left[0] -= 1
            raise StaleError("another writer got there first")

    monkeypatch.setattr(units.DatabaseLoans, "save", save)
    return left


def test_a_reversal_retried_on_a_stale_version_asks_the_gateway_once_after_it_commits(
    context: Context, engine: Engine, gateway: Watching, stale_saves: list[int]
) -> None:
    loan, card = plan(context)
    start = balance(engine, card)
    paid = present(servicing.pay(context, loan, Money.parse("420"), Source(method_id=card), DAY))
    assert balance(engine, card) == start - Money.parse("420")

    stale_saves[0] = 3  # the reversal's unit runs four times
    done = present(servicing.reverse(context, paid["payment_id"], "mistake", idempotency_key="r1"))
    assert stale_saves[0] == 0
    assert len(gateway.refunds) == 1
    assert gateway.uncommitted == []
    assert done["paid_back"] == "420.00"
    assert [(p["id"], p["amount"], p["status"]) for p in done["paid_to"]] == [
        (done["id"], "420.00", "succeeded")
    ]
    assert balance(engine, card) == start
    assert len(refund_requests(engine)) == 1
    again = servicing.reverse(context, paid["payment_id"], "mistake", idempotency_key="r1")
    assert isinstance(again, Replayed)
    assert again == done
    assert len(gateway.refunds) == 1
    assert balance(engine, card) == start
    assert present(books.check_books(context))["consistent"]


def test_a_credit_refund_retried_on_a_stale_version_asks_the_gateway_once(
    context: Context, engine: Engine, gateway: Watching, stale_saves: list[int]
) -> None:
    loan, card = plan(context, "10000", "no-advance", 12)
    start = balance(engine, card)
    servicing.pay(context, loan, Money.parse("1000"), Source(method_id=card), date(2026, 1, 20))
    credit = present(servicing.show_loan(context, loan, date(2026, 1, 20)))["credit_balance"]
    assert credit == "111.51"
    stale_saves[0] = 2
    done = present(servicing.refund_credit(context, loan, None, date(2026, 1, 21)))
    assert stale_saves[0] == 0
    assert len(gateway.refunds) == 1
    assert gateway.uncommitted == []
    assert [(p["amount"], p["status"]) for p in done["paid_to"]] == [(credit, "succeeded")]
    assert balance(engine, card) == start - Money.parse("1000") + Money.parse(credit)
    assert present(books.trial_balance(context))["balanced"]


def test_a_payout_bigger_than_one_debit_is_a_refund_of_each(
    context: Context, engine: Engine, gateway: Watching
) -> None:
    loan, card = plan(context)
    start = balance(engine, card)
    for day in (date(2026, 1, 20), date(2026, 1, 25)):
        servicing.pay(context, loan, Money.parse("300"), Source(method_id=card), day)
    done = present(servicing.refund(context, loan, Money.parse("1200"), date(2026, 1, 26)))
    assert done["paid_back"] == "600.00"
    assert [p["status"] for p in done["paid_to"]] == ["succeeded"]
    assert sorted(amount for _, amount in refunds_paid(engine)) == [300_00, 300_00]
    assert len({order for order, _ in refunds_paid(engine)}) == 2  # one refund of each debit
    assert balance(engine, card) == start


def test_a_declined_payout_is_said_listed_and_paid_when_sent_again(
    context: Context, engine: Engine, gateway: Watching
) -> None:
    loan, card = plan(context)
    start = balance(engine, card)
    paid = present(servicing.pay(context, loan, Money.parse("420"), Source(method_id=card), DAY))
    gateway.decline = 1
    done = present(servicing.reverse(context, paid["payment_id"], "mistake"))
    payout = done["paid_to"][0]
    assert (payout["id"], payout["status"], payout["reason"]) == (done["id"], "failed",
                                                                  "account closed")  # fmt: skip
    assert balance(engine, card) == start - Money.parse("420")  # nothing went back yet
    listed = present(payouts.unpaid(context))
    assert [(p["id"], p["loan_id"], p["amount"], p["status"]) for p in listed] == [
        (done["id"], loan, "420.00", "failed")
    ]
    with pytest.raises(NotFoundError, match="not a payout id"):
        payouts.retry(context, "P1-2")

    sent = present(payouts.retry(context, done["id"]))
    assert (sent["status"], sent["amount"]) == ("succeeded", "420.00")
    assert balance(engine, card) == start
    assert present(payouts.unpaid(context)) == []
    with pytest.raises(RefusedError, match="succeeded"):
        payouts.retry(context, done["id"])  # paid: never sent a third time
    assert len(gateway.refunds) == 2
    assert len(refunds_paid(engine)) == 1
    assert present(books.check_books(context))["consistent"]


def test_a_payout_whose_answer_is_lost_is_pending_until_the_reconciler_settles_it(
    context: Context, engine: Engine, gateway: Watching
) -> None:
    loan, card = plan(context)
    start = balance(engine, card)
    paid = present(servicing.pay(context, loan, Money.parse("420"), Source(method_id=card), DAY))
    gateway.lose = 1  # the gateway pays it back, and its answer never comes
    done = present(servicing.reverse(context, paid["payment_id"], "mistake", idempotency_key="k"))
    assert done["paid_to"][0]["status"] == "pending"
    assert balance(engine, card) == start
    assert [p["status"] for p in present(payouts.unpaid(context))] == ["pending"]

    report = present(withholding.reconcile(context, older_than=timedelta(0)))
    assert (report["examined"], report["succeeded"]) == (1, 1)
    assert [row.status for row in refund_requests(engine)] == [Status.SUCCEEDED.value]
    assert present(payouts.unpaid(context)) == []
    again = servicing.reverse(context, paid["payment_id"], "mistake", idempotency_key="k")
    assert isinstance(again, Replayed)
    assert again["paid_to"][0]["status"] == "succeeded"
    assert len(refunds_paid(engine)) == 1
    assert balance(engine, card) == start


def reversed_without_an_order(context: Context, engine: Engine) -> tuple[int, Document]:
    """A plan whose 420.00 from the card is reversed, the payment booked as if taken before
    debits had requests (no debit order to refund against): its loan and the reversal."""
    loan, card = plan(context)
    paid = present(servicing.pay(context, loan, Money.parse("420"), Source(method_id=card), DAY))
    with Session(engine) as session, session.begin():
        session.query(DebitRequestRow).delete()
    return loan, present(servicing.reverse(context, paid["payment_id"], "mistake"))


def test_money_paid_in_through_no_debit_order_is_a_failed_payout_to_pay_back_by_hand(
    context: Context, engine: Engine, gateway: Watching
) -> None:
    _, done = reversed_without_an_order(context, engine)
    assert done["paid_to"][0]["status"] == "failed"
    assert "by hand" in done["paid_to"][0]["reason"]
    assert gateway.refunds == []
    with pytest.raises(RefusedError, match="by hand"):
        payouts.retry(context, done["id"])


def test_a_failed_payout_paid_by_hand_is_recorded_audited_and_never_sent(
    context: Context, engine: Engine, gateway: Watching
) -> None:
    """An operator who paid a failed payout back by bank transfer says so, with the transfer's
    reference and why: the payout is no longer unpaid, the gateway is never asked again, and a
    second try, a payout not failed, a bad reference or no reason is refused."""
    loan, card = plan(context)
    start = balance(engine, card)
    paid = present(servicing.pay(context, loan, Money.parse("420"), Source(method_id=card), DAY))
    gateway.decline = 1
    done = present(servicing.reverse(context, paid["payment_id"], "mistake"))
    for reference, reason, says in (("转账123", "paid", "not a transfer reference"),
                                    ("TX 1", "paid", "not a transfer reference"),
                                    ("TX-1", "  ", "say why")):  # fmt: skip
        with pytest.raises(RefusedError, match=says):
            payouts.paid_by_hand(context, done["id"], reference, reason)
    settled = present(payouts.paid_by_hand(context, done["id"].lower(), "BOC-2026-0042",
                                           "card closed; paid by bank transfer"))  # fmt: skip
    assert settled == {"id": done["id"], "loan_id": loan, "amount": "420.00",
                       "status": "succeeded", "reason": None,
                       "reference": "by-hand:BOC-2026-0042"}  # fmt: skip
    assert present(payouts.unpaid(context)) == []
    assert present(payouts.of_loan(context, loan)) == [{
        "id": done["id"], "loan_id": loan, "amount": "420.00", "channel": "bank_card",
        "method_id": card, "status": "succeeded", "reason": None,
        "references": ["by-hand:BOC-2026-0042"],
    }]  # fmt: skip
    assert len(gateway.refunds) == 1  # the declined first try only
    assert balance(engine, card) == start - Money.parse("420")  # the transfer went elsewhere
    for again in (payouts.retry, lambda c, p: payouts.paid_by_hand(c, p, "X", "again")):
        with pytest.raises(RefusedError, match="succeeded"):
            again(context, done["id"])
    entry = present(audit.audit_log(context, f"payout:{done['id']}"))[0]
    assert (entry["action"], entry["reason"]) == ("payout.paid_by_hand",
                                                  "card closed; paid by bank transfer")  # fmt: skip
    assert entry["after"]["reference"] == "BOC-2026-0042"
    assert present(withholding.reconcile(context, older_than=timedelta(0)))["examined"] == 0
    assert present(books.check_books(context))["consistent"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_operator_records_a_payout_paid_by_hand_from_the_command_line(
    context: Context, engine: Engine, gateway: Watching, database_url: str
) -> None:
    _, done = reversed_without_an_order(context, engine)
    listed = fenqi("gateway", "payouts", "--db", database_url, "--json").json()
    assert [(p["id"], p["status"]) for p in listed] == [(done["id"], "failed")]
    refused(fenqi("gateway", "paid-by-hand", done["id"], "--reference", "BOC 1", "--reason",
                  "transfer", "--db", database_url), "not a transfer reference")  # fmt: skip
    settled = fenqi("gateway", "paid-by-hand", done["id"], "--reference", "BOC-1", "--reason",
                    "no debit order: paid by transfer", "--db", database_url, "--json").json()  # fmt: skip
    assert (settled["status"], settled["reference"]) == ("succeeded", "by-hand:BOC-1")
    assert fenqi("gateway", "payouts", "--db", database_url, "--json").json() == []
    assert gateway.refunds == []


ATTACKERS = 100


def at_once(context: Context, database_url: str,
            attack: Callable[[Context, int], str]) -> list[str]:  # fmt: skip
    """``attack`` sent ``ATTACKERS`` times at once, each in a thread with a connection of
    its own: what each answered, "refused" for a refusal (a conflict is sent again)."""
    crowd = create_engine(database_url, pool_size=10, max_overflow=0, pool_timeout=300)
    racing = Context(crowd, context.channel, context.principal, gateways=context.gateways)
    begin = threading.Barrier(ATTACKERS)

    def attacker(n: int) -> str:
        begin.wait()
        while True:
            try:
                return attack(racing, n)
            except ConflictError:
                continue
            except RefusedError:
                return "refused"

    try:
        with ThreadPoolExecutor(ATTACKERS) as clients:
            return list(clients.map(attacker, range(ATTACKERS)))
    finally:
        crowd.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("operation", ["reverse", "refund-credit"])
def test_a_hundred_reversals_or_credit_refunds_of_one_payment_at_once_pay_it_back_once(
    context: Context, engine: Engine, gateway: Watching, database_url: str, operation: str
) -> None:
    loan, card = plan(context, "10000", "no-advance", 12)
    start = balance(engine, card)
    paid = present(servicing.pay(context, loan, Money.parse("1000"), Source(method_id=card),
                                 date(2026, 1, 20)))  # fmt: skip
    back = "1000.00" if operation == "reverse" else "111.51"  # the payment, or its credit

    def attack(racing: Context, n: int) -> str:
        if operation == "reverse":
            done = servicing.reverse(racing, paid["payment_id"], f"mistake {n}")
        else:
            done = servicing.refund_credit(racing, loan, None, date(2026, 1, 21))
        return str(present(done)["paid_to"][0]["status"])

    outcomes = at_once(context, database_url, attack)  # refused: reversed, or no credit left
    assert sorted(set(outcomes)) == ["refused", "succeeded"]
    assert outcomes.count("succeeded") == 1
    assert len(gateway.refunds) == 1
    assert gateway.uncommitted == []
    assert [amount for _, amount in refunds_paid(engine)] == [Money.parse(back)]
    assert balance(engine, card) == start - Money.parse("1000") + Money.parse(back)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(DebitRequestRow).where(
            DebitRequestRow.kind == Kind.REFUND.value)) == 1  # fmt: skip
    assert present(books.check_books(context))["consistent"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("operation", ["retry", "paid-by-hand"])
def test_a_hundred_retries_or_payments_by_hand_of_one_failed_payout_at_once_settle_it_once(
    context: Context, engine: Engine, gateway: Watching, database_url: str, operation: str
) -> None:
    """Each takes the payout's next refund id: the first to commit decides, every other is
    refused (it was just sent again or paid by hand), and the audit log says it once."""
    loan, card = plan(context)
    paid = present(servicing.pay(context, loan, Money.parse("420"), Source(method_id=card), DAY))
    gateway.decline = 1
    payout = present(servicing.reverse(context, paid["payment_id"], "mistake"))["id"]

    def attack(racing: Context, n: int) -> str:
        if operation == "retry":
            return str(present(payouts.retry(racing, payout))["status"])
        done = payouts.paid_by_hand(racing, payout, f"TX-{n}", "paid by transfer")
        return str(present(done)["status"])

    outcomes = at_once(context, database_url, attack)
    assert outcomes.count("succeeded") == 1
    assert set(outcomes) == {"refused", "succeeded"}
    assert len(gateway.refunds) == (2 if operation == "retry" else 1)  # the declined one, once
    assert present(payouts.unpaid(context)) == []
    action = "payout.retry" if operation == "retry" else "payout.paid_by_hand"
    entries = present(audit.audit_log(context, f"payout:{payout}"))
    assert [entry["action"] for entry in entries] == [action]
