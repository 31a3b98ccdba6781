"""Borrowers, their credit lines (授信额度) and their bound repayment methods."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from fenqi import wire
from fenqi.domain.events import Channel
from fenqi.domain.money import Money
from fenqi.loans.aggregate import MAX_ID
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.ports import BorrowerAccount, UnitOfWork
from fenqi.ports import SimulatedBalances
from fenqi.services.context import Context, caller, transact
from fenqi.services.errors import NotFoundError, RefusedError, plain_text
from fenqi.services.policy import Permission, Principal, require, sees, serves, simulates
from fenqi.services.views import BorrowerView, MethodChanged

# A mainland mobile number (11 digits, 13x to 19x), with or without +86: the number a borrower
# signs in with and is texted at. The API's bodies and the sign-in page take the same.
PHONE = re.compile(r"^(\+86)?1[3-9][0-9]{9}$", re.ASCII)
_CARD = re.compile(r"^\d{12,19}$", re.ASCII)
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$", re.ASCII)
_WECHAT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{5,19}$", re.ASCII)
_KINDS = ", ".join(channel.value for channel in Channel if channel is not Channel.MANUAL)


def create_borrower(context: Context, name: str, phone: str, limit: Money) -> BorrowerView:
    name, phone = plain_text("the name", name).strip(), re.sub(r"[\s-]", "", phone)
    if not name:
        raise RefusedError("a borrower needs a name")
    if not PHONE.match(phone):
        raise RefusedError(f'"{phone}" is not a mobile number; give its 11 digits (a leading '
                           '+86 is fine), e.g. 13800138000')  # fmt: skip

    def create(unit: UnitOfWork) -> BorrowerView:
        who = caller(context, unit)
        require(who, Permission.SERVE)
        if unit.borrowers.with_phone(phone) is not None:
            raise RefusedError(f"a borrower with phone {phone} already exists")
        account = unit.borrowers.add(name, phone, limit)
        after = {"name": name, "limit": str(limit)}
        unit.audit(who.name, "borrower.create", f"borrower:{account.id}", "", after=after)
        return _borrower(unit, account)

    return transact(context, create)


def show_borrower(context: Context, borrower_id: int) -> BorrowerView:
    """A borrower, her limit and her methods: to staff, or to herself."""

    def show(unit: UnitOfWork) -> BorrowerView:
        sees(caller(context, unit), borrower_id, f"borrower {borrower_id}")
        return _borrower(unit, _account(unit, borrower_id))

    return transact(context, show)


def _account(unit: UnitOfWork, borrower_id: int) -> BorrowerAccount:
    account = unit.borrowers.get(borrower_id)
    if account is None:
        raise NotFoundError(f"no borrower {borrower_id}")
    return account


def _borrower(unit: UnitOfWork, account: BorrowerAccount) -> BorrowerView:
    available, methods = unit.available_limit(account.id), unit.borrowers.methods(account.id)
    return BorrowerView(account.id, account.name, account.phone, account.credit_limit,
                        available, methods)  # fmt: skip


def bind_method(
    context: Context,
    borrower_id: int,
    kind: str,
    account: str,
    *,
    default: bool = False,
    sim_balance: Money | None = None,
) -> MethodChanged:
    """Binds a bank card, Alipay or WeChat Pay account. Only a masked number and a token
    reference are kept; the first method bound becomes the default. A borrower binds her own;
    only staff give one a simulated balance."""

    def bind(unit: UnitOfWork) -> MethodChanged:
        who = caller(context, unit)
        serves(who, borrower_id, f"borrower {borrower_id}")
        if sim_balance is not None:
            simulates(who)
        channel = _channel(kind)
        masked = mask(channel, plain_text("the account", account))
        _account(unit, borrower_id)
        active = unit.borrowers.methods(borrower_id)
        is_default = default or not active
        if is_default:
            for other in active:
                if other.is_default:
                    unit.borrowers.save_method(replace(other, is_default=False))
        token = f"tok_{secrets.token_hex(12)}"
        method = unit.borrowers.add_method(borrower_id, channel.value, masked, token,
                                           is_default=is_default)  # fmt: skip
        if sim_balance is not None:
            _simulator(unit).set_balance(method.token_ref, sim_balance)
        target = f"method:{method.id}"
        unit.audit(who.name, "method.bind", target, "", after=wire.method(method))
        return _changed(unit, method)

    return transact(context, bind)


def set_default_method(context: Context, method_id: int) -> MethodChanged:
    """Makes a method the one debited on due dates."""

    def change(unit: UnitOfWork, method: PaymentMethod) -> PaymentMethod:
        for other in unit.borrowers.methods(method.borrower_id):
            if other.is_default != (other.id == method.id):
                unit.borrowers.save_method(replace(other, is_default=other.id == method.id))
        return replace(method, is_default=True)

    return _change_method(context, method_id, "default", change, _hers)


def unbind_method(context: Context, method_id: int) -> MethodChanged:
    """Removes a method; if it was the default, the oldest remaining one takes its place."""

    def change(unit: UnitOfWork, method: PaymentMethod) -> PaymentMethod:
        unbound = replace(method, status="unbound", is_default=False)
        unit.borrowers.save_method(unbound)
        rest = unit.borrowers.methods(method.borrower_id)
        if rest and not any(other.is_default for other in rest):
            unit.borrowers.save_method(replace(rest[0], is_default=True))
        return unbound

    return _change_method(context, method_id, "unbind", change, _hers)


def fund_method(context: Context, method_id: int, balance: Money) -> MethodChanged:
    """Sets the payment simulator's balance for a method (to make a debit succeed or fail)."""

    def change(unit: UnitOfWork, method: PaymentMethod) -> PaymentMethod:
        _simulator(unit).set_balance(method.token_ref, balance)
        return method

    def staff(who: Principal, _owner: int) -> None:
        require(who, Permission.SIMULATE)

    return _change_method(context, method_id, "fund", change, staff)


def _hers(who: Principal, owner: int) -> None:
    """A borrower changes her own methods; staff who serve borrowers, anyone's."""
    serves(who, owner, "bound method")


# The owner of a method that is not there: no one's, so a borrower is told it does not exist.
_NO_ONE = 0


def _change_method(context: Context, method_id: int, action: str,
                   change: Callable[[UnitOfWork, PaymentMethod], PaymentMethod],
                   allowed: Callable[[Principal, int], None]) -> MethodChanged:  # fmt: skip
    def work(unit: UnitOfWork) -> MethodChanged:
        who = caller(context, unit)
        method = unit.method(method_id)
        active = method is not None and method.status == "active"
        allowed(who, method.borrower_id if method is not None and active else _NO_ONE)
        if method is None or not active:
            raise NotFoundError(f"no bound method {method_id}")
        changed = change(unit, method)
        unit.audit(who.name, f"method.{action}", f"method:{method.id}", "",
                   before=wire.method(method), after=wire.method(changed))  # fmt: skip
        return _changed(unit, changed)

    return transact(context, work)


def _simulator(unit: UnitOfWork) -> SimulatedBalances:
    channel = unit.channel()
    if not isinstance(channel, SimulatedBalances):
        raise RefusedError("only the simulated payment channel keeps a balance to set")
    return channel


def _changed(unit: UnitOfWork, method: PaymentMethod) -> MethodChanged:
    channel = unit.channel()
    if isinstance(channel, SimulatedBalances):
        return MethodChanged(method, channel.balance(method.token_ref))
    return MethodChanged(method)


def _channel(kind: str) -> Channel:
    try:
        channel = Channel(kind)
    except ValueError:
        channel = Channel.MANUAL
    if channel is Channel.MANUAL:
        raise RefusedError(f'"{kind}" is not a method kind; choose one of: {_KINDS}')
    return channel


def mask(channel: Channel, account: str) -> str:
    """The account as it may be shown and stored: never a full card number. One that cannot be
    an account of its kind is refused, saying what one looks like."""
    account = account.strip() if channel is Channel.WECHAT else re.sub(r"[\s-]", "", account)
    if channel is Channel.BANK_CARD:
        if not _CARD.match(account):
            raise RefusedError(
                f"a bank card number is 12 to 19 digits, not {len(account)} characters"
            ).coded("card-number")
        return account[:6] + "*" * (len(account) - 10) + account[-4:]
    if channel is Channel.ALIPAY and not (PHONE.match(account) or _EMAIL.match(account)):
        raise RefusedError("an Alipay account is the mobile number or the email address it was "
                           "opened with").coded("alipay-account")  # fmt: skip
    if channel is Channel.WECHAT and not (PHONE.match(account) or _WECHAT_ID.match(account)):
        raise RefusedError(
            "a WeChat account is a WeChat ID (6 to 20 letters, digits, _ or -, starting with a "
            "letter) or its mobile number"
        ).coded("wechat-account")
    if "@" in account:
        name, _, domain = account.partition("@")
        return f"{name[:1]}***@{domain}"
    if len(account) <= 4:
        return "*" * len(account)
    return account[:3] + "*" * max(len(account) - 7, 2) + account[-4:]


def look_up(context: Context, text: str, limit: int = 20) -> LookedUp:
    """What an agent typed: a loan's id (digits that are neither a phone nor its last 4) names
    that loan, which the console opens at once; anything else finds borrowers
    (``find_borrowers``)."""
    text = plain_text("the search", text).strip()
    if text.isascii() and text.isdigit() and len(text) not in (4, 11) and 0 < int(text) <= MAX_ID:

        def loan(unit: UnitOfWork) -> int:
            require(caller(context, unit), Permission.READ)
            unit.loans.borrower_of(int(text))  # refuses a loan there is not
            return int(text)

        try:
            return LookedUp(transact(context, loan), [])
        except NotFoundError:
            pass  # no such loan: the digits may still be an order id or part of a name
    return LookedUp(None, find_borrowers(context, text, limit))


class LookedUp(NamedTuple):
    """A loan named by its id, or the borrowers found."""

    loan_id: int | None
    borrowers: list[BorrowerView]


def find_borrowers(context: Context, text: str, limit: int = 20) -> list[BorrowerView]:
    """Borrowers by phone (or its last 4 digits), name (a part of it), order id or loan id:
    what a customer-service agent types when someone calls."""
    text = plain_text("the search", text).strip()
    if not text:
        raise RefusedError("type a phone, a name, an order id or a loan id")

    def find(unit: UnitOfWork) -> list[BorrowerView]:
        require(caller(context, unit), Permission.READ)
        return [_borrower(unit, account) for account in unit.borrowers.find(text, limit)]

    return transact(context, find)
