"""The rules on money in and money out, through the services on SQLite and PostgreSQL: a payment
stops at what pays the plan off that day unless an admin approves more; a credit balance goes back
to where it came from; ids are read in ASCII and kept in their one canonical form; text with a
NUL, and searches with LIKE's wildcards, are taken literally or refused."""

from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.clock import stamp
from fenqi.domain.events import Channel, CreditRefund, PrepayMode, Refund, WaiverKind
from fenqi.domain.money import Money
from fenqi.domain.products import CatalogError
from fenqi.loans.booking import book
from fenqi.services import audit, books, borrowers, products, servicing
from fenqi.services.context import Context
from fenqi.services.errors import NotFoundError, RefusedError, TextError
from fenqi.services.policy import (
    GRANTED_FROM,
    ForbiddenError,
    OverpaymentApproval,
    Permission,
    Principal,
    Role,
    approve_overpayment,
    operator,
)
from fenqi.services.servicing import OverpaymentError, Source
from fenqi.store.loans import load_loan, save_bookings
from fenqi.store.schema import (
    AuditLogRow,
    IdempotencyKeyRow,
    LoanEventRow,
)
from fenqi.wire import present
from tests.funded import NO_PAYING_AHEAD, balance, funded_plan
from tests.simulated import simulated_context

START = date(2026, 1, 15)


@pytest.fixture
def context(engine: Engine) -> Context:
    shop = simulated_context(engine, actor="desk")
    products.load_products(shop)
    return shop


def plan(context: Context, amount: str = "1000", product: str = "cash",
         periods: int = 3) -> tuple[int, int]:  # fmt: skip
    return funded_plan(context, amount, product, periods)


def events(engine: Engine, loan: int) -> int:
    with Session(engine) as session:
        return len(session.scalars(select(LoanEventRow).where(LoanEventRow.loan_id == loan)).all())


def test_a_payment_beyond_the_payoff_is_refused_and_says_the_most_that_can_be_taken(
    context: Context, engine: Engine
) -> None:
    loan, card = plan(context)
    day = date(2026, 2, 15)
    payoff = present(servicing.quote_payoff(context, loan, day))["amount"]
    held, recorded = balance(engine, card), events(engine, loan)
    for amount in ("50000", "999999999999.99", str(Money.parse(payoff) + 1)):
        with pytest.raises(OverpaymentError, match=f"the most that can be taken is {payoff}"):
            servicing.pay(context, loan, Money.parse(amount), Source(), day)
        with pytest.raises(OverpaymentError, match=f"the most that can be taken is {payoff}"):
            servicing.prepay(context, loan, Money.parse(amount),
                             mode=PrepayMode.REDUCE_INSTALLMENT, source=Source(), day=day)  # fmt: skip
    assert (balance(engine, card), events(engine, loan)) == (held, recorded)
    assert OverpaymentError.field == "amount"  # the API names the field at fault

    exactly = present(servicing.pay(context, loan, Money.parse(payoff), Source(), day))
    assert exactly["loan"]["credit_balance"] == "0.00"  # the whole of it is owed


def test_an_admins_approval_takes_an_overpayment_and_the_audit_log_names_her(
    context: Context, engine: Engine
) -> None:
    loan, _ = plan(context)
    day = date(2026, 2, 15)
    payoff = Money.parse(present(servicing.quote_payoff(context, loan, day))["amount"])
    overpaying = Money.parse("1500")
    agent = replace(context, principal=Principal("agent-at-desk", Role.AGENT))
    with pytest.raises(ForbiddenError, match="permission pay_out"):  # the service asks, not a page
        servicing.prepay(agent, loan, overpaying, mode=PrepayMode.REDUCE_INSTALLMENT,
                         source=Source(manual=True), day=day, allow_overpayment=True)  # fmt: skip
    admin = replace(context, principal=operator("admin-on-duty"))
    paid = present(servicing.prepay(admin, loan, overpaying, mode=PrepayMode.REDUCE_INSTALLMENT,
                                    source=Source(manual=True), day=day,
                                    allow_overpayment=True))  # fmt: skip
    assert paid["loan"]["status"] == "settled"
    assert Money.parse(paid["loan"]["credit_balance"]) == Money.parse("1500") - payoff
    [approved] = [entry for entry in present(audit.audit_log(context, f"loan:{loan}"))
                  if entry["action"] == "payment.overpayment"]  # fmt: skip
    assert approved["actor"] == "admin-on-duty"
    assert approved["after"] == {
        "amount": "1500.00",
        "payoff": str(payoff),
        "taken_by": "admin-on-duty",
    }


def test_only_a_role_that_pays_out_may_approve_an_overpayment() -> None:
    for role in Role:
        who = Principal(role.value, role)
        if role is Role.ADMIN:
            assert approve_overpayment(who) == OverpaymentApproval("admin")
        else:
            with pytest.raises(ForbiddenError, match="permission pay_out"):
                approve_overpayment(who)
    with pytest.raises(ForbiddenError):
        approve_overpayment(Principal("borrower:1", borrower_id=1))
    # Taking money in and paying it out are held apart: agents take, only admins pay out.
    assert GRANTED_FROM[Permission.TAKE_PAYMENT] is Role.AGENT
    assert {p for p, role in GRANTED_FROM.items() if role is Role.ADMIN} >= {
        Permission.PAY_OUT,
        Permission.ADMINISTER,
    }


def test_a_backdated_payment_counts_the_payments_booked_after_it(context: Context) -> None:
    loan, _ = plan(context)
    later = date(2026, 2, 20)
    servicing.prepay(context, loan, Money.parse("600"), mode=PrepayMode.REDUCE_INSTALLMENT,
                     source=Source(manual=True), day=later)  # fmt: skip
    left = present(servicing.quote_payoff(context, loan, later))["amount"]
    earlier = date(2026, 2, 10)  # before the prepayment, when the payoff was larger
    assert Money.parse(
        present(servicing.quote_payoff(context, loan, earlier))["amount"]
    ) > Money.parse(left)
    with pytest.raises(OverpaymentError, match=f"the most that can be taken is {left}"):
        servicing.pay(context, loan, Money.parse("700"), Source(manual=True), earlier)


def test_a_credit_balance_goes_back_to_the_methods_that_paid_it_in(
    context: Context, engine: Engine
) -> None:
    """Card, Alipay and cash each leave part of a credit balance; paying 350.00 back goes to
    the most recent first (cash 100, Alipay its whole 200, the card 50), and the rest to the card
    only: Alipay has had back all it paid in. The card is the default method, and gets no more
    than its share."""
    products.load_catalog(context, NO_PAYING_AHEAD, "test")
    loan, card = plan(context, "10000", "no-advance", 12)
    who = present(servicing.show_loan(context, loan, START))["borrower_id"]
    alipay = borrowers.bind_method(context, who, "alipay", "zhang@example.com",
                                   sim_balance=Money.parse("1000")).method.id  # fmt: skip
    servicing.pay(context, loan, Money.parse("1000"), Source(method_id=card), date(2026, 1, 20))
    servicing.pay(context, loan, Money.parse("200"), Source(method_id=alipay), date(2026, 1, 21))
    servicing.pay(context, loan, Money.parse("100"), Source(manual=True), date(2026, 1, 22))
    assert (
        present(servicing.show_loan(context, loan, date(2026, 1, 22)))["credit_balance"] == "411.51"
    )
    held = {card: balance(engine, card), alipay: balance(engine, alipay)}

    day = date(2026, 1, 23)
    first = present(servicing.refund_credit(context, loan, Money.parse("350"), day))
    assert [(p["channel"], p["method_id"], p["amount"]) for p in first["paid_to"]] == [
        ("manual", None, "100.00"),
        ("alipay", alipay, "200.00"),
        ("bank_card", card, "50.00"),
    ]
    assert first["paid_to"][1]["account"] == "z***@example.com"
    rest = present(servicing.refund_credit(context, loan, None, day))
    assert [(p["method_id"], p["amount"]) for p in rest["paid_to"]] == [(card, "61.51")]
    assert rest["loan"]["credit_balance"] == "0.00"
    assert balance(engine, alipay) == held[alipay] + Money.parse("200")
    assert balance(engine, card) == held[card] + Money.parse("111.51")

    with Session(engine) as session:
        sent = [e for e in load_loan(session, loan).events if isinstance(e, CreditRefund)]
    assert [(e.method_id, e.amount) for e in sent] == [
        (None, 100_00), (alipay, 200_00), (card, 50_00), (card, 61_51)
    ]  # fmt: skip
    assert present(books.check_books(context))["consistent"]
    assert present(books.trial_balance(context))["balanced"]
    logged = [
        e
        for e in present(audit.audit_log(context, f"loan:{loan}"))
        if e["action"] == "loan.refund_credit"
    ]
    booked = [{k: v for k, v in paid.items() if k not in ("status", "reason")}
              for paid in first["paid_to"]]  # fmt: skip
    assert logged[-1]["after"]["paid_to"] == booked  # oldest entry last (the gateway's word not)
    assert {paid["status"] for paid in first["paid_to"]} == {"succeeded", None}


def test_a_credit_paid_in_by_hand_goes_back_by_hand_not_to_the_default_card(
    context: Context, engine: Engine
) -> None:
    loan, card = plan(context)
    day = date(2026, 2, 15)
    servicing.prepay(context, loan, Money.parse("1100"), mode=PrepayMode.REDUCE_INSTALLMENT,
                     source=Source(manual=True), day=day, allow_overpayment=True)  # fmt: skip
    held = balance(engine, card)
    back = present(servicing.refund_credit(context, loan, None, day))
    assert [(p["channel"], p["method_id"]) for p in back["paid_to"]] == [("manual", None)]
    assert balance(engine, card) == held


def test_a_payment_id_is_read_in_ascii_and_kept_in_its_canonical_form(
    context: Context, engine: Engine
) -> None:
    loan, _ = plan(context)
    paid = present(servicing.pay(context, loan, Money.parse("100"), Source(), date(2026, 2, 15)))
    canonical = paid["payment_id"]
    arabic = canonical.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    for foreign in (arabic, canonical.replace("-", "－"), f"PP{canonical[1:]}", "P99999999999-1"):
        with pytest.raises(NotFoundError, match="is not a payment id"):
            servicing.reverse(context, foreign, "typed oddly")
        with pytest.raises(NotFoundError):
            servicing.show_receipt(context, foreign)
    done = present(servicing.reverse(context, f"  {canonical.lower()} ", "debited twice",
                             idempotency_key="undo-1"))  # fmt: skip
    assert done["payment_id"] == canonical
    with Session(engine) as session:
        reversals = session.execute(select(AuditLogRow.target, AuditLogRow.before).where(
            AuditLogRow.action == "payment.reverse")).all()  # fmt: skip
        scopes = session.scalars(select(IdempotencyKeyRow.scope)).all()
    # Kept under its loan (filtering by the loan finds it), the payment named as it is canonically.
    assert [(target, before["payment_id"]) for target, before in reversals] == [
        (f"loan:{done['loan_id']}", canonical)
    ]
    assert f"payment:{canonical}" in scopes


def test_text_with_a_nul_is_refused_before_anything_is_kept(context: Context) -> None:
    loan, _ = plan(context)
    with pytest.raises(TextError, match="NUL"):
        borrowers.create_borrower(context, "李\x00四", "13900139000", Money.parse("1000"))
    with pytest.raises(TextError, match="NUL"):
        borrowers.find_borrowers(context, "张\x00")
    with pytest.raises(TextError, match="NUL"):
        servicing.waive(context, loan, WaiverKind.PENALTY, Money(1), reason="x\x00",
                        day=date(2026, 3, 1))  # fmt: skip
    with pytest.raises(TextError, match="NUL"):
        servicing.pay(context, loan, Money(100), Source(), date(2026, 2, 15),
                      idempotency_key="k\x00")  # fmt: skip
    with pytest.raises(TextError, match="NUL"):
        servicing.checkout(context, servicing.Order(1, "JD\x00", "m", Money(100), "cash", 3, START))
    with pytest.raises(TextError, match="NUL"):
        audit.audit_log(context, "loan:\x001")


def test_a_search_takes_like_wildcards_literally(context: Context) -> None:
    plan(context)
    percent = borrowers.create_borrower(context, "百分%之_百", "13900139001", Money.parse("1"))
    for typed in ("%", "_", "%之_"):
        found = borrowers.find_borrowers(context, typed)
        assert [who.id for who in found] == [percent.id], typed


def test_a_catalog_nested_too_deeply_or_holding_a_nul_is_refused(context: Context) -> None:
    deep = "[[product]]\ncode = 'x'\nperiods = " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(CatalogError, match="too deeply"):
        products.load_catalog(context, deep, "deep.toml")
    with pytest.raises(CatalogError, match="not valid TOML"):
        products.load_catalog(context, "[[product]]\ncode = 'x\x00'\n", "nul.toml")


def test_a_reversal_sends_back_only_what_was_not_already_paid_back(
    context: Context, engine: Engine
) -> None:
    """An approved overpayment by card, its credit paid back to the card, then the payment
    reversed: the card gets back the rest, not the whole payment a second time."""
    loan, card = plan(context)
    start = balance(engine, card)
    paid = present(servicing.prepay(context, loan, Money.parse("1500"), mode=PrepayMode.REDUCE_INSTALLMENT,
                            source=Source(method_id=card), day=date(2026, 2, 1),
                            allow_overpayment=True))  # fmt: skip
    credit = present(servicing.refund_credit(context, loan, None, date(2026, 2, 2)))["amount"]
    undone = present(
        servicing.reverse(context, paid["payment_id"], "wrong card", date(2026, 2, 3), confirm=True)
    )  # it reopens the plan it paid off
    assert undone["amount"] == "1500.00"
    assert Money.parse(undone["paid_back"]) == Money.parse("1500") - Money.parse(credit)
    assert balance(engine, card) == start  # every fen she paid is back, and no more
    assert undone["loan"]["outstanding_principal"] == "1000.00"
    assert present(books.check_books(context))["consistent"]


def test_a_merchant_refund_pays_back_the_method_that_paid_not_a_new_default(
    context: Context, engine: Engine
) -> None:
    """Paid by card, then an Alipay account bound and made her default (by her, or by a desk
    agent with an account of his own), then the goods returned: what she paid goes back to the
    card, and reversing the card payment afterwards sends nothing a second time."""
    loan, card = plan(context)
    who = present(servicing.show_loan(context, loan, START))["borrower_id"]
    start = balance(engine, card)
    paid = present(servicing.pay(context, loan, Money.parse("300"), Source(method_id=card),
                         date(2026, 2, 1)))  # fmt: skip
    alipay = borrowers.bind_method(context, who, "alipay", "zhang@example.com", default=True,
                                   sim_balance=Money(0)).method.id  # fmt: skip
    returned = present(servicing.refund(context, loan, Money.parse("1000"), date(2026, 2, 2)))
    assert (returned["channel"], returned["paid_back"]) == ("bank_card", "300.00")
    assert [(to["method_id"], to["amount"]) for to in returned["paid_to"]] == [(card, "300.00")]
    assert (balance(engine, card), balance(engine, alipay)) == (start, Money(0))
    undone = present(servicing.reverse(context, paid["payment_id"], "wrong card", date(2026, 2, 3),
                               confirm=True))  # fmt: skip
    assert undone["paid_back"] == "0.00"
    assert balance(engine, card) == start
    assert present(books.check_books(context))["consistent"]


def test_a_reversal_that_would_pay_twice_through_another_channel_is_refused(
    context: Context, engine: Engine
) -> None:
    """A merchant refund recorded before refunds went back to their source paid her through
    Alipay, her default then; reversing the card payment would pay it back a second time."""
    loan, card = plan(context)
    who = present(servicing.show_loan(context, loan, START))["borrower_id"]
    paid = present(servicing.pay(context, loan, Money.parse("300"), Source(method_id=card),
                         date(2026, 2, 1)))  # fmt: skip
    borrowers.bind_method(context, who, "alipay", "zhang@example.com", default=True)
    with Session(engine) as session, session.begin():  # as an older fenqi booked it
        record = load_loan(session, loan, for_update=True)
        old = Refund(record.next_seq, date(2026, 2, 2), Money.parse("1000"), Channel.ALIPAY)
        booking = book(record, [old], old.effective, memo="merchant refund of 1000.00",
                       issued=stamp())  # fmt: skip
        save_bookings(session, [(record, booking)])
    held, recorded = balance(engine, card), events(engine, loan)
    with pytest.raises(RefusedError, match="cannot be reversed") as refused:
        servicing.reverse(context, paid["payment_id"], "wrong card", date(2026, 2, 3))
    assert "300.00 already went back to the borrower to her Alipay" in str(refused.value)
    assert "-" not in str(refused.value)
    assert (balance(engine, card), events(engine, loan)) == (held, recorded)


def test_a_refused_reversal_says_what_went_where_in_positive_amounts(
    context: Context, engine: Engine
) -> None:
    """Paid by card, then overpaid by hand and the credit paid back by hand: reversing the card
    payment would take back money that already went back to her by hand. The refusal says so
    with the amount as it went, never a negative one or a channel's code."""
    loan, card = plan(context)
    day = date(2026, 2, 1)
    paid = present(servicing.pay(context, loan, Money.parse("300"), Source(method_id=card), day))
    payoff = Money.parse(present(servicing.quote_payoff(context, loan, day))["amount"])
    servicing.pay(context, loan, payoff + Money.parse("300"), Source(manual=True), day,
                  allow_overpayment=True)  # fmt: skip
    back = present(servicing.refund_credit(context, loan, None, day))
    assert [to["channel"] for to in back["paid_to"]] == ["manual"]
    held, recorded = balance(engine, card), events(engine, loan)
    with pytest.raises(RefusedError, match="cannot be reversed") as refused:
        servicing.reverse(context, paid["payment_id"], "wrong card", day, confirm=True)
    said = str(refused.value)
    assert f"{back['amount']} already went back to the borrower by hand" in said, said
    assert "-" not in said, said
    assert "manual" not in said, said
    assert (balance(engine, card), events(engine, loan)) == (held, recorded)


def test_a_credit_refund_behind_a_reversed_payment_no_longer_holds_back_the_credit(
    context: Context, engine: Engine
) -> None:
    """Paid 76.30 by hand, then a merchant refund of 99% of the price pays her credit back by
    hand, then the payment is reversed (what the credit refund had not sent goes back with it).
    Once she overpays by hand again, the whole credit balance goes back by hand: the earlier
    credit refund counts for what it pays back as the loan now stands (nothing), not for what it
    was written for."""
    loan, card = plan(context, "6426.24", "cash", 12)
    paid = present(servicing.pay(context, loan, Money.parse("76.30"), Source(manual=True), START))
    refunded = present(servicing.refund(context, loan, Money.parse("6361.97"), START))
    assert [(to["channel"], to["amount"]) for to in refunded["paid_to"]] == [("manual", "70.59")]
    reversed_ = present(servicing.reverse(context, paid["payment_id"], "mistake", START,
                                          confirm=True))  # fmt: skip
    assert reversed_["paid_back"] == "5.71"
    prepaid = present(servicing.prepay(context, loan, Money.parse("100"),
                                       mode=PrepayMode.REDUCE_INSTALLMENT,
                                       source=Source(manual=True), day=START,
                                       allow_overpayment=True))  # fmt: skip
    credit = prepaid["loan"]["credit_balance"]
    assert credit == "35.73"  # more than the 100.00 less the 70.59 the credit refund was for
    held = balance(engine, card)
    back = present(servicing.refund_credit(context, loan, None, START))
    assert [(to["channel"], to["amount"]) for to in back["paid_to"]] == [("manual", credit)]
    assert back["loan"]["credit_balance"] == "0.00"
    assert balance(engine, card) == held
    assert present(books.check_books(context))["consistent"]
    assert present(books.trial_balance(context))["balanced"]
