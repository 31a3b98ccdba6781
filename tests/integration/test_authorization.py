"""Who may do what is decided in the services, with the principal (or the credential a request
presented) in the ``Context``: a read is authenticated, authorized and served in one
transaction, and a key revoked or an operator disabled is refused on the very next request."""

from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import Engine, event

from fenqi.channels.simulator import SimulatedChannel
from fenqi.clock import today
from fenqi.domain.money import Money
from fenqi.services import borrowers, credentials, products, servicing
from fenqi.services.context import Context
from fenqi.services.credentials import Presented
from fenqi.services.errors import NotFoundError
from fenqi.services.policy import ForbiddenError, Principal, Role, UnauthenticatedError, operator
from fenqi.wire import present

START = date(2026, 1, 15)


@pytest.fixture
def context(engine: Engine) -> Context:
    shop = Context(engine, SimulatedChannel, operator("desk"))
    products.load_products(shop)
    return shop


def plan(context: Context, phone: str, order: str) -> tuple[int, int]:
    who = borrowers.create_borrower(context, "张三", phone, Money.parse("50000"))
    made = servicing.Order(who.id, order, "华为商城", Money.parse("1000"), "cash", 3, START)
    return who.id, present(servicing.checkout(context, made))["id"]


def presenting(context: Context, token: str) -> Context:
    """A request's context as the API makes it: nobody yet, a credential to check."""
    return replace(context, principal=None, credential=Presented(token))


def transactions(engine: Engine) -> list[int]:
    begun: list[int] = []
    event.listen(engine, "begin", lambda _connection: begun.append(1))
    return begun


def test_a_bill_view_by_key_is_one_transaction_and_a_revoked_key_fails_the_next(
    context: Context, engine: Engine
) -> None:
    _, loan = plan(context, "13800000001", "AUTH-1")
    credentials.create_user(context, "viewer", "viewer password", Role.VIEWER)
    made = credentials.create_api_key(context, "viewer")
    request = presenting(context, made.api_key)
    servicing.show_loan(request, loan, START)  # notes the key's use (at most once an hour)
    begun = transactions(engine)
    assert present(servicing.show_loan(request, loan, START))["id"] == loan
    assert len(begun) == 1  # the key, the loan and its consent: one unit of work
    credentials.revoke_api_key(context, made.key_id)
    with pytest.raises(UnauthenticatedError):
        servicing.show_loan(request, loan, START)


def test_a_disabled_operator_is_refused_on_the_next_request(context: Context) -> None:
    _, loan = plan(context, "13800000002", "AUTH-2")
    credentials.create_user(context, "agent", "agent password", Role.AGENT)
    token, _ = credentials.sign_in_operator(context, "agent", "agent password")
    request = presenting(context, token)
    assert present(servicing.show_loan(request, loan, START))["id"] == loan
    credentials.disable_user(context, "agent")
    with pytest.raises(UnauthenticatedError):
        servicing.show_loan(request, loan, START)


def test_a_borrower_sees_and_pays_only_her_own(context: Context) -> None:
    mine, loan = plan(context, "13800000003", "AUTH-3")
    other, theirs = plan(context, "13800000004", "AUTH-4")
    card = borrowers.bind_method(context, other, "bank_card", "6222020000001234567",
                                 sim_balance=Money.parse("1000"))  # fmt: skip
    her = replace(context, principal=Principal(f"borrower:{mine}", borrower_id=mine))
    assert present(servicing.show_loan(her, loan, START))["borrower_id"] == mine
    for look in (lambda: servicing.show_loan(her, theirs, START),
                 lambda: servicing.list_receipts(her, theirs),
                 lambda: borrowers.show_borrower(her, other)):  # fmt: skip
        with pytest.raises(NotFoundError):
            look()
    with pytest.raises(NotFoundError):  # another's card is no method of hers
        servicing.pay(her, loan, Money.parse("10"), servicing.Source(method_id=card.method.id),
                      today())  # fmt: skip
    with pytest.raises(ForbiddenError):  # only staff take money by hand
        servicing.pay(her, loan, Money.parse("10"), servicing.Source(manual=True), today())
    with pytest.raises(ForbiddenError):
        servicing.loan_history(her, loan)


def test_nobody_is_refused_and_a_viewer_cannot_take_money(context: Context) -> None:
    _, loan = plan(context, "13800000005", "AUTH-5")
    with pytest.raises(UnauthenticatedError):
        servicing.show_loan(replace(context, principal=None), loan, START)
    viewer = replace(context, principal=Principal("v", Role.VIEWER))
    with pytest.raises(ForbiddenError, match="take_payment"):
        servicing.pay(viewer, loan, Money.parse("10"), servicing.Source(manual=True), START)
