"""The built-in payment channel: a balance per bound method, kept in the same database so that
a debit commits or rolls back with the payment it pays for. A debit beyond the balance is
declined, so tests and demos can show a failed auto-debit on purpose."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.services.ports import Debit
from fenqi.store.schema import SimAccountRow


class SimulatedChannel:
    def __init__(self, session: Session) -> None:
        self.session = session

    def debit(self, token_ref: str, amount: Money, idempotency_key: str) -> Debit:
        account = self._account(token_ref)
        if account.balance < amount:
            short = f"insufficient funds: the method holds {Money(account.balance)}"
            return Debit(f"sim:{idempotency_key}", declined=f"{short}, {amount} was asked")
        account.balance -= int(amount)
        return Debit(f"sim:{idempotency_key}")

    def pay_back(self, token_ref: str, amount: Money, idempotency_key: str) -> str:
        self._account(token_ref).balance += int(amount)
        return f"sim:{idempotency_key}"

    def set_balance(self, token_ref: str, balance: Money) -> None:
        self._account(token_ref).balance = int(balance)

    def balance(self, token_ref: str) -> Money:
        return Money(self._account(token_ref).balance)

    def _account(self, token_ref: str) -> SimAccountRow:
        query = select(SimAccountRow).where(SimAccountRow.token_ref == token_ref)
        account = self.session.scalars(query.with_for_update()).one_or_none()
        if account is None:
            account = SimAccountRow(token_ref=token_ref, balance=0)
            self.session.add(account)
        return account
