"""Borrowers, their credit lines (授信额度) and their bound repayment methods."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from fenqi import wire
from fenqi.domain.events import Channel
from fenqi.domain.money import Money
from fenqi.ports import SimulatedBalances
from fenqi.services.context import Context, Document, audit, caller, run
from fenqi.services.errors import NotFoundError, RefusedError, plain_text
from fenqi.services.policy import Permission, Principal, require, sees, serves, simulates
from fenqi.store import units
from fenqi.store.loans import now
from fenqi.store.schema import MAX_ID, BorrowerRow, LoanRow, PaymentMethodRow

_PHONE = re.compile(r"^\+?\d{6,15}$", re.ASCII)
_CARD = re.compile(r"^\d{12,19}$", re.ASCII)
_KINDS = ", ".join(channel.value for channel in Channel if channel is not Channel.MANUAL)


def create_borrower(context: Context, name: str, phone: str, limit: Money) -> Document:
    name, phone = plain_text("the name", name).strip(), re.sub(r"[\s-]", "", phone)
    if not name:
        raise RefusedError("a borrower needs a name")
    if not _PHONE.match(phone):
        raise RefusedError(f'"{phone}" is not a phone number; give digits, e.g. 13800138000')

    def create(session: Session) -> Document:
        who = caller(context, session)
        require(who, Permission.SERVE)
        if session.scalars(select(BorrowerRow).where(BorrowerRow.phone == phone)).first():
            raise RefusedError(f"a borrower with phone {phone} already exists")
        row = BorrowerRow(name=name, phone=phone, credit_limit=int(limit), created_at=now())
        session.add(row)
        session.flush()
        after = {"name": name, "limit": str(limit)}
        audit(session, who.name, "borrower.create", f"borrower:{row.id}", "new", after=after)
        return _borrower(session, row)

    return run(context, create)


def show_borrower(context: Context, borrower_id: int) -> Document:
    """A borrower, her limit and her methods: to staff, or to herself."""

    def show(session: Session) -> Document:
        sees(caller(context, session), borrower_id, f"borrower {borrower_id}")
        return _borrower(session, borrower_row(session, borrower_id))

    return run(context, show)


def borrower_row(session: Session, borrower_id: int, *, lock: bool = False) -> BorrowerRow:
    query = select(BorrowerRow).where(BorrowerRow.id == borrower_id)
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFoundError(f"no borrower {borrower_id}")
    return row


def available_limit(session: Session, borrower: BorrowerRow) -> Money:
    return units.available_limit(session, borrower.id, borrower.credit_limit)


def _borrower(session: Session, row: BorrowerRow) -> Document:
    methods = session.scalars(
        select(PaymentMethodRow)
        .where(PaymentMethodRow.borrower_id == row.id, PaymentMethodRow.status == "active")
        .order_by(PaymentMethodRow.id)
    )
    return wire.borrower(row, available_limit(session, row), [wire.method(m) for m in methods])


def bind_method(
    context: Context,
    borrower_id: int,
    kind: str,
    account: str,
    *,
    default: bool = False,
    sim_balance: Money | None = None,
) -> Document:
    """Binds a bank card, Alipay or WeChat Pay account. Only a masked number and a token
    reference are kept; the first method bound becomes the default. A borrower binds her own;
    only staff give one a simulated balance."""

    def bind(session: Session) -> Document:
        who = caller(context, session)
        serves(who, borrower_id, f"borrower {borrower_id}")
        if sim_balance is not None:
            simulates(who)
        channel = _channel(kind)
        masked = mask(channel, plain_text("the account", account))
        borrower_row(session, borrower_id)
        active = _active_methods(session, borrower_id)
        row = PaymentMethodRow(
            borrower_id=borrower_id,
            kind=channel.value,
            masked_account=masked,
            token_ref=f"tok_{secrets.token_hex(12)}",
            is_default=default or not active,
            status="active",
            created_at=now(),
        )
        if row.is_default:
            for other in active:
                other.is_default = False
        session.add(row)
        session.flush()
        if sim_balance is not None:
            _simulator(context, session).set_balance(row.token_ref, sim_balance)
        target = f"method:{row.id}"
        audit(session, who.name, "method.bind", target, "bound", after=wire.method(row))
        return {**wire.method(row), **_balance(context, session, row)}

    return run(context, bind)


def set_default_method(context: Context, method_id: int) -> Document:
    """Makes a method the one debited on due dates."""

    def change(session: Session, row: PaymentMethodRow) -> None:
        for other in _active_methods(session, row.borrower_id):
            other.is_default = other.id == row.id

    return _change_method(context, method_id, "default", change, _hers)


def unbind_method(context: Context, method_id: int) -> Document:
    """Removes a method; if it was the default, the oldest remaining one takes its place."""

    def change(session: Session, row: PaymentMethodRow) -> None:
        row.status, row.is_default = "unbound", False
        rest = _active_methods(session, row.borrower_id)
        if rest and not any(other.is_default for other in rest):
            rest[0].is_default = True

    return _change_method(context, method_id, "unbind", change, _hers)


def fund_method(context: Context, method_id: int, balance: Money) -> Document:
    """Sets the payment simulator's balance for a method (to make a debit succeed or fail)."""

    def change(session: Session, row: PaymentMethodRow) -> None:
        _simulator(context, session).set_balance(row.token_ref, balance)

    def staff(who: Principal, _owner: int) -> None:
        require(who, Permission.SIMULATE)

    return _change_method(context, method_id, "fund", change, staff)


def _hers(who: Principal, owner: int) -> None:
    """A borrower changes her own methods; staff who serve borrowers, anyone's."""
    serves(who, owner, "bound method")


# The owner of a method that is not there: no one's, so a borrower is told it does not exist.
_NO_ONE = 0


def _change_method(context: Context, method_id: int, action: str,
                   change: Callable[[Session, PaymentMethodRow], None],
                   allowed: Callable[[Principal, int], None]) -> Document:  # fmt: skip
    def work(session: Session) -> Document:
        who = caller(context, session)
        row = session.get(PaymentMethodRow, method_id)
        active = row is not None and row.status == "active"
        allowed(who, row.borrower_id if row is not None and active else _NO_ONE)
        if row is None or not active:
            raise NotFoundError(f"no bound method {method_id}")
        before = wire.method(row)
        change(session, row)
        audit(session, who.name, f"method.{action}", f"method:{row.id}", action,
              before=before, after=wire.method(row))  # fmt: skip
        return {**wire.method(row), **_balance(context, session, row)}

    return run(context, work)


def _simulator(context: Context, session: Session) -> SimulatedBalances:
    channel = context.channel(session)
    if not isinstance(channel, SimulatedBalances):
        raise RefusedError("only the simulated payment channel keeps a balance to set")
    return channel


def _balance(context: Context, session: Session, row: PaymentMethodRow) -> Document:
    channel = context.channel(session)
    if isinstance(channel, SimulatedBalances):
        return {"sim_balance": wire.money(channel.balance(row.token_ref))}
    return {}


def _active_methods(session: Session, borrower_id: int) -> list[PaymentMethodRow]:
    query = select(PaymentMethodRow).where(
        PaymentMethodRow.borrower_id == borrower_id, PaymentMethodRow.status == "active"
    )
    return list(session.scalars(query.order_by(PaymentMethodRow.id)))


def default_method(session: Session, borrower_id: int) -> PaymentMethodRow | None:
    return next((row for row in _active_methods(session, borrower_id) if row.is_default), None)


def _channel(kind: str) -> Channel:
    try:
        channel = Channel(kind)
    except ValueError:
        channel = Channel.MANUAL
    if channel is Channel.MANUAL:
        raise RefusedError(f'"{kind}" is not a method kind; choose one of: {_KINDS}')
    return channel


def mask(channel: Channel, account: str) -> str:
    """The account as it may be shown and stored: never a full card number."""
    account = re.sub(r"[\s-]", "", account)
    if channel is Channel.BANK_CARD:
        if not _CARD.match(account):
            raise RefusedError(
                f"a bank card number is 12 to 19 digits, not {len(account)} characters"
            )
        return account[:6] + "*" * (len(account) - 10) + account[-4:]
    if not account:
        raise RefusedError(f"give the {channel.value} account")
    if "@" in account:
        name, _, domain = account.partition("@")
        return f"{name[:1]}***@{domain}"
    if len(account) <= 4:
        return "*" * len(account)
    return account[:3] + "*" * max(len(account) - 7, 2) + account[-4:]


def find_borrowers(context: Context, text: str, limit: int = 20) -> list[Document]:
    """Borrowers by phone, name (a part of it), order id or loan id: what a customer-service
    agent types when someone calls."""
    text = plain_text("the search", text).strip()
    if not text:
        raise RefusedError("type a phone, a name, an order id or a loan id")

    def find(session: Session) -> list[Document]:
        require(caller(context, session), Permission.READ)
        ids: set[int] = set()
        ids |= set(session.scalars(select(BorrowerRow.id).where(BorrowerRow.phone == text)))
        # Escaped: "%" or "_" typed in a search is a character of a name, not a wildcard.
        named = BorrowerRow.name.contains(text, autoescape=True)
        ids |= set(session.scalars(select(BorrowerRow.id).where(named)))
        ids |= set(session.scalars(select(LoanRow.borrower_id).where(LoanRow.order_id == text)))
        if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID:
            ids |= set(session.scalars(select(LoanRow.borrower_id).where(LoanRow.id == int(text))))
        rows = session.scalars(select(BorrowerRow).where(BorrowerRow.id.in_(ids))
                               .order_by(BorrowerRow.id).limit(limit))  # fmt: skip
        return [_borrower(session, row) for row in rows]

    return run(context, find)
