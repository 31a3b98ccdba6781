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

from collections.abc import Callable, Mapping
from typing import TypeVar

from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.domain.withholding import Outcome
from fenqi.ports import Debit, GatewayAnswer, UnverifiedError
from fenqi.store.database import turn
from fenqi.store.schema import Base, SimAccountRow, SimOrderRow

T = TypeVar("T")

_ACCOUNTS = Base.metadata.tables[SimAccountRow.__tablename__]
# A debit is one conditional statement that takes the money if it is there (the batch debits by
# the thousand). It writes the table, not the session's objects: ``_account`` reads afresh.
_TAKE = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.token_ref == bindparam("token"), _ACCOUNTS.c.balance >= bindparam("amount"))
    .values(balance=_ACCOUNTS.c.balance - bindparam("amount"))
    .returning(_ACCOUNTS.c.balance)
)


class SimulatedChannel:
    def __init__(self, session: Session) -> None:
        self.session = session

    def debit(self, token_ref: str, amount: Money, idempotency_key: str) -> Debit:
        if (
            self.session.execute(_TAKE, {"token": token_ref, "amount": int(amount)}).first()
            is not None
        ):
            return Debit(f"sim:{idempotency_key}")
        balance = self.session.scalar(
            select(_ACCOUNTS.c.balance).where(_ACCOUNTS.c.token_ref == token_ref)
        )
        short = f"insufficient funds: the method holds {Money(balance or 0)}"
        return Debit(f"sim:{idempotency_key}", declined=f"{short}, {amount} was asked")

    def deposit(self, token_ref: str, amount: Money) -> None:
        """Puts ``amount`` on the method's balance (a refund of a debit)."""
        self._account(token_ref).balance += int(amount)

    def set_balance(self, token_ref: str, balance: Money) -> None:
        self._account(token_ref).balance = int(balance)

    def balance(self, token_ref: str) -> Money:
        return Money(self._account(token_ref).balance)

    def _account(self, token_ref: str) -> SimAccountRow:
        query = select(SimAccountRow).where(SimAccountRow.token_ref == token_ref)
        locked = query.with_for_update().execution_options(populate_existing=True)  # see _TAKE
        account = self.session.scalars(locked).one_or_none()
        if account is None:
            account = SimAccountRow(token_ref=token_ref, balance=0)
            self.session.add(account)
        return account


class SimulatedGateway:
    """A ``WithholdingGateway`` in this process over the simulator's balances: it answers every
    debit at once (taken, or declined for want of funds) and sends no notification."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # noqa: ARG002 - it answers at once  # fmt: skip
        def take(session: Session) -> GatewayAnswer:
            known = session.get(SimOrderRow, order_id)
            if known is not None:
                return _answer(known)
            debit = SimulatedChannel(session).debit(token_ref, amount, order_id)
            outcome = Outcome.FAILED if debit.declined else Outcome.SUCCEEDED
            order = SimOrderRow(order_id=order_id, token_ref=token_ref, amount=int(amount),
                                outcome=outcome.value, reason=debit.declined)  # fmt: skip
            session.add(order)
            return _answer(order)

        return self._own(take)

    def query(self, order_id: str) -> GatewayAnswer:
        def find(session: Session) -> GatewayAnswer:
            known = session.get(SimOrderRow, order_id)
            return GatewayAnswer(order_id, Outcome.NOT_FOUND) if known is None else _answer(known)

        return self._own(find)

    def refund(self, refund_id: str, order_id: str, amount: Money) -> GatewayAnswer:
        """Pays ``amount`` of the debit ``order_id`` back to its method, at once: declined when
        no debit took money by that order id, or when it would pay back more than the debit
        took. The same refund id again gets the first answer, and moves nothing more."""

        def give(session: Session) -> GatewayAnswer:
            known = session.get(SimOrderRow, refund_id)
            if known is not None:
                return _answer(known)
            debit = session.get(SimOrderRow, order_id, with_for_update=True) if order_id else None
            took = Outcome.SUCCEEDED.value
            reason = None
            if debit is None or debit.refers_to is not None or debit.outcome != took:
                reason = "no debit taken by that order id"
            else:
                refunded = session.scalar(select(func.coalesce(func.sum(SimOrderRow.amount), 0))
                                          .where(SimOrderRow.refers_to == order_id,
                                                 SimOrderRow.outcome == took))  # fmt: skip
                if int(refunded or 0) + int(amount) > debit.amount:
                    reason = "more than is left of the debit to refund"
            outcome = Outcome.FAILED if reason else Outcome.SUCCEEDED
            if debit is not None and reason is None:
                SimulatedChannel(session).deposit(debit.token_ref, amount)
            refund = SimOrderRow(order_id=refund_id, amount=int(amount), outcome=outcome.value,
                                 token_ref="" if debit is None else debit.token_ref,
                                 reason=reason, refers_to=order_id)  # fmt: skip
            session.add(refund)
            return _answer(refund)

        return self._own(give)

    def query_refund(self, refund_id: str) -> GatewayAnswer:
        return self.query(refund_id)

    def read_notification(self, headers: Mapping[str, str],  # noqa: ARG002 - it sends none
                          body: bytes) -> GatewayAnswer:  # noqa: ARG002  # fmt: skip
        raise UnverifiedError("the in-process simulator sends no notifications")

    def _own(self, work: Callable[[Session], T]) -> T:
        """``work`` in a transaction of the simulator's own (on SQLite, in this process's turn
        at the database, which a caller still in a transaction would be holding). The same
        order sent twice at once (a retry racing the first call) is kept by whichever commits
        first: the other, refused its insert and rolled back, runs again and finds it."""
        for attempt in (1, 2):
            try:
                with turn(self.engine), Session(self.engine) as session, session.begin():
                    return work(session)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


def _answer(order: SimOrderRow) -> GatewayAnswer:
    return GatewayAnswer(order.order_id, Outcome(order.outcome), f"sim:{order.order_id}",
                         order.reason)  # fmt: skip
