"""The loan as a fold: scenarios written as dated events and the state expected after them
(docs/domain.md: early repayment, grace and overdue, worked numbers, merchant refunds), and the
invariants any history keeps."""

from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

import pytest

from fenqi.domain.events import (
    Channel,
    DebitFailed,
    Event,
    Payment,
    Prepayment,
    PrepayMode,
    Refund,
    Reversal,
    Waiver,
    WaiverKind,
    WriteOff,
)
from fenqi.domain.ledger import Account, balances
from fenqi.domain.loan import (
    CHECKPOINT_VERSION,
    Checkpoint,
    InstallmentStatus,
    LoanState,
    LoanStatus,
    bucket,
    payoff_quote,
    replay,
    replay_to_checkpoint,
    resumable,
)
from fenqi.domain.money import Money, half_up
from fenqi.domain.products import Component, Product, parse_catalog
from fenqi.domain.schedule import Terms
from tests.plans import plan
from tests.worked import WORKED, Worked

CASH = parse_catalog(
    '[[product]]\ncode = "cash"\nmethod = "equal-installment"\nperiods = [12]\nannual_rate = "12%"'
)["cash"]
MALL = parse_catalog(
    '[[product]]\ncode = "mall"\nmethod = "flat-fee"\nperiods = [12]\nfee_rate = "0.6%"\n'
    'penalty = { mode = "daily-rate", daily_rate = "0.05%" }'
)["mall"]
LOAN = plan("equal-installment", "10000", 12, rate="12%")  # 888.49 × 11, last 888.47
PHONE = plan("flat-fee", "12000", 12, fee="0.6%")  # 1,072.00 a month


def yuan(text: str) -> Money:
    return Money.parse(text)


def day(month: int, dom: int, year: int = 2026) -> date:
    return date(year, month, dom)


def pay(seq: int, on: date, amount: str, channel: Channel = Channel.MANUAL) -> Payment:
    return Payment(seq, on, yuan(amount), channel)


def on_time(count: int, amount: str = "888.49", start: int = 1) -> list[Event]:
    """``count`` payments of ``amount``, each on its due date (the 15th)."""
    return [pay(start + k, day(2, 15) + _months(k), amount) for k in range(count)]


def _months(k: int) -> timedelta:
    due = date(2026 + (1 + k) // 12, (1 + k) % 12 + 1, 15)
    return due - day(2, 15)


def statuses(state: LoanState) -> list[str]:
    return [row.status.value for row in state.installments]


def test_on_time_payments_settle_the_plan_with_no_penalty() -> None:
    events = [*on_time(11), pay(12, day(1, 15, 2027), "888.47")]
    state = replay(LOAN, CASH, events, day(2, 1, 2027))
    assert state.status is LoanStatus.SETTLED
    assert statuses(state) == ["paid"] * 12
    assert state.outstanding_principal == 0
    assert state.outstanding_penalty == 0
    assert state.credit_balance == 0


def test_before_and_on_the_due_date_and_inside_grace() -> None:
    assert statuses(replay(LOAN, CASH, [], day(2, 14)))[:2] == ["future", "future"]
    state = replay(LOAN, CASH, [], day(2, 15))
    assert statuses(state)[:2] == ["due", "future"]
    assert (state.dpd, state.bucket, state.status) == (0, "M0", LoanStatus.ACTIVE)
    in_grace = replay(LOAN, CASH, [], day(2, 18))  # three grace days
    assert (in_grace.dpd, in_grace.outstanding_penalty) == (0, 0)
    assert in_grace.amount_due == yuan("888.49")


def test_once_grace_has_passed_dpd_and_penalty_count_from_the_day_after_the_due_date() -> None:
    state = replay(LOAN, CASH, [], day(2, 25))
    first = state.installments[0]
    assert (first.status, first.dpd) == (InstallmentStatus.OVERDUE, 10)
    # docs/domain.md#penalty-interest: 788.49 overdue principal × 12% × 1.5 / 360 × 10 days = 3.94
    assert first.penalty == yuan("3.94")
    assert (state.status, state.dpd, state.bucket) == (LoanStatus.OVERDUE, 10, "M1")
    assert state.outstanding_interest == yuan("100.00")


def test_a_daily_rate_penalty_runs_on_the_overdue_amount() -> None:
    loan = plan("equal-installment", "10000", 12, rate="12%")
    daily = parse_catalog(
        '[[product]]\ncode = "d"\nperiods = [12]\nannual_rate = "12%"\n'
        'penalty = { mode = "daily-rate", daily_rate = "0.05%" }'
    )["d"]
    # docs/domain.md#penalty-interest: 0.05% a day on 888.49 for 10 days = 4.44
    assert replay(loan, daily, [], day(2, 25)).installments[0].penalty == yuan("4.44")


def test_paid_in_full_inside_grace_counts_as_on_time() -> None:
    state = replay(LOAN, CASH, [pay(1, day(2, 18), "888.49")], day(3, 1))
    assert state.installments[0].status is InstallmentStatus.PAID
    assert state.installments[0].penalty == 0
    assert state.dpd == 0


def test_a_partial_payment_pays_interest_before_principal_and_the_rest_stays_overdue() -> None:
    state = replay(LOAN, CASH, [pay(1, day(2, 15), "500")], day(2, 25))
    first = state.installments[0]
    assert (first.paid_interest, first.paid_principal) == (yuan("100.00"), yuan("400.00"))
    assert first.status is InstallmentStatus.OVERDUE
    # the penalty runs on the 388.49 of principal left: 388.49 × 0.18 / 360 × 10 = 1.94
    assert first.penalty == yuan("1.94")
    allocation = state.allocations[1]
    assert allocation.total(Component.INTEREST) == yuan("100.00")
    assert allocation.total(Component.PRINCIPAL) == yuan("400.00")


def test_a_late_payment_pays_the_penalty_first() -> None:
    state = replay(LOAN, CASH, [pay(1, day(2, 25), "900.00")], day(2, 25))
    first = state.installments[0]
    assert first.paid_penalty == yuan("3.94")
    assert first.status is InstallmentStatus.PAID
    # 900.00 − 3.94 − 888.49 = 7.57 goes ahead to the next installment's interest
    assert state.installments[1].paid_interest == yuan("7.57")


def test_an_overpayment_pays_ahead_and_beyond_the_plan_becomes_credit() -> None:
    ahead = replay(LOAN, CASH, [pay(1, day(2, 15), "2000")], day(2, 15))
    assert statuses(ahead)[:3] == ["paid", "paid", "future"]
    assert ahead.installments[2].paid == yuan("223.02")
    everything = replay(LOAN, CASH, [pay(1, day(2, 15), "20000")], day(2, 15))
    assert everything.status is LoanStatus.SETTLED
    assert everything.credit_balance == yuan("9338.14")  # 20,000 − 10,661.86


def test_credit_left_by_a_product_without_advance_rules_pays_the_next_bill_when_due() -> None:
    no_ahead = parse_catalog(
        '[[product]]\ncode = "n"\nperiods = [12]\nannual_rate = "12%"\n'
        'allocation = ["past-due:penalty", "past-due:interest", "past-due:principal", '
        '"due:interest", "due:principal"]'
    )["n"]
    early = replay(LOAN, no_ahead, [pay(1, day(2, 15), "1000")], day(2, 15))
    assert early.credit_balance == yuan("111.51")
    later = replay(LOAN, no_ahead, [pay(1, day(2, 15), "1000")], day(3, 15))
    assert later.credit_balance == 0
    assert later.installments[1].paid == yuan("111.51")


def test_a_backdated_payment_replays_history_as_if_on_time() -> None:
    late = [pay(1, day(3, 1), "888.49")]
    assert replay(LOAN, CASH, late, day(3, 1)).installments[0].penalty > 0
    backdated = [*late, pay(2, day(2, 15), "888.49")]  # recorded later, effective earlier
    state = replay(LOAN, CASH, backdated, day(3, 1))
    assert state.installments[0].penalty == 0
    assert state.installments[0].status is InstallmentStatus.PAID
    assert state.installments[1].paid == yuan("888.49")  # the late one paid ahead


def test_a_reversed_payment_never_happened_from_the_reversal_on() -> None:
    events = [pay(1, day(2, 15), "888.49"), Reversal(2, day(3, 1), 1, "duplicate debit")]
    before = replay(LOAN, CASH, events, day(2, 28))
    after = replay(LOAN, CASH, events, day(3, 1))
    assert before.installments[0].status is InstallmentStatus.PAID
    assert after.installments[0].status is InstallmentStatus.OVERDUE
    assert after.installments[0].penalty == yuan("5.52")  # 14 days on 788.49
    assert after.cash_in == {}


def test_full_payoff_15_days_into_period_4_matches_the_worked_example() -> None:
    events = on_time(3)
    quote = payoff_quote(LOAN, CASH, events, day(4, 30))
    assert quote.breakdown.principal == yuan("7610.80")
    assert quote.breakdown.interest == yuan("38.05")
    assert quote.amount == yuan("7648.85")
    assert quote.valid_through == day(4, 30)  # interest accrues daily
    paid_off = [*events, Prepayment(4, day(4, 30), quote.amount, Channel.ALIPAY,
                                    PrepayMode.REDUCE_INSTALLMENT, full=True)]  # fmt: skip
    state = replay(LOAN, CASH, paid_off, day(4, 30))
    assert state.status is LoanStatus.SETTLED
    assert state.credit_balance == 0
    assert len(state.installments) == 4
    assert state.payoffs[4].amount == quote.amount


def test_a_partial_prepayment_reducing_the_installment() -> None:
    events = [*on_time(3), Prepayment(4, day(4, 30), yuan("3000"), Channel.ALIPAY,
                                      PrepayMode.REDUCE_INSTALLMENT, full=False)]  # fmt: skip
    state = replay(LOAN, CASH, events, day(4, 30))
    rows = state.installments
    assert len(rows) == 12
    assert rows[3].paid_interest == yuan("38.05")  # interest to the day first
    assert rows[3].paid_principal == yuan("2961.95")  # the rest repays principal
    assert state.outstanding_principal == yuan("4648.85")
    assert rows[5].payment == rows[6].payment < yuan("888.49")  # same periods, smaller payments
    assert sum(row.principal for row in rows) == yuan("10000")


def test_a_partial_prepayment_shortening_the_term() -> None:
    events = [*on_time(3), Prepayment(4, day(4, 30), yuan("3000"), Channel.ALIPAY,
                                      PrepayMode.SHORTEN_TERM, full=False)]  # fmt: skip
    rows = replay(LOAN, CASH, events, day(4, 30)).installments
    assert len(rows) == 9  # same payment, fewer periods
    assert [row.payment for row in rows[4:8]] == [yuan("888.49")] * 4
    assert rows[-1].payment < yuan("888.49")
    assert sum(row.principal for row in rows) == yuan("10000")


def prepaid_on_the_third_due_date(mode: PrepayMode) -> list[Event]:
    """Installments 1-3 paid on their due dates; on 15 April, after paying installment 3,
    3,000.00 prepaid."""
    return [*on_time(3), Prepayment(4, day(4, 15), yuan("3000"), Channel.MANUAL, mode, False)]


def test_a_prepayment_on_a_due_date_charges_no_interest_and_leaves_that_installment_paid() -> None:
    events = prepaid_on_the_third_due_date(PrepayMode.REDUCE_INSTALLMENT)
    state = replay(LOAN, CASH, events, day(4, 15))
    rows = state.installments
    assert state.allocations[4].total(Component.INTEREST) == 0  # no day of period 4 has run
    assert state.allocations[4].total(Component.PRINCIPAL) == yuan("3000")
    assert state.outstanding_principal == yuan("4610.80")
    assert (rows[2].status, rows[2].paid) == (InstallmentStatus.PAID, yuan("888.49"))
    assert rows[3].outstanding == yuan("538.27")
    assert [row.payment for row in rows[4:11]] == [yuan("538.27")] * 7
    assert rows[11].payment == yuan("538.25")  # the last absorbs the rounding
    assert sum(row.principal for row in rows) == yuan("10000")
    paying_on = [pay(5 + k, row.due_date, str(row.outstanding)) for k, row in enumerate(rows[3:])]
    for later in (day(5, 20), day(9, 1), day(2, 1, 2027)):
        assert replay(LOAN, CASH, [*events, *paying_on], later).dpd == 0


def test_a_prepayment_on_a_due_date_shortening_the_term_keeps_the_payment() -> None:
    events = prepaid_on_the_third_due_date(PrepayMode.SHORTEN_TERM)
    rows = replay(LOAN, CASH, events, day(4, 15)).installments
    assert rows[2].status is InstallmentStatus.PAID
    assert rows[3].outstanding == yuan("888.49")
    assert [row.payment for row in rows[4:8]] == [yuan("888.49")] * 4
    assert (rows[-1].due_date, rows[-1].payment) == (day(10, 15), yuan("316.94"))


@pytest.mark.parametrize("mode", list(PrepayMode))
def test_a_prepayment_after_paying_the_installment_ahead_leaves_it_paid(mode: PrepayMode) -> None:
    """Installment 4 paid on 20 April, ahead of its due date; 3,000.00 prepaid on 30 April:
    installment 4 stays paid (its period's interest is paid), and the principal comes off
    after 15 May, as if prepaid on that due date."""
    ahead = [*on_time(3), pay(4, day(4, 20), "888.49")]
    events = [*ahead, Prepayment(5, day(4, 30), yuan("3000"), Channel.MANUAL, mode, False)]
    state = replay(LOAN, CASH, events, day(4, 30))
    rows = state.installments
    assert (rows[3].status, rows[3].paid) == (InstallmentStatus.PAID, yuan("888.49"))
    assert state.allocations[5].total(Component.PRINCIPAL) == yuan("3000")
    assert state.outstanding_principal == yuan("3798.42")  # 7,610.80 − 812.38 − 3,000.00
    level = yuan("496.42") if mode is PrepayMode.REDUCE_INSTALLMENT else yuan("888.49")
    assert rows[4].outstanding == rows[5].payment == level
    assert replay(LOAN, CASH, events, day(5, 25)).dpd == 0


def test_a_payoff_on_a_due_date_is_the_principal_left_when_that_installment_is_paid() -> None:
    quote = payoff_quote(LOAN, CASH, on_time(3), day(4, 15))
    assert (quote.amount, quote.breakdown.interest) == (yuan("7610.80"), 0)
    paid_off = [*on_time(3), Prepayment(4, day(4, 15), quote.amount, Channel.MANUAL,
                                        PrepayMode.REDUCE_INSTALLMENT, True)]  # fmt: skip
    state = replay(LOAN, CASH, paid_off, day(4, 15))
    assert (state.status, state.credit_balance) == (LoanStatus.SETTLED, 0)
    assert state.installments[2].paid == yuan("888.49")
    assert state.payoffs[4] == quote.breakdown


def test_a_payoff_on_a_due_date_pays_that_days_installment_first_then_no_more_interest() -> None:
    quote = payoff_quote(LOAN, CASH, on_time(2), day(4, 15)).breakdown
    assert quote.amount == yuan("8499.29")  # installment 3's 888.49, then 7,610.80 of principal
    assert (quote.principal, quote.interest) == (yuan("8415.14"), yuan("84.15"))  # its interest
    paid_off = [*on_time(2), Prepayment(3, day(4, 15), quote.amount, Channel.MANUAL,
                                        PrepayMode.REDUCE_INSTALLMENT, True)]  # fmt: skip
    state = replay(LOAN, CASH, paid_off, day(4, 15))
    assert (state.status, state.credit_balance) == (LoanStatus.SETTLED, 0)
    assert state.installments[2].paid == yuan("888.49")
    assert state.payoffs[3] == quote


@pytest.mark.parametrize("worked", [w for w in WORKED if w.method != "bullet"],
                         ids=lambda worked: worked.name)  # fmt: skip
def test_every_method_prepaid_on_a_due_date_owes_no_interest_for_the_day(worked: Worked) -> None:
    terms = worked.terms()
    product = Product(code="p", name="p", method=terms.method, periods=(terms.periods,))
    paid = [pay(k + 1, day(2, 15) + _months(k), amount)
            for k, amount in enumerate(worked.payments[:3])]  # fmt: skip
    for mode in PrepayMode:
        events = [*paid, Prepayment(4, day(4, 15), yuan("1000"), Channel.MANUAL, mode, False)]
        state = replay(terms, product, events, day(4, 15))
        assert state.allocations[4].total(Component.PRINCIPAL) == yuan("1000"), mode
        assert state.installments[2].status is InstallmentStatus.PAID
        later = replay(terms, product, events, day(4, 30))
        assert (later.dpd, later.status) == (0, LoanStatus.ACTIVE)


def test_a_bullet_loan_paid_off_on_its_due_date_owes_its_interest_and_no_more() -> None:
    terms = next(w for w in WORKED if w.method == "bullet").terms()
    product = Product(code="b", name="b", method=terms.method, periods=(terms.periods,))
    quote = payoff_quote(terms, product, [], day(4, 15)).breakdown
    assert (quote.principal, quote.interest) == (yuan("10000"), yuan("300"))


def test_an_early_repayment_fee_and_period_interest_by_policy() -> None:
    strict = parse_catalog(
        '[[product]]\ncode = "s"\nperiods = [12]\nannual_rate = "12%"\n'
        'prepayment_interest = "period"\nprepayment_fee_rate = "1%"'
    )["s"]
    quote = payoff_quote(LOAN, strict, on_time(3), day(4, 30))
    assert quote.breakdown.interest == yuan("76.11")  # the whole of period 4's interest
    assert quote.breakdown.prepayment_fee == yuan("76.11")  # 1% of 7,610.80
    assert quote.amount == yuan("7763.02")
    assert quote.valid_through == day(5, 14)  # the same through the day before period 4 ends
    # On 15 May installment 4 falls due and is paid first (its whole interest with it); no day
    # of period 5 has run, so no more interest, and the fee is on the 6,798.42 repaid early.
    # On a due date with its installment paid, no day of the next period has run: no interest.
    on_april_15 = payoff_quote(LOAN, strict, on_time(3), day(4, 15)).breakdown
    assert (on_april_15.interest, on_april_15.prepayment_fee) == (0, yuan("76.11"))
    on_the_due_date = payoff_quote(LOAN, strict, on_time(3), day(5, 15)).breakdown
    assert (on_the_due_date.interest, on_the_due_date.prepayment_fee) == (yuan("76.11"),
                                                                          yuan("67.98"))  # fmt: skip
    assert on_the_due_date.principal == yuan("7610.80")


def test_paying_off_a_fee_plan_waives_unbilled_fees_or_charges_them_by_policy() -> None:
    events = [pay(k, day(1 + k, 15), "1072") for k in range(1, 4)]
    waived = payoff_quote(PHONE, MALL, events, day(4, 30))
    assert (waived.breakdown.principal, waived.breakdown.fee) == (yuan("9000"), 0)
    charging = parse_catalog(
        '[[product]]\ncode = "c"\nmethod = "flat-fee"\nperiods = [12]\nfee_rate = "0.6%"\n'
        'unbilled_fees_on_payoff = "charge"'
    )["c"]
    charged = payoff_quote(PHONE, charging, events, day(4, 30))
    assert charged.breakdown.fee == yuan("648.00")  # 9 periods × 72.00


def test_a_partial_refund_reprices_the_plan_and_returns_what_was_overpaid() -> None:
    events: list[Event] = [pay(k, day(1 + k, 15), "1072", Channel.WECHAT) for k in range(1, 4)]
    events.append(Refund(4, day(5, 1), yuan("6000"), Channel.WECHAT))
    state = replay(PHONE, MALL, events, day(5, 1))
    assert state.installments[3].payment == yuan("536.00")  # 500 principal + 36 fee
    assert state.cash_out == {Channel.WECHAT: yuan("1608.00")}  # 3 × (1,072 − 536)
    assert state.outstanding_principal == yuan("4500")
    assert state.merchant_refunds == yuan("6000")


def test_a_full_refund_cancels_the_plan_and_returns_everything_paid() -> None:
    events: list[Event] = [pay(k, day(1 + k, 15), "1072", Channel.WECHAT) for k in range(1, 4)]
    events.append(Refund(4, day(5, 1), yuan("12000"), Channel.WECHAT))
    state = replay(PHONE, MALL, events, day(6, 1))
    assert state.status is LoanStatus.CANCELLED
    assert state.cash_out == {Channel.WECHAT: yuan("3216.00")}
    assert state.outstanding_principal == state.outstanding_fee == state.amount_due == 0


def test_a_waiver_forgives_penalty_oldest_first() -> None:
    events = [Waiver(1, day(2, 25), WaiverKind.PENALTY, yuan("3.94"), "first time late")]
    state = replay(LOAN, CASH, events, day(2, 25))
    assert state.installments[0].waived_penalty == yuan("3.94")
    assert state.outstanding_penalty == 0


@pytest.mark.parametrize(
    ("dpd", "name"),
    [(0, "M0"), (1, "M1"), (30, "M1"), (31, "M2"), (180, "M6"), (181, "M7"), (400, "M7")],
)
def test_buckets(dpd: int, name: str) -> None:
    assert bucket(dpd) == name


def test_events_before_as_of_only() -> None:
    state = replay(LOAN, CASH, on_time(3), day(3, 20))
    assert [row.status for row in state.installments[:3]] == [InstallmentStatus.PAID] * 2 + [
        InstallmentStatus.FUTURE
    ]


def principal_of(terms: Terms, policy: Product, events: list[Event], on: date) -> Money:
    return replay(terms, policy, events, on).outstanding_principal


def test_a_refund_after_payoff_returns_only_the_refunded_principal() -> None:
    events: list[Event] = [*on_time(3), Prepayment(4, day(4, 30), yuan("7648.85"), Channel.ALIPAY,
                                                   PrepayMode.REDUCE_INSTALLMENT, full=True)]  # fmt: skip
    events.append(Refund(5, day(5, 2), yuan("100"), Channel.ALIPAY))
    state = replay(LOAN, CASH, events, day(5, 2))
    assert state.status is LoanStatus.SETTLED
    assert state.outstanding_principal == 0
    assert state.cash_out == {Channel.ALIPAY: yuan("100.00")}


def test_a_late_fee_is_charged_once_when_grace_ends_unpaid() -> None:
    fee = parse_catalog(
        '[[product]]\ncode = "f"\nperiods = [12]\nannual_rate = "12%"\n'
        'late_fee = { rate = "5%", floor = "10", cap = "100" }'
    )["f"]
    in_grace = replay(LOAN, fee, [], day(2, 18))
    assert in_grace.installments[0].late_fee == 0
    late = replay(LOAN, fee, [], day(2, 19))  # the day after the three grace days
    assert late.installments[0].late_fee == yuan("44.42")  # 5% of 888.49 = 44.4245
    assert late.outstanding_fee == yuan("44.42")
    assert replay(LOAN, fee, [], day(3, 30)).installments[0].late_fee == yuan("44.42")  # once
    on_time_ = replay(LOAN, fee, [pay(1, day(2, 18), "888.49")], day(3, 1))
    assert on_time_.installments[0].late_fee == 0


def test_penalty_interest_stays_under_the_cap() -> None:
    dear = plan("equal-installment", "10000", 12, rate="20%")  # ×1.5 = 30% a year on overdue
    uncapped = replay(dear, CASH, [], day(2, 25)).installments[0].penalty
    capped = replay(dear, CASH, [], day(2, 25), cap=Fraction(24, 100)).installments[0].penalty
    assert capped < uncapped
    first = replay(dear, CASH, [], day(2, 25)).installments[0]
    assert capped == half_up(first.principal * 24 * 10, 100 * 360)  # 24% / 360 × 10 days


WRITTEN_OFF = WriteOff(1, day(8, 14), "180 days past due")  # recorded by the batch that day


def test_a_replay_never_writes_a_loan_off_by_itself() -> None:
    for on in (day(8, 14), day(12, 31), day(6, 30, 2027)):  # 180 days past due, and long after
        state = replay(LOAN, CASH, [], on)
        assert (state.status, state.write_off) == (LoanStatus.OVERDUE, None)
        assert Account.WRITE_OFF_EXPENSE not in balances(LOAN, state)
    assert replay(LOAN, CASH, [], day(12, 31)).installments[0].penalty > yuan("80")  # accruing


def test_a_recorded_write_off_takes_the_loan_off_the_books_and_later_money_is_a_recovery() -> None:
    before = replay(LOAN, CASH, [WRITTEN_OFF], day(8, 13))
    assert before.status is LoanStatus.OVERDUE
    written = replay(LOAN, CASH, [WRITTEN_OFF], day(8, 14))
    assert written.status is LoanStatus.WRITTEN_OFF
    assert written.write_off is not None
    assert written.write_off.day == day(8, 14)
    books = balances(LOAN, written)
    assert Account.PRINCIPAL_RECEIVABLE not in books
    assert books[Account.WRITE_OFF_EXPENSE] > yuan("10000")  # principal, interest, penalty
    later = replay(LOAN, CASH, [WRITTEN_OFF, pay(2, day(9, 1), "1000")], day(9, 1))
    assert later.recovered == yuan("1000")
    assert balances(LOAN, later)[Account.RECOVERIES] == -yuan("1000")
    assert later.installments[0].penalty == written.installments[0].penalty  # no more accrual


def test_a_write_off_of_a_loan_that_owes_nothing_by_then_changes_nothing() -> None:
    """A payment recorded later but effective before the write-off settled the plan first."""
    paid_off = Prepayment(2, day(8, 1), yuan("20000"), Channel.MANUAL,
                          PrepayMode.REDUCE_INSTALLMENT, True)  # fmt: skip
    state = replay(LOAN, CASH, [WRITTEN_OFF, paid_off], day(9, 1))
    assert (state.status, state.write_off) == (LoanStatus.SETTLED, None)
    assert Account.WRITE_OFF_EXPENSE not in balances(LOAN, state)


def test_the_fold_refuses_an_event_it_does_not_know() -> None:
    @dataclass(frozen=True)
    class Unknown:
        seq: int
        effective: date

    with pytest.raises(AssertionError):
        replay(LOAN, CASH, [Unknown(1, day(3, 1))], day(3, 2))  # type: ignore[list-item]


def test_paying_a_written_off_plan_off_settles_it_as_it_stands() -> None:
    recovered: list[Event] = [WRITTEN_OFF, pay(2, day(9, 1), "1000")]
    state = replay(LOAN, CASH, recovered, day(10, 15))
    came_due = state.installments[:9]  # the ninth is due that very day
    still_ahead = state.installments[9:]
    quote = payoff_quote(LOAN, CASH, recovered, day(10, 15)).breakdown
    assert quote.amount == sum(row.outstanding for row in came_due) + sum(
        row.principal for row in still_ahead
    )
    assert quote.interest == sum(row.interest - row.paid_interest for row in came_due)
    assert quote.prepayment_fee == 0
    paid_off = [*recovered, Prepayment(3, day(10, 15), quote.amount, Channel.ALIPAY,
                                       PrepayMode.REDUCE_INSTALLMENT, True)]  # fmt: skip
    settled = replay(LOAN, CASH, paid_off, day(12, 31))
    assert settled.status is LoanStatus.SETTLED
    assert settled.recovered == yuan("1000") + quote.amount
    assert settled.credit_balance == 0
    books = balances(LOAN, settled)
    assert books[Account.RECOVERIES] == -settled.recovered
    assert sum(books.values()) == 0


def test_a_failed_debit_is_recorded_and_moves_nothing() -> None:
    failed = [DebitFailed(1, day(2, 15), day(2, 15), 1, "insufficient funds")]
    state = replay(LOAN, CASH, failed, day(2, 15))
    assert state.failed_debits == {day(2, 15): 1}
    assert state.cash_in == {}


# -- checkpoints -------------------------------------------------------------------------------


def test_a_replay_resumed_from_a_checkpoint_matches_one_from_the_start() -> None:
    """Two installments paid, then the third missed: the batch's checkpoint on 10 April, and
    the loan replayed from it to 1 May with the payment of 20 April."""
    paid = on_time(2)
    state, kept = replay_to_checkpoint(LOAN, CASH, paid, day(4, 10))
    assert kept is not None
    assert (kept.day, kept.seq) == (day(4, 10), 2)
    assert state == replay(LOAN, CASH, paid, day(4, 10))
    later = [pay(3, day(4, 20), "900.00")]
    resumed, _ = replay_to_checkpoint(LOAN, CASH, later, day(5, 1), since=kept)
    whole = replay(LOAN, CASH, [*paid, *later], day(5, 1))
    assert resumed.installments == whole.installments
    assert resumed.allocations == {3: whole.allocations[3]}  # the history before is not kept


def test_a_replay_does_not_resume_where_an_event_reaches_back_before_the_checkpoint() -> None:
    _, kept = replay_to_checkpoint(LOAN, CASH, on_time(2), day(4, 10))
    assert kept is not None
    back_dated = pay(3, day(4, 9), "100.00")
    reversal = Reversal(3, day(4, 11), 2, "taken twice")
    assert not resumable(kept, [back_dated], day(5, 1))
    assert not resumable(kept, [reversal], day(5, 1))
    assert not resumable(kept, [], day(4, 9))  # a day before the checkpoint
    assert resumable(kept, [pay(3, day(4, 10), "100.00")], day(4, 10))
    with pytest.raises(ValueError, match="cannot resume"):
        replay_to_checkpoint(LOAN, CASH, [back_dated], day(5, 1), since=kept)


def test_a_checkpoint_written_by_another_fold_version_is_ignored() -> None:
    _, kept = replay_to_checkpoint(LOAN, CASH, on_time(1), day(3, 1))
    assert kept is not None
    assert Checkpoint.from_document(kept.document()) == kept
    assert Checkpoint.from_document({**kept.document(), "version": CHECKPOINT_VERSION + 1}) is None
    assert Checkpoint.from_document(None) is None


def test_no_checkpoint_is_kept_for_a_written_off_loan_or_past_a_later_event() -> None:
    written_off = replay_to_checkpoint(LOAN, CASH, [WRITTEN_OFF], day(12, 31))
    assert written_off[0].status is LoanStatus.WRITTEN_OFF
    assert written_off[1] is None
    ahead = replay_to_checkpoint(LOAN, CASH, [pay(1, day(3, 15), "888.49")], day(3, 1))
    assert ahead[1] is None  # the payment of 15 March is not in the fold of 1 March
