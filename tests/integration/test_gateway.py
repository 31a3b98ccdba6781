"""Debits through the withholding gateway simulator, running as a process of its own: the
adapter, the three phases, notifications through the API, and the reconciler."""

import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import NamedTuple

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.channels.gateway_http import HttpGateway, SignedClient
from fenqi.channels.signing import Signer
from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.events import Channel
from fenqi.domain.money import Money
from fenqi.domain.withholding import DebitRequest, Kind, Outcome, Status
from fenqi.ports import Gateways
from fenqi.services import audit, borrowers, products, servicing, withholding
from fenqi.services.context import Context
from fenqi.services.policy import operator
from fenqi.store.debit_requests import find_request
from fenqi.store.schema import LoanEventRow, PaymentMethodRow
from fenqi.wire import present
from tests.e2e.serving import serving
from tests.gateway_sim import SIGNER, Sim, gateway_sim
from tests.simulated import on_session

NOWHERE = "http://127.0.0.1:9/notify"  # nothing listens: notifications go unanswered


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    with gateway_sim(tmp_path_factory.mktemp("sim")) as running:
        yield running


def _token(sim: Sim, balance: int = 100_000, **switches: bool | float) -> str:
    """A method token of its own for each test, funded, with its own switches."""
    token = f"tok-{uuid.uuid4().hex[:12]}"
    sim.controls.set_balance(token, Money(balance))
    sim.controls.switch(token, **switches)
    return token


def _context(engine: Engine, sim: Sim, notify: str = NOWHERE) -> Context:
    gateways = Gateways({Channel.BANK_CARD: sim.gateway}, notify)
    return Context(engine, SimulatedChannel, operator("ops"), gateways=gateways)


class Plan(NamedTuple):
    loan_id: int
    method_id: int
    token: str


def _plan(context: Context, sim: Sim, balance: int = 100_000, **switches: bool | float) -> Plan:
    """A cash plan of 10,000.00 from 2026-01-15 whose borrower's card the simulator holds
    ``balance`` for, with ``switches``."""
    products.load_products(context)
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    who = borrowers.create_borrower(context, "测试", phone, Money.parse("50000"))
    card = borrowers.bind_method(context, who.id, "bank_card", "6222020000001234567")
    order = servicing.Order(who.id, f"G-{phone}", "m", Money.parse("10000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    loan = present(servicing.checkout(context, order))["id"]
    with Session(context.engine) as session:
        token = session.get(PaymentMethodRow, card.method.id).token_ref
    sim.controls.set_balance(token, Money(balance))
    sim.controls.switch(token, **switches)
    return Plan(loan, card.method.id, token)


def _request(plan: Plan, amount: int = 30_000, key: str | None = None) -> DebitRequest:
    key = key or f"pay:{plan.loan_id}:{uuid.uuid4().hex}"
    return DebitRequest(plan.loan_id, withholding.order_id(plan.loan_id, key), Kind.PAY,
                        Money(amount), Channel.BANK_CARD, plan.method_id, plan.token, key,
                        date(2026, 3, 1))  # fmt: skip


def _stored(context: Context, request: DebitRequest) -> DebitRequest:
    found = on_session(
        context, lambda session: find_request(session, request.loan_id, request.order_id)
    )
    assert found is not None
    return found


def _payments(context: Context, loan_id: int) -> list[str]:
    with Session(context.engine) as session:
        query = select(LoanEventRow.kind).where(LoanEventRow.loan_id == loan_id,
                                                LoanEventRow.kind == "payment")  # fmt: skip
        return list(session.scalars(query))


def _until(context: Context, request: DebitRequest, status: Status) -> DebitRequest:
    deadline = time.monotonic() + 15
    while (stored := _stored(context, request)).status is not status:
        assert time.monotonic() < deadline, f"still {stored.status}, never {status}"
        time.sleep(0.1)
    return stored


# -- the adapter and the simulator ----------------------------------------------------------------


def test_an_order_id_sent_twice_takes_the_money_once(sim):
    token = _token(sim)
    first = sim.gateway.request_debit("FQ7-A1", token, Money(30_000), NOWHERE)
    again = sim.gateway.request_debit("FQ7-A1", token, Money(30_000), NOWHERE)
    assert first.outcome is Outcome.SUCCEEDED
    assert again == first
    assert sim.controls.account(token) == {
        "token": token,
        "balance": 70_000,
        "debits": 1,
        "refunds": 0,
    }
    assert sim.gateway.query("FQ7-A1") == first


def test_a_debit_beyond_the_balance_or_switched_to_decline_fails_and_takes_nothing(sim):
    poor, declining = _token(sim, balance=100), _token(sim, decline=True)
    short = sim.gateway.request_debit("FQ7-B1", poor, Money(30_000), NOWHERE)
    declined = sim.gateway.request_debit("FQ7-B2", declining, Money(30_000), NOWHERE)
    assert (short.outcome, short.reason) == (Outcome.FAILED, "insufficient funds")
    assert (declined.outcome, declined.reason) == (Outcome.FAILED, "declined by the issuer")
    assert sim.controls.account(poor)["balance"] == 100
    assert sim.controls.account(declining)["balance"] == 100_000


def test_a_gateway_that_answers_too_late_is_no_answer_and_its_query_tells_the_truth(sim):
    token = _token(sim, timeout=True, timeout_seconds=2.5)
    began = time.monotonic()
    answer = sim.gateway.request_debit("FQ7-C1", token, Money(30_000), NOWHERE)
    assert answer.outcome is Outcome.NO_ANSWER
    assert time.monotonic() - began < 2.4
    assert sim.gateway.query("FQ7-C1").outcome is Outcome.SUCCEEDED
    assert sim.gateway.query("FQ7-NEVER").outcome is Outcome.NOT_FOUND


def test_an_answer_not_signed_with_the_shared_secret_is_no_answer(sim):
    stranger = HttpGateway(SignedClient(sim.url, Signer(b"x" * 32)))
    assert stranger.query("FQ7-A1").outcome is Outcome.NO_ANSWER  # the simulator refused it
    token = _token(sim)
    assert stranger.request_debit("FQ7-D1", token, Money(100), NOWHERE).outcome is Outcome.NO_ANSWER
    assert sim.controls.account(token)["debits"] == 0


def test_a_refund_pays_back_at_most_what_the_debit_took(sim):
    token = _token(sim)
    sim.gateway.request_debit("FQ7-E1", token, Money(30_000), NOWHERE)
    assert sim.gateway.refund("RF7-E1", "FQ7-E1", Money(20_000)).outcome is Outcome.SUCCEEDED
    assert sim.gateway.refund("RF7-E1", "FQ7-E1", Money(20_000)).outcome is Outcome.SUCCEEDED
    beyond = sim.gateway.refund("RF7-E2", "FQ7-E1", Money(20_000))
    assert (beyond.outcome, beyond.reason) == (
        Outcome.FAILED,
        "more than is left of the debit to refund",
    )
    assert sim.gateway.query_refund("RF7-E1").outcome is Outcome.SUCCEEDED
    assert sim.controls.account(token)["balance"] == 90_000


# -- the three phases -----------------------------------------------------------------------------


def test_a_debit_is_committed_pending_then_asked_then_recorded_and_a_retry_sends_nothing(
        engine, sim):  # fmt: skip
    context = _context(engine, sim)
    plan = _plan(context, sim)
    request = _request(plan)
    recorded = withholding.debit(context, request)
    assert (recorded.before.status, recorded.after.status) == (Status.PENDING, Status.SUCCEEDED)
    assert recorded.settled_now
    assert recorded.after.booked is Status.SUCCEEDED
    assert _stored(context, request) == recorded.after
    retried = withholding.debit(context, request)
    assert retried.after == recorded.after
    assert not retried.settled_now
    assert sim.controls.account(plan.token)["debits"] == 1
    assert _payments(context, plan.loan_id) == ["payment"]  # booked once


def test_a_declined_debit_is_recorded_failed_with_the_gateways_reason(engine, sim):
    context = _context(engine, sim)
    plan = _plan(context, sim, balance=5)
    recorded = withholding.debit(context, _request(plan))
    assert (recorded.after.status, recorded.after.reason) == (Status.FAILED, "insufficient funds")
    assert _payments(context, plan.loan_id) == []


# -- notifications through the API ----------------------------------------------------------------


@pytest.fixture
def api(database_url: str, engine: Engine, sim: Sim, monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("FENQI_GATEWAY_URL", sim.url)
    monkeypatch.setenv("FENQI_SIMULATION", "1")  # the development secret, as the simulator's
    monkeypatch.delenv("FENQI_GATEWAY_SECRET", raising=False)
    with serving(database_url) as base:
        yield base


@pytest.mark.parametrize("switches", [
    {"processing": True},
    {"processing": True, "duplicate_notify": True, "out_of_order": True},
    {"processing": True, "late_notify_seconds": 1.5},
])  # fmt: skip
def test_a_notification_records_the_outcome_once_whatever_follows_it(engine, sim, api, switches):
    context = _context(engine, sim, f"{api}/api/gateway/notify")
    plan = _plan(context, sim, **switches)
    request = _request(plan)
    recorded = withholding.debit(context, request)
    # "processing": the notification tells, and on a busy machine it may come in before the
    # call's own answer is recorded (which then changes nothing): pending or already settled.
    assert recorded.after.status in {Status.PENDING, Status.SUCCEEDED}
    settled = _until(context, request, Status.SUCCEEDED)
    time.sleep(2)  # whatever else the simulator sends (a duplicate, a stale one) comes meanwhile
    final = _stored(context, request)
    assert (final.status, final.reference, final.reason) == (settled.status, settled.reference,
                                                             None)  # fmt: skip
    assert final.attempts == 2 + bool(switches.get("duplicate_notify")) + bool(
        switches.get("out_of_order")
    )  # the call's answer and every notification, counted
    assert sim.controls.account(request.token_ref)["debits"] == 1
    assert _payments(context, plan.loan_id) == ["payment"]  # however many answers came


def test_a_notification_after_a_timeout_records_the_payment(engine, sim, api):
    context = _context(engine, sim, f"{api}/api/gateway/notify")
    plan = _plan(context, sim, timeout=True, timeout_seconds=1.5, late_notify_seconds=3)
    request = _request(plan)
    assert withholding.debit(context, request).after.status is Status.UNKNOWN
    assert _until(context, request, Status.SUCCEEDED).reference.startswith("SIM")
    assert _payments(context, plan.loan_id) == ["payment"]
    # Booked from the notification, with nobody behind it: the audit log says the gateway.
    [booked] = present(audit.audit_log(context, f"loan:{plan.loan_id}"))
    assert (booked["action"], booked["actor"]) == ("payment.take", withholding.GATEWAY_ACTOR)


def test_a_forged_or_unsigned_notification_is_refused_and_changes_nothing(engine, sim, api):
    context = _context(engine, sim)
    request = withholding.open_request(context, _request(_plan(context, sim)))
    body = f'{{"order_id": "{request.order_id}", "outcome": "succeeded"}}'.encode()
    forged = Signer(b"f" * 32).message_headers(body)
    for headers in (forged, {}):
        answer = httpx.post(f"{api}/api/gateway/notify/bank_card", content=body, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["type"] == "urn:fenqi:problem:bad-signature"
    assert _stored(context, request) == request
    signed = httpx.post(f"{api}/api/gateway/notify/bank_card", content=body,
                        headers=SIGNER.message_headers(body))  # fmt: skip
    assert signed.json() == {"order_id": request.order_id, "status": "succeeded",
                             "settled_now": True}  # fmt: skip
    unknown = httpx.post(f"{api}/api/gateway/notify/pigeon", content=body,
                         headers=SIGNER.message_headers(body))  # fmt: skip
    assert unknown.status_code == 404


# -- the reconciler -------------------------------------------------------------------------------


def test_the_reconciler_settles_what_a_crash_left_pending_and_moves_no_money_twice(engine, sim):
    context = _context(engine, sim)
    plan = _plan(context, sim)
    token = plan.token
    asked = withholding.open_request(context, _request(plan))
    withholding.ask(context, asked)  # the gateway took it; the process died before recording
    never_sent = withholding.open_request(context, _request(plan))  # died before asking
    assert present(withholding.reconcile(context, older_than=timedelta(hours=1)))["examined"] == 0
    figures = present(withholding.reconcile(context, older_than=timedelta(0)))
    assert figures == {"examined": 2, "pending": 0, "unknown": 0, "succeeded": 1, "failed": 1}
    assert _stored(context, asked).status is Status.SUCCEEDED
    assert _stored(context, never_sent).status is Status.FAILED
    assert sim.controls.account(token) == {
        "token": token,
        "balance": 70_000,
        "debits": 1,
        "refunds": 0,
    }
    assert present(withholding.reconcile(context, older_than=timedelta(0)))["examined"] == 0
    assert _payments(context, plan.loan_id) == ["payment"]


def test_a_request_reaching_the_gateway_after_the_reconciler_failed_it_is_still_booked(
        engine, sim):  # fmt: skip
    context = _context(engine, sim)
    plan = _plan(context, sim)
    late = withholding.open_request(context, _request(plan))
    withholding.reconcile(context, older_than=timedelta(0))
    assert _stored(context, late).status is Status.FAILED
    recorded = withholding.record(context, withholding.ask(context, late))
    assert recorded.settled_now
    assert recorded.after.status is Status.SUCCEEDED
    assert _payments(context, plan.loan_id) == ["payment"]  # the money came: it is booked


def test_a_request_the_gateway_is_still_processing_stays_open(engine, sim):
    context = _context(engine, sim)
    plan = _plan(context, sim, processing=True, no_notify=True)
    token = plan.token
    request = withholding.open_request(context, _request(plan))
    sim.controls.switch(token, processing=True, no_notify=True, timeout=True, timeout_seconds=3)
    withholding.record(context, withholding.ask(context, request))  # no answer in time
    figures = present(withholding.reconcile(context, older_than=timedelta(0)))
    assert (figures["examined"], figures["succeeded"]) == (1, 1)  # the query knows by now
