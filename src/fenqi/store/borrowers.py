"""Borrowers and their bound payment methods (``fenqi.loans.ports.Borrowers``) in a session's
transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.ports import BorrowerAccount
from fenqi.store.loans import now
from fenqi.store.schema import MAX_ID, BorrowerRow, LoanRow, PaymentMethodRow

ACTIVE = "active"


def method_of(row: PaymentMethodRow | Row[Any]) -> PaymentMethod:
    return PaymentMethod(row.id, row.borrower_id, row.kind, row.masked_account, row.token_ref,
                         row.is_default, row.status)  # fmt: skip


def _account(row: BorrowerRow) -> BorrowerAccount:
    return BorrowerAccount(row.id, row.name, row.phone, Money(row.credit_limit))


@dataclass(frozen=True)
class DatabaseBorrowers:
    """The borrowers' repository in a session's transaction."""

    session: Session

    def get(self, borrower_id: int) -> BorrowerAccount | None:
        row = self.session.get(BorrowerRow, borrower_id)
        return None if row is None else _account(row)

    def with_phone(self, phone: str) -> int | None:
        query = select(BorrowerRow.id).where(BorrowerRow.phone == phone)
        return self.session.scalars(query).first()

    def add(self, name: str, phone: str, credit_limit: Money) -> BorrowerAccount:
        row = BorrowerRow(name=name, phone=phone, credit_limit=int(credit_limit), created_at=now())
        self.session.add(row)
        self.session.flush()
        return _account(row)

    def find(self, text: str, limit: int) -> list[BorrowerAccount]:
        session, ids = self.session, set[int]()
        ids |= set(session.scalars(select(BorrowerRow.id).where(BorrowerRow.phone == text)))
        if is_phone_suffix(text):  # the last 4 digits a caller reads out
            ended = BorrowerRow.phone.endswith(text, autoescape=True)
            ids |= set(session.scalars(select(BorrowerRow.id).where(ended)))
        # Escaped: "%" or "_" typed in a search is a character of a name, not a wildcard.
        named = BorrowerRow.name.contains(text, autoescape=True)
        ids |= set(session.scalars(select(BorrowerRow.id).where(named)))
        ids |= set(session.scalars(select(LoanRow.borrower_id).where(LoanRow.order_id == text)))
        if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID:
            ids |= set(session.scalars(select(LoanRow.borrower_id).where(LoanRow.id == int(text))))
        rows = session.scalars(select(BorrowerRow).where(BorrowerRow.id.in_(ids))
                               .order_by(BorrowerRow.id).limit(limit))  # fmt: skip
        return [_account(row) for row in rows]

    def methods(self, borrower_id: int) -> list[PaymentMethod]:
        query = select(PaymentMethodRow).where(
            PaymentMethodRow.borrower_id == borrower_id, PaymentMethodRow.status == ACTIVE
        )
        return [method_of(row) for row in self.session.scalars(query.order_by(PaymentMethodRow.id))]

    def add_method(self, borrower_id: int, kind: str, masked_account: str, token_ref: str, *,
                   is_default: bool) -> PaymentMethod:  # fmt: skip
        row = PaymentMethodRow(borrower_id=borrower_id, kind=kind, masked_account=masked_account,
                               token_ref=token_ref, is_default=is_default, status=ACTIVE,
                               created_at=now())  # fmt: skip
        self.session.add(row)
        self.session.flush()
        return method_of(row)

    def save_method(self, method: PaymentMethod) -> None:
        row = self.session.get(PaymentMethodRow, method.id)
        assert row is not None, "a method read in this transaction is there"
        row.is_default, row.status = method.is_default, method.status


def is_phone_suffix(text: str) -> bool:
    """Whether a search is a phone's last 4 digits."""
    return len(text) == 4 and text.isascii() and text.isdigit()
