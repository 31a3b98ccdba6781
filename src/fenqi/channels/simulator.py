"""The built-in payment channel: a balance per bound method, kept in the same database so that
a debit commits or rolls back with the payment it pays for. A debit beyond the balance is
declined, so tests and demos can show a failed auto-debit on purpose."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.ports import Debit
from fenqi.store.schema import Base, SimAccountRow

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

    def pay_back(self, token_ref: str, amount: Money, idempotency_key: str) -> str:
        self._account(token_ref).balance += int(amount)
        return f"sim:{idempotency_key}"

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
