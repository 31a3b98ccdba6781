"""The payment simulator's tables (``channels/simulator.py``): a balance per bound method in
``sim_accounts``, and the orders its in-process gateway answered in ``sim_orders``. Rows stay
here; the simulator gets and gives values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, Row, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fenqi.domain.withholding import Outcome
from fenqi.store.database import turn
from fenqi.store.schema import Base, SimAccountRow, SimOrderRow

T = TypeVar("T")

_ACCOUNTS = Base.metadata.tables[SimAccountRow.__tablename__]
_ORDERS = Base.metadata.tables[SimOrderRow.__tablename__]
# Built once (Core, not the ORM): every simulated debit asks it.
_ORDER = select(_ORDERS).where(_ORDERS.c.order_id == bindparam("order_id"))
_ORDER_LOCKED = _ORDER.with_for_update()
# A debit is one conditional statement that takes the money if it is there (the batch debits by
# the thousand). It writes the table, not the session's objects: ``_account`` reads afresh.
_TAKE = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.token_ref == bindparam("token"), _ACCOUNTS.c.balance >= bindparam("amount"))
    .values(balance=_ACCOUNTS.c.balance - bindparam("amount"))
    .returning(_ACCOUNTS.c.balance)
)


@dataclass(frozen=True)
class SimOrder:
    """An order the simulator answered (a refund refers to the debit it pays back)."""

    order_id: str
    token_ref: str
    amount: int  # fen
    outcome: Outcome
    reason: str | None
    refers_to: str | None = None


def _order(row: Row[Any]) -> SimOrder:
    return SimOrder(row.order_id, row.token_ref, row.amount, Outcome(row.outcome), row.reason,
                    row.refers_to)  # fmt: skip


@dataclass(frozen=True)
class SimulatorTables:
    """The simulator's balances and orders in a session's transaction."""

    session: Session

    def take(self, token_ref: str, amount: int) -> bool:
        """Takes ``amount`` from the method's balance if it holds that much: one statement."""
        taken = self.session.execute(_TAKE, {"token": token_ref, "amount": amount}).first()
        return taken is not None

    def balance(self, token_ref: str) -> int:
        query = select(_ACCOUNTS.c.balance).where(_ACCOUNTS.c.token_ref == token_ref)
        return int(self.session.scalar(query) or 0)

    def deposit(self, token_ref: str, amount: int) -> None:
        self._account(token_ref).balance += amount

    def set_balance(self, token_ref: str, balance: int) -> None:
        self._account(token_ref).balance = balance

    def locked_balance(self, token_ref: str) -> int:
        """The method's balance, its row held for the rest of the transaction."""
        return self._account(token_ref).balance

    def _account(self, token_ref: str) -> SimAccountRow:
        query = select(SimAccountRow).where(SimAccountRow.token_ref == token_ref)
        locked = query.with_for_update().execution_options(populate_existing=True)  # see _TAKE
        account = self.session.scalars(locked).one_or_none()
        if account is None:
            account = SimAccountRow(token_ref=token_ref, balance=0)
            self.session.add(account)
        return account

    def order(self, order_id: str, *, for_update: bool = False) -> SimOrder | None:
        found = self.session.execute(_ORDER_LOCKED if for_update else _ORDER,
                                     {"order_id": order_id}).first()  # fmt: skip
        return None if found is None else _order(found)

    def add_order(self, order: SimOrder) -> None:
        self.session.execute(insert(_ORDERS), {
            "order_id": order.order_id, "token_ref": order.token_ref, "amount": order.amount,
            "outcome": order.outcome.value, "reason": order.reason, "refers_to": order.refers_to,
        })  # fmt: skip

    def refunded(self, order_id: str) -> int:
        """What refunds of the debit ``order_id`` paid back."""
        query = select(func.coalesce(func.sum(_ORDERS.c.amount), 0)).where(
            _ORDERS.c.refers_to == order_id, _ORDERS.c.outcome == Outcome.SUCCEEDED.value
        )
        return int(self.session.scalar(query) or 0)


def in_own_transaction(engine: Engine, work: Callable[[SimulatorTables], T]) -> T:
    """``work`` in a transaction of the simulator's own (on SQLite, in this process's turn at
    the database, which a caller still in a transaction would be holding). The same order sent
    twice at once (a retry racing the first call) is kept by whichever commits first: the
    other, refused its insert and rolled back, runs again and finds it."""
    for attempt in (1, 2):
        try:
            with turn(engine), Session(engine) as session, session.begin():
                return work(SimulatorTables(session))
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
