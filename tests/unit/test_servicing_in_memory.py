"""The servicing operations on loans kept in memory (``tests.memory``): what each decides and
books — events, journal, receipts, money moved, the audit log — without a database, in
milliseconds. The same operations on SQLite and PostgreSQL are in tests/integration."""

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fenqi.catalog import shipped_catalog_text
from fenqi.domain.events import PrepayMode, WaiverKind
from fenqi.domain.ledger import balances
from fenqi.domain.money import Money
from fenqi.services import audit, books, payouts, products, servicing, withholding
from fenqi.services.context import Context, Replayed
from fenqi.services.errors import DeclinedError, NotFoundError, RefusedError
from fenqi.wire import present
from tests.memory import MemoryUnits

OPENED = date(2026, 1, 15)
BORROWER = 7


@pytest.fixture
def units() -> MemoryUnits:
    return MemoryUnits()


def open_plan(units: MemoryUnits, card: str | None = "100000") -> tuple[Context, int, int | None]:
    """A borrower (with a funded card, unless ``card`` is None) and a 12-month cash plan of
    10,000 checked out on ``OPENED``."""
    context = units.context()
    method = units.borrower(BORROWER, "50000", card=card)
    order = servicing.Order(BORROWER, "ORD-1", "华为商城", Money.parse("10000"), "cash", 12,
                            OPENED)  # fmt: skip
    return context, present(servicing.checkout(context, order))["id"], method


def books_agree(units: MemoryUnits, loan_id: int) -> bool:
    """The journal kept holds the loan's state on the day its books reach."""
    loan = units.world.loans[loan_id]
    expected = balances(loan.terms, loan.state_on(loan.booked_through))
    return units.world.books(loan_id) == {k: int(v) for k, v in expected.items() if v}


def test_checkout_books_the_disbursement_and_holds_the_limit(units: MemoryUnits) -> None:
    context, loan_id, _ = open_plan(units)
    loan = units.world.loans[loan_id]
    assert (loan.version, loan.booked_through, loan.closed_through) == (1, OPENED, OPENED)
    assert [entry.memo for _, entry in units.world.journal[loan_id]] == [
        "disbursement to merchant 华为商城 for order ORD-1"
    ]
    assert books_agree(units, loan_id)
    again = servicing.Order(BORROWER, "ORD-2", "京东", Money.parse("45000"), "cash", 12, OPENED)
    with pytest.raises(RefusedError, match=r"over the available limit of 40000\.00"):
        servicing.checkout(context, again)


def test_a_payment_on_its_due_date_pays_the_installment_with_a_receipt(
    units: MemoryUnits,
) -> None:
    context, loan_id, method = open_plan(units)
    due = present(servicing.show_loan(context, loan_id, date(2026, 2, 15)))["installments"][0]
    paid = present(servicing.pay(context, loan_id, Money.parse(due["payment"]),
                         servicing.Source(method_id=method), date(2026, 2, 15)))  # fmt: skip
    assert paid["id"] == f"P{loan_id}-1"
    assert paid["method"]["id"] == method
    assert paid["loan"]["amount_due"] == "0.00"
    assert present(servicing.show_receipt(context, f"R{loan_id}-1"))["amount"] == due["payment"]
    assert units.world.balances["tok_1"] == Money.parse("100000") - Money.parse(due["payment"])
    memos = [entry.memo for _, entry in units.world.journal[loan_id]]
    assert memos[1:] == ["accrual to 2026-02-15", f"payment P{loan_id}-1"]
    assert books_agree(units, loan_id)


def test_a_declined_debit_changes_nothing(units: MemoryUnits) -> None:
    context, loan_id, method = open_plan(units, card="1")
    before = units.world.loans[loan_id]
    with pytest.raises(DeclinedError, match="declined"):
        servicing.pay(context, loan_id, Money.parse("500"), servicing.Source(method_id=method),
                      date(2026, 2, 15))  # fmt: skip
    assert units.world.loans[loan_id] == before
    assert units.world.receipts == {}


def test_a_payment_sent_again_with_its_key_is_replayed_and_moves_no_money(
    units: MemoryUnits,
) -> None:
    context, loan_id, method = open_plan(units)
    source = servicing.Source(method_id=method)
    first = present(servicing.pay(context, loan_id, Money.parse("500"), source, date(2026, 2, 1),
                          idempotency_key="k-1"))  # fmt: skip
    held = units.world.balances["tok_1"]
    again = present(servicing.pay(context, loan_id, Money.parse("500"), source, date(2026, 2, 1),
                          idempotency_key="k-1"))  # fmt: skip
    assert isinstance(again, Replayed)
    assert again == first
    assert units.world.balances["tok_1"] == held
    assert units.world.loans[loan_id].next_seq == 2


def test_a_full_prepayment_settles_the_plan_at_its_payoff_quote(units: MemoryUnits) -> None:
    context, loan_id, _ = open_plan(units)
    day = date(2026, 3, 1)
    quoted = present(servicing.quote_payoff(context, loan_id, day))["amount"]
    paid = present(servicing.prepay(context, loan_id, None, mode=PrepayMode.REDUCE_INSTALLMENT,
                            source=servicing.Source(), day=day))  # fmt: skip
    assert paid["amount"] == quoted
    assert paid["kind"] == "prepayment"
    assert paid["loan"]["status"] == "settled"
    assert books_agree(units, loan_id)
    with pytest.raises(RefusedError, match="nothing is owed"):
        servicing.pay(context, loan_id, Money.parse("1"), servicing.Source(), day)


def test_a_merchant_refund_pays_back_what_was_paid_beyond_the_repriced_plan(
    units: MemoryUnits,
) -> None:
    context, loan_id, method = open_plan(units)
    servicing.pay(context, loan_id, Money.parse("2000"), servicing.Source(method_id=method),
                  date(2026, 2, 15))  # fmt: skip
    held = units.world.balances["tok_1"]
    refunded = present(servicing.refund(context, loan_id, Money.parse("10000"), date(2026, 2, 20)))
    assert refunded["loan"]["status"] == "cancelled"
    paid_back = Money.parse(refunded["paid_back"])
    assert paid_back > 0
    assert [p["method_id"] for p in refunded["paid_to"]] == [method]
    assert units.world.balances["tok_1"] == held + paid_back
    assert units.world.audit[-1]["action"] == "loan.refund"
    assert payouts.unpaid(context) == []  # paid at once: nothing left to retry or reconcile
    assert present(withholding.reconcile(context))["examined"] == 0
    assert books_agree(units, loan_id)


def test_a_waiver_forgives_penalty_owed_and_no_more(units: MemoryUnits) -> None:
    context, loan_id, _ = open_plan(units, card=None)
    day = date(2026, 3, 20)  # the first installment a month overdue
    owed = present(servicing.show_loan(context, loan_id, day))["outstanding_penalty"]
    assert Money.parse(owed) > 0
    with pytest.raises(RefusedError, match=f"only {owed} of penalty is owed"):
        servicing.waive(context, loan_id, WaiverKind.PENALTY, Money.parse(owed) + Money(1),
                        reason="goodwill", day=day)  # fmt: skip
    waived = present(servicing.waive(context, loan_id, WaiverKind.PENALTY, Money.parse(owed),
                             reason="goodwill", day=day))  # fmt: skip
    assert waived["loan"]["outstanding_penalty"] == "0.00"
    assert units.world.audit[-1]["action"] == "waive.penalty"
    assert books_agree(units, loan_id)


def test_a_reversal_takes_the_payment_back_and_pays_it_back_to_its_card(
    units: MemoryUnits,
) -> None:
    context, loan_id, method = open_plan(units)
    paid = present(servicing.pay(context, loan_id, Money.parse("300"), servicing.Source(method_id=method),
                         date(2026, 2, 1)))  # fmt: skip
    held = units.world.balances["tok_1"]
    reversed_ = present(
        servicing.reverse(context, paid["payment_id"], "wrong loan", date(2026, 2, 3))
    )
    assert reversed_["paid_back"] == "300.00"
    assert units.world.balances["tok_1"] == held + Money.parse("300")
    assert [r["reversed"] for r in present(servicing.list_receipts(context, loan_id))] == [True]
    with pytest.raises(RefusedError, match="already reversed"):
        servicing.reverse(context, paid["payment_id"], "again", date(2026, 2, 3))
    assert books_agree(units, loan_id)


def test_an_unknown_loan_or_borrower_is_not_found(units: MemoryUnits) -> None:
    context, _, _ = open_plan(units)
    with pytest.raises(NotFoundError):
        servicing.show_loan(context, 99, OPENED)
    with pytest.raises(NotFoundError):
        servicing.list_loans(context, 99, OPENED)
    assert [entry["memo"] for entry in present(servicing.loan_history(context, 1))["entries"]] == [
        "disbursement to merchant 华为商城 for order ORD-1"
    ]


def test_the_books_check_and_the_trial_balance_read_the_journal_kept(
    units: MemoryUnits,
) -> None:
    context, loan_id, method = open_plan(units)
    servicing.pay(context, loan_id, Money.parse("900"), servicing.Source(method_id=method),
                  date(2026, 2, 20))  # fmt: skip
    checked = present(books.check_books(context))
    assert (checked["loans_checked"], checked["consistent"]) == (1, True)
    assert present(books.trial_balance(context))["balanced"]
    units.world.journal[loan_id].pop()  # a lost entry
    assert [d["loan_id"] for d in present(books.check_books(context))["differences"]][:1] == [
        loan_id
    ]


def test_a_catalog_loaded_again_replaces_its_products_and_the_audit_log_says_so(
    units: MemoryUnits,
) -> None:
    context = units.context(actor="ops")
    codes = [product["code"] for product in present(products.list_products(context))]
    assert codes == sorted(codes)
    assert present(products.seed_products(context)) == []  # the catalog is there already
    loaded = present(products.load_catalog(context, shipped_catalog_text()))
    assert [product["code"] for product in loaded] == list(units.products)
    entries = present(audit.audit_log(context, target=codes[0]))
    assert [(e["actor"], e["action"], e["before"] is not None) for e in entries] == [
        ("ops", "product.load", True)
    ]


def test_her_overview_is_what_she_has_to_repay_across_her_plans(units: MemoryUnits) -> None:
    """Her limit and what of it is free, and every installment still owed on her plans by due
    date, with the sums her page leads with: an overdue bill is in every one of them."""
    context, first, _ = open_plan(units)
    later = servicing.Order(BORROWER, "ORD-2", "京东", Money.parse("3000"), "cash", 6,
                            date(2026, 3, 1))  # fmt: skip
    second = present(servicing.checkout(context, later))["id"]
    servicing.pay(context, first, Money.parse("888.49"), servicing.Source(manual=True),
                  date(2026, 2, 15))  # fmt: skip
    seen = present(servicing.overview(context, BORROWER, date(2026, 3, 25)))
    assert (seen["credit_limit"], seen["available_limit"]) == (
        "50000.00",
        "37788.49",
    )  # 50,000 - 9,211.51 - 3,000
    rows = [(row["loan_id"], row["period"], row["due_date"], row["status"])
            for row in seen["installments"]]  # fmt: skip
    assert rows[:3] == [(first, 2, "2026-03-15", "overdue"), (second, 1, "2026-04-01", "future"),
                        (first, 3, "2026-04-15", "future")]  # fmt: skip
    assert len(rows) == 11 + 6
    overdue = Money.parse(seen["installments"][0]["amount"])
    assert overdue > Money.parse("888.49")  # the bill with its penalty
    second_bill = Money.parse(seen["installments"][1]["amount"])
    assert seen["due_within_week"] == str(Money(overdue + second_bill))  # due by 4-01
    assert seen["due_this_month"] == str(overdue)  # March's: the overdue one only
    assert seen["amount_due"] == str(overdue)
    assert seen["months"][:2] == [{"month": "2026-03", "amount": str(overdue)},
                                  {"month": "2026-04", "amount": seen["months"][1]["amount"]}]  # fmt: skip
    assert [plan["id"] for plan in seen["plans"]] == [first, second]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 300_000)), max_size=6),
    st.integers(0, 420),
)
def test_any_history_gives_an_overview_whose_sums_are_its_rows(
    payments: list[tuple[int, int]], looked: int
) -> None:
    """For any payments on two plans, looked at on any day: each sum on her page is the sum of
    the installments it speaks of, the months add up to all she has to repay, each plan's rows
    are what its own bill still owes, and what is due now is the plans' sum."""
    units = MemoryUnits()
    context, first, _ = open_plan(units)
    later = servicing.Order(BORROWER, "ORD-2", "京东", Money.parse("3000"), "cash", 6, OPENED)
    second = present(servicing.checkout(context, later))["id"]
    for number, (offset, fen) in enumerate(sorted(payments)):
        loan = (first, second)[number % 2]
        owed = present(servicing.quote_payoff(context, loan, OPENED + timedelta(days=offset)))
        amount = min(Money(fen), Money.parse(owed["amount"]))
        if amount > 0:
            servicing.pay(context, loan, amount, servicing.Source(manual=True),
                          OPENED + timedelta(days=offset))  # fmt: skip
    day = OPENED + timedelta(days=looked)
    seen = present(servicing.overview(context, BORROWER, day))
    rows = seen["installments"]
    amounts = [Money.parse(row["amount"]) for row in rows]
    assert all(amount > 0 for amount in amounts)
    assert [row["due_date"] for row in rows] == sorted(row["due_date"] for row in rows)

    def owed_by(last: date | None) -> str:
        return str(Money(sum(amount for amount, row in zip(amounts, rows, strict=True)
                             if last is None or date.fromisoformat(row["due_date"]) <= last)))  # fmt: skip

    month_end = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    assert seen["to_repay"] == owed_by(None)
    assert seen["due_within_week"] == owed_by(day + timedelta(days=7))
    assert seen["due_this_month"] == owed_by(month_end)
    assert str(Money(sum(Money.parse(month["amount"]) for month in seen["months"]))) \
        == seen["to_repay"]  # fmt: skip
    for plan in seen["plans"]:
        own = [row["outstanding"] for row in plan["installments"] if row["outstanding"] != "0.00"]
        assert own == [row["amount"] for row in rows if row["loan_id"] == plan["id"]] or \
            plan["status"] == "cancelled"  # fmt: skip
    assert seen["amount_due"] == str(Money(sum(Money.parse(plan["amount_due"])
                                               for plan in seen["plans"])))  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(PrepayMode), st.integers(1, 12_000_00), st.integers(0, 300))
def test_a_prepayment_preview_is_what_the_prepayment_then_does(
    mode: PrepayMode, fen: int, offset: int
) -> None:
    """For any amount up to the payoff on any day of the plan, the preview of a mode says, to
    the fen, where the money goes and what the plan is after it: the prepayment booked in that
    mode then does exactly that; the preview itself books nothing."""
    units = MemoryUnits()
    context, loan_id, _ = open_plan(units)
    day = OPENED + timedelta(days=offset)
    payoff = Money.parse(present(servicing.quote_payoff(context, loan_id, day))["amount"])
    amount = Money(min(fen, payoff))
    before = units.world.loans[loan_id].version
    preview = present(servicing.preview_prepayment(context, loan_id, amount, day))
    assert units.world.loans[loan_id].version == before
    assert [outcome["mode"] for outcome in preview["outcomes"]] == [
        "reduce-installment", "shorten-term"
    ]  # fmt: skip
    said = next(outcome for outcome in preview["outcomes"] if outcome["mode"] == mode.value)
    taken = present(servicing.prepay(context, loan_id, amount, mode=mode,
                                     source=servicing.Source(manual=True), day=day))  # fmt: skip
    for part in ("principal", "interest", "fee", "penalty", "to_credit", "outstanding_principal"):
        assert said[part] == taken[part], part
    loan = present(servicing.show_loan(context, loan_id, day))
    left = [row for row in loan["installments"] if row["outstanding"] != "0.00"]
    assert said["installments_left"] == len(left)
    assert said["settles"] == (loan["status"] == "settled")
    if left:
        assert (said["next_due_date"], said["next_payment"]) == (left[0]["due_date"],
                                                                 left[0]["outstanding"])  # fmt: skip
        assert said["last_due_date"] == left[-1]["due_date"]
    assert said["to_repay"] == str(Money(sum(Money.parse(row["outstanding"]) for row in left)))
    saved = Money.parse(preview["to_repay"]) - amount - Money.parse(said["to_repay"])
    assert said["saved"] == str(Money(saved))


def test_a_preview_shows_both_modes_and_refuses_what_no_prepayment_could_be(
    units: MemoryUnits,
) -> None:
    """Prepaying 3,000.00 on the day of the second bill, the first still unpaid: both bills
    and the interest to date first (with the first's late fee and penalty), then 2,752.42 of
    principal; then a smaller installment for the same months, or the same 888.49 for fewer
    months, which saves more interest. Nothing is previewed beyond the payoff, nor for 0."""
    context, loan_id, _ = open_plan(units)
    day = date(2026, 3, 15)
    preview = present(servicing.preview_prepayment(context, loan_id, Money.parse("3000"), day))
    assert (preview["payoff"], preview["to_repay"]) == ("10247.58", "10717.32")
    reduce, shorten = preview["outcomes"]
    for outcome in (reduce, shorten):
        assert (outcome["principal"], outcome["interest"], outcome["fee"], outcome["penalty"]) \
            == ("2752.42", "192.12", "44.42", "11.04")  # fmt: skip
        assert outcome["outstanding_principal"] == "7247.58"
    assert (reduce["next_payment"], reduce["installments_left"], reduce["last_due_date"],
            reduce["saved"]) == ("765.21", 10, "2027-01-15", "65.15")  # fmt: skip
    assert (shorten["next_payment"], shorten["installments_left"], shorten["last_due_date"],
            shorten["saved"]) == ("888.49", 9, "2026-12-15", "118.19")  # fmt: skip
    payoff = present(servicing.quote_payoff(context, loan_id, day))["amount"]
    whole = present(servicing.preview_prepayment(context, loan_id, Money.parse(payoff), day))
    assert all(outcome["settles"] for outcome in whole["outcomes"])
    assert all(outcome["installments_left"] == 0 for outcome in whole["outcomes"])
    with pytest.raises(
        servicing.OverpaymentError, match=f"the most that can be prepaid is {payoff}"
    ):
        servicing.preview_prepayment(context, loan_id, Money.parse(payoff) + 1, day)
    with pytest.raises(RefusedError, match="must be more than 0"):
        servicing.preview_prepayment(context, loan_id, Money(0), day)


def test_a_plan_explained_is_its_own_numbers_as_the_fold_has_them(units: MemoryUnits) -> None:
    """The cost and APR as quoted, and the next installment as it would stand a month late with
    nothing paid: exactly what the plan shows on that day if she does not pay."""
    context, loan_id, _ = open_plan(units)
    plain = present(servicing.explain_plan(context, loan_id, date(2026, 2, 1)))
    assert (plain["principal"], plain["periods"], plain["payment"], plain["total_cost"]) == (
        "10000.00", 12, "888.49", "661.86")  # fmt: skip
    assert (plain["apr"], plain["fee_rate"], plain["yearly_fee_rate"]) == (
        "0.126826", "0.000000", "0.000000")  # fmt: skip
    late = plain["late"]
    assert (late["period"], late["due_date"], late["grace_ends"], late["days"]) == (
        1, "2026-02-15", "2026-02-18", 30)  # fmt: skip
    month_late = present(servicing.show_loan(context, loan_id, date(2026, 3, 17)))
    first = month_late["installments"][0]
    assert (late["owed"], late["late_fee"], late["penalty"]) == (
        first["outstanding"], first["late_fee"], first["penalty"])  # fmt: skip
    day_after = present(servicing.show_loan(context, loan_id, date(2026, 3, 18)))
    per_day = Money.parse(day_after["installments"][0]["penalty"]) - Money.parse(late["penalty"])
    assert late["penalty_per_day"] == str(Money(per_day))
    assert Money.parse(late["penalty_per_day"]) > 0
    assert Money.parse(late["owed"]) == Money.parse(late["payment"]) + Money.parse(
        late["late_fee"]) + Money.parse(late["penalty"])  # fmt: skip
    paid = present(servicing.prepay(context, loan_id, None, mode=PrepayMode.REDUCE_INSTALLMENT,
                                    source=servicing.Source(manual=True), day=date(2026, 2, 1)))  # fmt: skip
    assert paid["kind"] == "prepayment"
    assert present(servicing.explain_plan(context, loan_id, date(2026, 2, 1)))["late"] is None


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12_000_00), st.integers(0, 400))
def test_a_payment_preview_is_what_the_payment_then_books(fen: int, offset: int) -> None:
    """For any amount up to the payoff on any day: the preview says, to the fen, where the
    money goes and what the plan is after it, as the payment then booked says; the preview
    books nothing."""
    units = MemoryUnits()
    context, loan_id, _ = open_plan(units)
    day = OPENED + timedelta(days=offset)
    payoff = Money.parse(present(servicing.quote_payoff(context, loan_id, day))["amount"])
    amount, by_hand = Money(min(fen, payoff)), servicing.Source(manual=True)
    before = units.world.loans[loan_id].version
    said = present(servicing.preview_payment(context, loan_id, amount, by_hand, day))
    assert units.world.loans[loan_id].version == before
    taken = present(servicing.pay(context, loan_id, amount, by_hand, day))
    assert said["kind"] == taken["kind"]
    for part in ("principal", "interest", "fee", "penalty", "to_credit", "outstanding_principal"):
        assert said[part] == taken[part], part
    assert (said["status"], said["amount_due"]) == (taken["loan"]["status"],
                                                    taken["loan"]["amount_due"])  # fmt: skip


def test_a_waiver_preview_is_what_the_waiver_then_does_and_refuses_what_it_would(
    units: MemoryUnits,
) -> None:
    """What is owed before and after and the plan's standing after, as the waiver booked says;
    more than is owed, no reason or nothing are refused before anything is shown."""
    context, loan_id, _ = open_plan(units)
    day = date(2026, 3, 20)
    owed = present(servicing.show_loan(context, loan_id, day))["outstanding_penalty"]
    half = Money(Money.parse(owed) // 2)
    said = present(servicing.preview_waiver(context, loan_id, WaiverKind.PENALTY, half,
                                            reason="首次逾期", day=day))  # fmt: skip
    assert (said["owed_before"], said["owed_after"]) == (owed, str(Money(Money.parse(owed) - half)))
    done = present(servicing.waive(context, loan_id, WaiverKind.PENALTY, half, reason="首次逾期",
                                   day=day))  # fmt: skip
    assert said["effect"]["amount_due"] == done["loan"]["amount_due"]
    assert said["effect"]["status_after"] == done["loan"]["status"]
    with pytest.raises(RefusedError, match="of penalty is owed"):
        servicing.preview_waiver(context, loan_id, WaiverKind.PENALTY, Money.parse(owed),
                                 reason="x", day=day)  # fmt: skip
    with pytest.raises(RefusedError, match="needs a reason"):
        servicing.preview_waiver(context, loan_id, WaiverKind.PENALTY, Money(1), reason=" ",
                                 day=day)  # fmt: skip
