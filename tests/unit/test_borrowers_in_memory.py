"""Borrowers and their bound methods on the ports kept in memory (``tests.memory``): what the
service decides (the default method, masking, who may do what) and the documents its typed
answers are presented as. The same on SQLite and PostgreSQL is in tests/integration and the
API and page tests."""

from dataclasses import replace

import pytest

from fenqi.domain.money import Money
from fenqi.services import borrowers
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import Principal
from fenqi.services.views import BorrowerView, MethodChanged
from fenqi.wire import present
from tests.memory import MemoryUnits

CARD = "6222020000001234567"


@pytest.fixture
def units() -> MemoryUnits:
    return MemoryUnits()


def test_a_new_borrower_is_presented_with_her_limit_and_methods(units: MemoryUnits) -> None:
    context = units.context()
    made = borrowers.create_borrower(context, " 张三 ", "138-0013-8000", Money.parse("50000"))
    assert isinstance(made, BorrowerView)
    assert present(made) == {"id": 1, "name": "张三", "phone": "13800138000",
                             "credit_limit": "50000.00", "available_limit": "50000.00",
                             "methods": []}  # fmt: skip
    with pytest.raises(RefusedError, match="already exists"):
        borrowers.create_borrower(context, "李四", "13800138000", Money.parse("1"))
    assert [entry["action"] for entry in units.world.audit] == ["borrower.create"]
    assert [who.id for who in borrowers.find_borrowers(context, "张")] == [1]
    assert [who.id for who in borrowers.find_borrowers(context, "8000")] == [1]  # its last 4
    assert borrowers.find_borrowers(context, "0013") == []  # 4 digits, not its last
    with pytest.raises(NotFoundError, match="no borrower 2"):
        borrowers.show_borrower(context, 2)


def test_the_first_method_is_the_default_and_another_can_take_its_place(
    units: MemoryUnits,
) -> None:
    context = units.context()
    who = borrowers.create_borrower(context, "张三", "13800138000", Money.parse("50000")).id
    card = borrowers.bind_method(context, who, "bank_card", CARD, sim_balance=Money.parse("10"))
    assert isinstance(card, MethodChanged)
    assert present(card) == {"id": 1, "borrower_id": 1, "kind": "bank_card",
                             "masked_account": "622202*********4567", "default": True,
                             "status": "active", "sim_balance": "10.00"}  # fmt: skip
    wallet = borrowers.bind_method(context, who, "alipay", "zhang@example.com").method
    assert (wallet.masked_account, wallet.is_default) == ("z***@example.com", False)
    borrowers.set_default_method(context, wallet.id)
    shown = borrowers.show_borrower(context, who)
    assert [(m.id, m.is_default) for m in shown.methods] == [(1, False), (2, True)]
    unbound = borrowers.unbind_method(context, wallet.id)
    assert (unbound.method.status, unbound.method.is_default) == ("unbound", False)
    assert [(m.id, m.is_default) for m in borrowers.show_borrower(context, who).methods] == [
        (1, True)
    ]
    with pytest.raises(NotFoundError, match="no bound method 2"):
        borrowers.unbind_method(context, wallet.id)
    funded = borrowers.fund_method(context, card.method.id, Money.parse("99"))
    assert present(funded)["sim_balance"] == "99.00"
    assert [entry["action"] for entry in units.world.audit][1:] == [
        "method.bind", "method.bind", "method.default", "method.unbind", "method.fund"
    ]  # fmt: skip


def test_a_borrower_binds_her_own_methods_only(units: MemoryUnits) -> None:
    staff = units.context()
    her = borrowers.create_borrower(staff, "张三", "13800138000", Money.parse("50000")).id
    other = borrowers.create_borrower(staff, "李四", "13900139000", Money.parse("50000")).id
    theirs = borrowers.bind_method(staff, other, "bank_card", CARD).method.id
    herself = replace(units.context(), principal=Principal(f"borrower:{her}", borrower_id=her))
    assert borrowers.bind_method(herself, her, "wechat", "zhangsan01").method.borrower_id == her
    with pytest.raises(NotFoundError):
        borrowers.set_default_method(herself, theirs)
    with pytest.raises(NotFoundError):
        borrowers.show_borrower(herself, other)


@pytest.mark.parametrize(
    ("kind", "account", "code"),
    [("alipay", "not an account", "alipay-account"), ("alipay", "zhang@", "alipay-account"),
     ("alipay", "1380013800", "alipay-account"), ("wechat", "zs", "wechat-account"),
     ("wechat", "1zhangsan", "wechat-account"), ("wechat", "zhang san 01", "wechat-account"),
     ("bank_card", "6222-0200", "card-number")],
)  # fmt: skip
def test_an_account_that_cannot_be_one_of_its_kind_is_refused_in_words(
    units: MemoryUnits, kind: str, account: str, code: str
) -> None:
    context = units.context()
    who = borrowers.create_borrower(context, "张三", "13800138000", Money.parse("50000")).id
    with pytest.raises(RefusedError) as refused:
        borrowers.bind_method(context, who, kind, account)
    assert refused.value.code == code
    assert borrowers.show_borrower(context, who).methods == []


@pytest.mark.parametrize(
    ("kind", "account", "masked"),
    [("alipay", "13800138000", "138****8000"), ("alipay", "+8613800138000", "+86*******8000"),
     ("alipay", "zhang.san@example.com.cn", "z***@example.com.cn"),
     ("wechat", "zhangsan_01", "zha****n_01"), ("wechat", "13800138000", "138****8000")],
)  # fmt: skip
def test_alipay_and_wechat_take_a_mobile_number_an_email_or_a_wechat_id(
    units: MemoryUnits, kind: str, account: str, masked: str
) -> None:
    context = units.context()
    who = borrowers.create_borrower(context, "张三", "13800138000", Money.parse("50000")).id
    assert borrowers.bind_method(context, who, kind, account).method.masked_account == masked


@pytest.mark.parametrize("phone", ["1380013800", "23800138000", "+8513800138000", "12800138000"])
def test_a_borrowers_phone_is_a_mainland_mobile_number(units: MemoryUnits, phone: str) -> None:
    with pytest.raises(RefusedError, match="not a mobile number"):
        borrowers.create_borrower(units.context(), "张三", phone, Money.parse("50000"))
