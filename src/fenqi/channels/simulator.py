"""The built-in payment simulator: a balance per bound method, kept in the database's
``sim_accounts``. A debit beyond the balance is declined, so tests and demos can show a failed
auto-debit on purpose.

``SimulatedGateway`` is the withholding gateway of tests, demos and simulation mode: it runs in
the process but stands apart from the lender as a bank does, each call one short transaction of
its own (never the lender's), keeping its orders (``sim_orders``) so that an order sent twice
takes the money once and a query finds it; a refund of one of its debits puts the money back
on the method's balance, once per refund id, and never more than the debit took.
``SimulatedChannel`` keeps the balances, which staff set in simulation mode.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.domain.withholding import Outcome
from fenqi.ports import Debit, GatewayAnswer, UnverifiedError
from fenqi.store.simulator import SimOrder, SimulatorTables, in_own_transaction


class SimulatedChannel:
    def __init__(self, session: Session) -> None:
        self.tables = SimulatorTables(session)

    def debit(self, token_ref: str, amount: Money, idempotency_key: str) -> Debit:
        if self.tables.take(token_ref, int(amount)):
            return Debit(f"sim:{idempotency_key}")
        short = f"insufficient funds: the method holds {Money(self.tables.balance(token_ref))}"
        return Debit(f"sim:{idempotency_key}", declined=f"{short}, {amount} was asked")

    def deposit(self, token_ref: str, amount: Money) -> None:
        """Puts ``amount`` on the method's balance (a refund of a debit)."""
        self.tables.deposit(token_ref, int(amount))

    def set_balance(self, token_ref: str, balance: Money) -> None:
        self.tables.set_balance(token_ref, int(balance))

    def balance(self, token_ref: str) -> Money:
        return Money(self.tables.locked_balance(token_ref))


class SimulatedGateway:
    """A ``WithholdingGateway`` in this process over the simulator's balances: it answers every
    debit at once (taken, or declined for want of funds) and sends no notification."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # noqa: ARG002 - it answers at once  # fmt: skip
        def take(tables: SimulatorTables) -> GatewayAnswer:
            known = tables.order(order_id)
            if known is not None:
                return _answer(known)
            debit = SimulatedChannel(tables.session).debit(token_ref, amount, order_id)
            outcome = Outcome.FAILED if debit.declined else Outcome.SUCCEEDED
            order = SimOrder(order_id, token_ref, int(amount), outcome, debit.declined)
            tables.add_order(order)
            return _answer(order)

        return in_own_transaction(self.engine, take)

    def query(self, order_id: str) -> GatewayAnswer:
        def find(tables: SimulatorTables) -> GatewayAnswer:
            known = tables.order(order_id)
            return GatewayAnswer(order_id, Outcome.NOT_FOUND) if known is None else _answer(known)

        return in_own_transaction(self.engine, find)

    def refund(self, refund_id: str, order_id: str, amount: Money) -> GatewayAnswer:
        """Pays ``amount`` of the debit ``order_id`` back to its method, at once: declined when
        no debit took money by that order id, or when it would pay back more than the debit
        took. The same refund id again gets the first answer, and moves nothing more."""

        def give(tables: SimulatorTables) -> GatewayAnswer:
            known = tables.order(refund_id)
            if known is not None:
                return _answer(known)
            debit = tables.order(order_id, for_update=True) if order_id else None
            reason = None
            if debit is None or debit.refers_to is not None or debit.outcome != Outcome.SUCCEEDED:
                reason = "no debit taken by that order id"
            elif tables.refunded(order_id) + int(amount) > debit.amount:
                reason = "more than is left of the debit to refund"
            outcome = Outcome.FAILED if reason else Outcome.SUCCEEDED
            if debit is not None and reason is None:
                tables.deposit(debit.token_ref, int(amount))
            refund = SimOrder(refund_id, "" if debit is None else debit.token_ref, int(amount),
                              outcome, reason, refers_to=order_id)  # fmt: skip
            tables.add_order(refund)
            return _answer(refund)

        return in_own_transaction(self.engine, give)

    def query_refund(self, refund_id: str) -> GatewayAnswer:
        return self.query(refund_id)

    def read_notification(self, headers: Mapping[str, str],  # noqa: ARG002 - it sends none
                          body: bytes) -> GatewayAnswer:  # noqa: ARG002  # fmt: skip
        raise UnverifiedError("the in-process simulator sends no notifications")


def _answer(order: SimOrder) -> GatewayAnswer:
    return GatewayAnswer(order.order_id, order.outcome, f"sim:{order.order_id}", order.reason)
