"""A plan's life through the services, on SQLite and on PostgreSQL: scenarios written as dated
steps and the loan's state expected after each, with the books checked after every step."""

from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.domain.events import PrepayMode, WaiverKind
from fenqi.domain.money import Money
from fenqi.services import audit, books, borrowers, products, servicing
from fenqi.services.context import Context, Replayed
from fenqi.services.errors import DeclinedError, RefusedError
from fenqi.store.schema import AuditLogRow, JournalEntryRow, PostingRow
from fenqi.wire import present
from tests.simulated import simulated_context

Step = tuple[str, str, dict[str, Any], dict[str, Any]]  # day, action, arguments, expected


@pytest.fixture
def context(engine: Engine) -> Context:
    shop = simulated_context(engine, actor="test")
    products.load_products(shop)
    return shop


def open_plan(context: Context, product: str = "cash", amount: str = "10000", periods: int = 12,
              balance: str = "100000") -> tuple[int, int]:  # fmt: skip
    """A borrower with a funded card and a plan checked out on 2026-01-15."""
    borrower = borrowers.create_borrower(context, "李四", "13900139000", Money.parse("50000"))
    borrowers.bind_method(context, borrower.id, "bank_card", "6222020000000000001",
                          sim_balance=Money.parse(balance))  # fmt: skip
    order = servicing.Order(borrower.id, "ORD-1", "华为商城", Money.parse(amount), product,
                            periods, date(2026, 1, 15))  # fmt: skip
    return borrower.id, present(servicing.checkout(context, order))["id"]


def act(
    context: Context, loan: int, day: date, action: str, args: dict[str, Any]
) -> dict[str, Any]:
    amount = Money.parse(args["amount"]) if "amount" in args else None
    if action == "pay":
        source = servicing.Source(manual=args.get("manual", False))
        allowed = bool(args.get("overpayment"))
        return present(
            servicing.pay(context, loan, Money(amount or 0), source, day, allow_overpayment=allowed)
        )
    if action == "prepay":
        mode = PrepayMode(args.get("mode", "reduce-installment"))
        return present(
            servicing.prepay(context, loan, amount, mode=mode, source=servicing.Source(), day=day)
        )
    if action == "refund":
        return present(servicing.refund(context, loan, Money(amount or 0), day))
    if action == "reverse":
        return present(servicing.reverse(context, f"P{loan}-{args['seq']}", "paid twice by mistake", day,
                                 confirm=args.get("confirm", False)))  # fmt: skip
    if action == "waive":
        kind = WaiverKind(args["what"])
        return present(
            servicing.waive(context, loan, kind, Money(amount or 0), reason="goodwill", day=day)
        )
    assert action == "look"
    return {"loan": present(servicing.show_loan(context, loan, day))}


def run_scenario(context: Context, loan: int, steps: list[Step]) -> None:
    for day_text, action, args, expected in steps:
        day = date.fromisoformat(day_text)
        result = act(context, loan, day, action, args)
        seen = present(servicing.show_loan(context, loan, day))
        for key, value in expected.items():
            actual = result[key] if key in result else seen[key]
            if key == "installments":  # {period: {field: value}}: the rows named, the fields named
                rows = {row["period"]: row for row in seen["installments"]}
                actual = {k: {f: rows[k][f] for f in fields} for k, fields in value.items()}
            assert actual == value, f"{day_text} {action}: {key} = {actual!r}, expected {value!r}"
        assert present(books.trial_balance(context))["balanced"]
        assert present(books.check_books(context))["consistent"], present(
            books.check_books(context)
        )


# fmt: off
ON_TIME = [(f"2026-{2 + k:02d}-15", "pay", {"amount": "888.49"}, {"status": "active"}) for k in range(10)]
MALL_PAID = [(f"2026-{2 + k:02d}-15", "pay", {"amount": "1072"}, {}) for k in range(3)]

# The cash product: 12% equal installments, 3 grace days, penalty 1.5 × 12% on overdue principal,
# a late fee of 5% of what is still unpaid when grace ends (at least 10.00, at most 100.00).
SCENARIOS: dict[str, tuple[str, list[Step]]] = {
    "on-time payments to payoff": ("cash", [
        *ON_TIME,
        ("2026-12-15", "pay", {"amount": "888.49"}, {"outstanding_principal": "879.67"}),
        # The last installment paid on its due date is a payment, not an early repayment.
        ("2027-01-15", "pay", {"amount": "888.47"}, {"kind": "payment", "status": "settled",
                                                     "outstanding_principal": "0.00"}),
    ]),
    "a partial payment, then overdue with penalty and a late fee": ("cash", [
        ("2026-02-15", "pay", {"amount": "500"}, {"interest": "100.00", "principal": "400.00"}),
        ("2026-02-25", "look", {}, {"status": "overdue", "dpd": 10, "bucket": "M1", "outstanding_fee": "19.42",
                                    "outstanding_penalty": "1.94", "outstanding_principal": "9600.00"}),
        ("2026-02-25", "pay", {"amount": "409.85"}, {"penalty": "1.94", "fee": "19.42", "status": "active", "dpd": 0}),
    ]),
    # Beyond the payoff (9,211.51 of principal and a day's interest, 3.07, less the 1,111.51 paid
    # ahead: 8,103.07) a payment pays the plan off, and the rest is credit: no interest of the
    # periods to come is charged.
    "an overpayment pays the plan off, beyond it is credit": ("cash", [
        ("2026-02-15", "pay", {"amount": "2000"}, {"principal": "1723.73", "to_credit": "0.00"}),
        ("2026-02-16", "pay", {"amount": "9000", "overpayment": True}, {"kind": "prepayment", "status": "settled",
                                                                        "credit_balance": "896.93"}),
    ]),
    "a backdated payment clears the penalty it would have saved": ("cash", [
        ("2026-02-28", "look", {}, {"status": "overdue", "outstanding_penalty": "5.13"}),
        ("2026-02-15", "pay", {"amount": "888.49"}, {"penalty": "0.00"}),
        ("2026-02-28", "look", {}, {"status": "active", "dpd": 0, "outstanding_penalty": "0.00",
                                    "outstanding_fee": "0.00"}),
    ]),
    "a reversal puts the installment back overdue": ("cash", [
        ("2026-02-15", "pay", {"amount": "888.49"}, {"status": "active"}),
        ("2026-03-01", "reverse", {"seq": 1, "confirm": True}, {"status": "overdue", "dpd": 14}),
    ]),
    "full payoff 15 days into period 4": ("cash", [
        *ON_TIME[:3],
        ("2026-04-30", "prepay", {}, {"amount": "7648.85", "principal": "7610.80", "interest": "38.05",
                                      "status": "settled"}),
    ]),
    "a partial prepayment reducing the installment": ("cash", [
        *ON_TIME[:3],
        ("2026-04-30", "prepay", {"amount": "3000"}, {"principal": "2961.95", "interest": "38.05",
                                                      "outstanding_principal": "4648.85"}),
        ("2026-05-15", "look", {}, {"status": "active"}),
    ]),
    "a partial prepayment shortening the term": ("cash", [
        *ON_TIME[:3],
        ("2026-04-30", "prepay", {"amount": "3000", "mode": "shorten-term"}, {"outstanding_principal": "4648.85"}),
    ]),
    # Interest of the period ending on a due date runs up to it; from that day on it is the next
    # period's. Prepaid on 15 April after installment 3 is paid: no interest, installment 3 stays
    # paid, and installments 4-12 are re-amortised on the 4,610.80 left.
    "a partial prepayment on a due date reducing the installment": ("cash", [
        *ON_TIME[:3],
        ("2026-04-15", "prepay", {"amount": "3000"}, {
            "interest": "0.00", "principal": "3000.00", "outstanding_principal": "4610.80", "dpd": 0,
            "installments": {3: {"status": "paid", "paid": "888.49", "outstanding": "0.00"},
                             4: {"outstanding": "538.27"}, 5: {"payment": "538.27"},
                             11: {"payment": "538.27"}, 12: {"payment": "538.25"}}}),
        ("2026-05-15", "pay", {"amount": "538.27"}, {"status": "active", "dpd": 0}),
        ("2026-05-20", "look", {}, {"status": "active", "dpd": 0, "outstanding_penalty": "0.00",
                                    "outstanding_fee": "0.00", "installments": {3: {"status": "paid"}}}),
        *[(f"2026-{6 + k:02d}-15", "pay", {"amount": "538.27"}, {"dpd": 0}) for k in range(7)],
        ("2026-12-20", "look", {}, {"status": "active", "dpd": 0, "outstanding_penalty": "0.00"}),
        ("2027-01-15", "pay", {"amount": "538.25"}, {"status": "settled", "outstanding_principal": "0.00"}),
    ]),
    "a partial prepayment on a due date shortening the term": ("cash", [
        *ON_TIME[:3],
        ("2026-04-15", "prepay", {"amount": "3000", "mode": "shorten-term"}, {
            "interest": "0.00", "outstanding_principal": "4610.80",
            "installments": {3: {"status": "paid"}, 4: {"outstanding": "888.49"},
                             9: {"due_date": "2026-10-15", "payment": "316.94"}}}),
        *[(f"2026-{5 + k:02d}-15", "pay", {"amount": "888.49"}, {"dpd": 0}) for k in range(5)],
        ("2026-10-15", "pay", {"amount": "316.94"}, {"status": "settled", "outstanding_principal": "0.00"}),
    ]),
    "a full payoff on a due date after paying its installment": ("cash", [
        *ON_TIME[:3],
        ("2026-04-15", "prepay", {}, {"amount": "7610.80", "interest": "0.00", "status": "settled",
                                      "installments": {3: {"paid": "888.49"}}}),
    ]),
    "a full payoff on a due date with its installment unpaid pays that installment first": ("cash", [
        *ON_TIME[:2],
        ("2026-04-15", "prepay", {}, {"amount": "8499.29", "interest": "84.15", "status": "settled",
                                      "installments": {3: {"paid": "888.49"}}}),
    ]),
    "a partial refund re-prices a mall plan and pays back the overpaid": ("mall-12", [
        *MALL_PAID,
        ("2026-05-01", "refund", {"amount": "6000"}, {"paid_back": "1608.00", "outstanding_principal": "4500.00"}),
    ]),
    "a full refund cancels the plan and pays everything back": ("mall-12", [
        *MALL_PAID,
        ("2026-05-01", "refund", {"amount": "12000"}, {"paid_back": "3216.00", "status": "cancelled"}),
    ]),
    "a penalty waiver": ("cash", [
        ("2026-02-25", "waive", {"what": "penalty", "amount": "3.94"}, {"outstanding_penalty": "0.00"}),
        ("2026-02-25", "pay", {"amount": "932.91"}, {"penalty": "0.00", "fee": "44.42", "status": "active"}),
    ]),
    # The late fee (滞纳金, 5% of the 888.49 unpaid when grace ended) is a fee owed like any other.
    "a late fee waiver": ("cash", [
        ("2026-02-25", "look", {}, {"outstanding_fee": "44.42"}),
        ("2026-02-25", "waive", {"what": "fee", "amount": "44.42"}, {"outstanding_fee": "0.00",
                                                                     "outstanding_penalty": "3.94"}),
        ("2026-02-25", "pay", {"amount": "892.43"}, {"penalty": "3.94", "fee": "0.00", "status": "active"}),
    ]),
}
# fmt: on


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(context: Context, name: str) -> None:
    product, steps = SCENARIOS[name]
    amount = "12000" if product.startswith("mall") else "10000"
    _, loan = open_plan(context, product, amount)
    run_scenario(context, loan, steps)


def test_a_payment_posts_cash_against_the_receivables_it_pays(
    context: Context, engine: Engine
) -> None:
    _, loan = open_plan(context)
    servicing.pay(context, loan, Money.parse("888.49"), servicing.Source(), date(2026, 2, 15))
    with Session(engine) as session:
        entries = session.scalars(select(JournalEntryRow).where(JournalEntryRow.loan_id == loan)
                                  .order_by(JournalEntryRow.entry_no)).all()  # fmt: skip
        assert [entry.memo.split()[0] for entry in entries] == [
            "disbursement",
            "accrual",
            "payment",
        ]
        lines = session.execute(
            select(PostingRow.entry_no, PostingRow.account, PostingRow.debit, PostingRow.credit)
            .where(PostingRow.loan_id == loan)
            .order_by(PostingRow.entry_no, PostingRow.line_no)
        ).all()
    assert [tuple(line) for line in lines] == [
        (0, "principal_receivable", 1_000_000, 0),  # entries are numbered by loan version
        (0, "merchant_payable", 0, 1_000_000),
        (2, "interest_receivable", 10_000, 0),  # period 1's interest falls due
        (2, "interest_income", 0, 10_000),
        (3, "cash_clearing:bank_card", 88_849, 0),
        (3, "interest_receivable", 0, 10_000),
        (3, "principal_receivable", 0, 78_849),
    ]


def test_the_credit_line_is_reserved_and_restored(context: Context) -> None:
    borrower, loan = open_plan(context)
    assert present(borrowers.show_borrower(context, borrower))["available_limit"] == "40000.00"
    servicing.pay(context, loan, Money.parse("888.49"), servicing.Source(), date(2026, 2, 15))
    assert present(borrowers.show_borrower(context, borrower))["available_limit"] == "40788.49"
    order = servicing.Order(borrower, "ORD-2", "华为商城", Money.parse("40788.50"), "cash", 12,
                            date(2026, 2, 16))  # fmt: skip
    with pytest.raises(RefusedError, match=r"available limit of 40788\.49"):
        servicing.checkout(context, order)
    with pytest.raises(RefusedError, match="already has plan"):
        servicing.checkout(context, servicing.Order(borrower, "ORD-1", "m", Money(100), "cash", 3,
                                                    date(2026, 2, 16)))  # fmt: skip
    servicing.refund(context, loan, Money.parse("10000"), date(2026, 2, 20))  # returned in full
    assert present(borrowers.show_borrower(context, borrower))["available_limit"] == "50000.00"


def test_reversing_a_payoff_whose_limit_was_lent_again_leaves_nothing_available(
    context: Context,
) -> None:
    borrower, loan = open_plan(context)
    paid = present(servicing.prepay(context, loan, None, mode=PrepayMode.REDUCE_INSTALLMENT,
                            source=servicing.Source(), day=date(2026, 1, 20)))  # fmt: skip
    again = servicing.Order(borrower, "ORD-2", "华为商城", Money.parse("45000"), "cash", 12,
                            date(2026, 1, 21))  # fmt: skip
    servicing.checkout(context, again)
    servicing.reverse(
        context, paid["payment_id"], "the bank recalled it", date(2026, 1, 22), confirm=True
    )  # a settled plan reopened: confirmed
    # 55,000 is now held against a 50,000 line: the debt is real, so the reversal stands, and
    # the borrower can borrow nothing more until she is back under her limit.
    assert present(borrowers.show_borrower(context, borrower))["available_limit"] == "0.00"
    with pytest.raises(RefusedError, match=r"available limit of 0\.00"):
        servicing.checkout(context, servicing.Order(borrower, "ORD-3", "m", Money.parse("1"),
                                                    "cash", 3, date(2026, 1, 22)))  # fmt: skip


def test_a_declined_debit_changes_nothing(context: Context) -> None:
    _, loan = open_plan(context, balance="100")
    with pytest.raises(DeclinedError, match="insufficient funds"):
        servicing.pay(context, loan, Money.parse("888.49"), servicing.Source(), date(2026, 2, 15))
    assert (
        present(servicing.show_loan(context, loan, date(2026, 2, 15)))["installments"][0]["paid"]
        == "0.00"
    )


def test_a_retried_payment_with_the_same_key_moves_money_once(context: Context) -> None:
    _, loan = open_plan(context)
    day, amount, source = date(2026, 2, 15), Money.parse("888.49"), servicing.Source()
    first = present(
        servicing.pay(context, loan, amount, source, day, idempotency_key="checkout-retry")
    )
    again = present(
        servicing.pay(context, loan, amount, source, day, idempotency_key="checkout-retry")
    )
    assert again == first
    assert isinstance(again, Replayed)
    assert present(servicing.show_loan(context, loan, day))["outstanding_principal"] == "9211.51"
    with pytest.raises(RefusedError, match="different request"):
        servicing.pay(
            context, loan, Money.parse("1"), source, day, idempotency_key="checkout-retry"
        )


def test_waivers_and_reversals_are_audited(context: Context, engine: Engine) -> None:
    _, loan = open_plan(context)
    servicing.waive(context, loan, WaiverKind.PENALTY, Money.parse("1.00"), reason="first time",
                    day=date(2026, 2, 25))  # fmt: skip
    paid = present(
        servicing.pay(context, loan, Money.parse("100"), servicing.Source(), date(2026, 2, 25))
    )
    servicing.reverse(context, paid["payment_id"], "wrong loan")
    with Session(engine) as session:
        actions = session.execute(select(AuditLogRow.action, AuditLogRow.reason)).all()
    assert ("waive.penalty", "first time") in actions
    assert ("payment.reverse", "wrong loan") in actions
    # The loan's filter finds its payments, reversals and waivers; a beginning finds every
    # loan's; a longer id is another loan.
    entries = present(audit.audit_log(context, f"loan:{loan}"))
    about = [entry["action"] for entry in entries]
    assert about == ["payment.reverse", "payment.take", "waive.penalty"]
    taken = entries[1]
    assert taken["actor"] == entries[0]["actor"] != ""
    assert (taken["after"]["payment_id"], taken["after"]["receipt_id"], taken["after"]["amount"]) \
        == (paid["payment_id"], paid["receipt_id"], "100.00")  # fmt: skip
    assert [entry["action"] for entry in present(audit.audit_log(context, "loan:"))] == about
    assert present(audit.audit_log(context, f"loan:{loan}0")) == []
    assert present(audit.audit_log(context, "lo%")) == []  # a wildcard is a character here
    with pytest.raises(RefusedError, match=r"only 2\.94 of penalty"):
        servicing.waive(context, loan, WaiverKind.PENALTY, Money.parse("5"), reason="x",
                        day=date(2026, 2, 25))  # fmt: skip


@pytest.mark.parametrize(
    ("product", "amount", "owed", "unbilled"),
    [("cash", "10000", "44.42", "888.49"), ("mall-12", "12000", "72.00", "1072.00")],
)
def test_a_fee_waiver_forgives_what_is_outstanding_late_fees_included_never_more(
    context: Context, product: str, amount: str, owed: str, unbilled: str
) -> None:
    """What may be waived is the outstanding fee the loan shows: billed fees and late fees (the
    cash plan's 5% of the installment unpaid when grace ended), never the fees of installments
    not yet billed (the mall plan's 72.00 a month)."""
    day = date(2026, 2, 25)
    _, loan = open_plan(context, product, amount)
    assert present(servicing.show_loan(context, loan, day))["outstanding_fee"] == owed
    beyond = Money.parse(owed) + 1
    with pytest.raises(RefusedError, match=rf"only {owed} of fee is owed"):
        servicing.waive(context, loan, WaiverKind.FEE, beyond, reason="x", day=day)
    waived = present(
        servicing.waive(context, loan, WaiverKind.FEE, Money.parse(owed), reason="x", day=day)
    )
    assert waived["loan"]["outstanding_fee"] == "0.00"
    later = present(servicing.show_loan(context, loan, date(2026, 3, 1)))["installments"]
    # The installments not yet billed still ask for their whole payment, fee included.
    assert [row["outstanding"] for row in later[1:-1]] == [unbilled] * 10
    assert present(books.trial_balance(context))["balanced"]
    assert present(books.check_books(context))["consistent"]


def test_a_credit_balance_is_paid_back(context: Context) -> None:
    _, loan = open_plan(context)
    servicing.pay(context, loan, Money.parse("11000"), servicing.Source(), date(2026, 2, 15),
                  allow_overpayment=True)  # fmt: skip
    # The payoff on 02-15: installment 1 (888.49) and the 9,211.51 of principal after it.
    assert (
        present(servicing.show_loan(context, loan, date(2026, 2, 15)))["credit_balance"] == "900.00"
    )
    with pytest.raises(RefusedError, match=r"credit balance of 900\.00"):
        servicing.refund_credit(context, loan, Money.parse("900.01"), date(2026, 2, 16))
    paid_back = present(servicing.refund_credit(context, loan, None, date(2026, 2, 16)))
    assert (paid_back["amount"], paid_back["loan"]["credit_balance"]) == ("900.00", "0.00")
    assert present(books.check_books(context))["consistent"]
