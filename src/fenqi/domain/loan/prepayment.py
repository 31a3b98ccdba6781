"""Early repayment: a payoff settles the plan; a partial prepayment repays principal early and
the rest of the plan is re-amortised (by ``schedule.reamortise``, per repayment method).

What has fallen due is paid first. A prepayment is worked out on the installments themselves, so
what it did is recorded as the difference it made to what was paid on each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from fenqi.domain.calendar import actual_days
from fenqi.domain.events import Payment, Prepayment, PrepayMode
from fenqi.domain.loan.accrual import owed
from fenqi.domain.loan.allocation import allocate, apply_credit, on_payment, take
from fenqi.domain.loan.state import NO_PAYOFF, Allocation, Applied, PayoffBreakdown
from fenqi.domain.loan.working import Bill, WorkingLoan
from fenqi.domain.money import Money, cut, half_up_fen
from fenqi.domain.products import Component, PrepaymentInterest, UnbilledFees
from fenqi.domain.schedule import DayCount, Remaining, reamortise

_Paid = dict[tuple[int, Component], int]


def on_prepayment(loan: WorkingLoan, event: Prepayment) -> None:
    """Pays what has fallen due, then settles the plan or prepays part of its principal."""
    if loan.write_off is not None:
        _recovery(loan, event)
        return
    loan.first_open = 0  # installments are rebuilt: look at all of them again
    before, credit_before = _receive(loan, event), loan.credit
    day = event.effective
    # What has fallen due by the day (on a due date, that day's installment too) is paid
    # first; what is prepaid starts the period the day's interest belongs to, so a
    # prepayment on a due date leaves the installment due that day paid and charges no
    # interest for a period of which no day has run.
    current = loan.accruing(day)
    past_due = _past_due(loan, day, current)
    pool = allocate(loan, day, loan.credit + event.amount, loan.past_due_rules, current)
    loan.credit = 0
    # Paid in full when money is left, or when it was just enough (nothing past due left).
    settled_past_due = pool > 0 or not any(_past_due(loan, day, current).values())
    if not settled_past_due or current == len(loan.bills):
        loan.credit = allocate(loan, day, pool, loan.policy.allocation)
        if settled_past_due:
            loan.payoffs[event.seq] = _breakdown(NO_PAYOFF, past_due, credit_before)
    else:
        needs = _payoff_needs(loan, day, current)
        ahead = sum(bill.paid_principal + bill.paid_interest + bill.paid_fee
                    for bill in loan.bills[current:])  # fmt: skip
        if pool + ahead >= needs.amount:  # a payoff: what was paid ahead goes towards it
            _pay_off(loan, event.seq, current, pool, needs=needs, past_due=past_due,
                     credit_before=credit_before)  # fmt: skip
        else:
            _prepay_part(loan, day, current, pool, event.mode)
        loan.mark_cleared(day)
        apply_credit(loan, day)
    _record(loan, event, before, credit_before)


def _pay_off(loan: WorkingLoan, seq: int, current: int, pool: int, *, needs: PayoffBreakdown,
             past_due: Mapping[Component, int], credit_before: int) -> None:  # fmt: skip
    """Settles the plan from ``current`` on; what was paid ahead on it is taken back first."""
    taken_back = sum(bill.unapply() for bill in loan.bills[current:])
    _settle(loan, current, needs)
    loan.credit = pool + taken_back - needs.amount
    loan.payoffs[seq] = _breakdown(needs, past_due, credit_before + taken_back)


def _prepay_part(loan: WorkingLoan, day: date, current: int, pool: int, mode: PrepayMode) -> None:
    """Less than the payoff: installments paid in full ahead stay paid (she paid them; a
    prepayment never reopens one), and the principal prepaid comes off after them, as on
    their due date."""
    start = loan.first_owing(current)
    pool += sum(bill.unapply() for bill in loan.bills[start:])
    if start == len(loan.bills):
        loan.credit = pool
    else:
        needs = _payoff_needs(loan, day, start)
        loan.credit = _partial(loan, day, start, pool, mode=mode, needs=needs)


def _receive(loan: WorkingLoan, event: Prepayment) -> _Paid:
    # A prepayment rebuilds installments, so what it took is the difference it made.
    loan.receive(event.channel, event.amount)
    return loan.paid_snapshot()


def _record(loan: WorkingLoan, event: Prepayment, before: _Paid, credit_before: int) -> None:
    after = loan.paid_snapshot()
    # Installments a payoff or a shorter term removed count too: what was paid ahead on
    # them and taken back is part of what the prepayment did, so the parts sum to it.
    changes = {key: after.get(key, 0) - before.get(key, 0) for key in [*before, *after]}
    applied = tuple(Applied(period, part, Money(change))
                    for (period, part), change in changes.items() if change)  # fmt: skip
    loan.allocations[event.seq] = Allocation(applied, Money(loan.credit - credit_before))


def _past_due(loan: WorkingLoan, day: date, end: int) -> dict[Component, int]:
    return {
        part: sum(max(owed(loan, bill, part, day), 0) for bill in loan.bills[:end])
        for part in Component
    }


def _recovery(loan: WorkingLoan, event: Prepayment) -> None:
    """In collection money pays the debt as it stands. Enough for all of it settles the
    plan: what has come due, and the principal not yet due without its interest or fees
    (nothing accrues on a written-off loan, as in a payoff nothing accrues past the day)."""
    day = event.effective
    due = loan.accruing(day)
    owing = _past_due(loan, day, due)
    ahead = sum(bill.unpaid(Component.PRINCIPAL) for bill in loan.bills[due:])
    if loan.credit + event.amount < sum(owing.values()) + ahead:
        on_payment(loan, Payment(event.seq, day, event.amount, event.channel))
        return
    before, credit_before = _receive(loan, event), loan.credit
    pool = loan.credit + event.amount
    for index, bill in enumerate(loan.bills):
        if index >= due:
            bill.interest, bill.fee = bill.paid_interest, bill.paid_fee + bill.waived_fee
        for part in Component:
            pool = take(loan, bill, part, day, pool)
    loan.credit = pool
    settles = NO_PAYOFF._replace(principal=Money(ahead))
    loan.payoffs[event.seq] = _breakdown(settles, owing, credit_before)
    _record(loan, event, before, credit_before)


def _whole_period(loan: WorkingLoan, day: date, current: int) -> bool:
    """Whether a prepayment on ``day`` pays the whole current period's interest: when the
    product says so, once a day of the period has run (on its first day, none has)."""
    by_period = loan.policy.prepayment_interest is PrepaymentInterest.PERIOD
    return by_period and day > loan.period_start(current)


def _interest_to(loan: WorkingLoan, day: date, current: int, balance: int) -> int:
    """Interest for the current period up to ``day``, or the whole period, by policy."""
    if _whole_period(loan, day, current):
        return loan.bills[current].interest
    terms = loan.terms
    rate_n, rate_d = terms.annual_rate.as_integer_ratio()
    basis = 365 if terms.day_count is DayCount.ACT_365 else 360
    days = max(actual_days(loan.period_start(current), day), 0)  # none before it starts
    return half_up_fen(balance * rate_n * days, rate_d * basis)


def _payoff_needs(loan: WorkingLoan, day: date, current: int) -> PayoffBreakdown:
    """What settles the installments from ``current`` on, once past-due ones are paid and
    anything paid on them in advance has been taken back into the pool."""
    rest = loan.bills[current:]
    balance = sum(bill.principal for bill in rest)
    charge = loan.policy.unbilled_fees_on_payoff is UnbilledFees.CHARGE
    fees = sum(bill.fee - bill.waived_fee for bill in rest) if charge else 0
    rate_n, rate_d = loan.policy.prepayment_fee_rate.as_integer_ratio()
    return PayoffBreakdown(
        principal=Money(balance),
        interest=Money(_interest_to(loan, day, current, balance)),
        fee=Money(fees),
        penalty=Money(0),
        prepayment_fee=Money(half_up_fen(balance * rate_n, rate_d)),
        credit_applied=Money(0),
    )


def _settle(loan: WorkingLoan, current: int, needs: PayoffBreakdown) -> None:
    """Pays everything off: the current installment takes all that is left."""
    bill = loan.bills[current]
    bill.principal = needs.principal
    bill.interest = needs.interest
    bill.fee = needs.fee + needs.prepayment_fee
    bill.waived_fee = 0
    bill.paid_principal, bill.paid_interest = bill.principal, bill.interest
    bill.paid_fee = bill.fee
    del loan.bills[current + 1 :]
    loan.reamortised = True


def _partial(loan: WorkingLoan, day: date, current: int, pool: int, *, mode: PrepayMode,
             needs: PayoffBreakdown) -> int:  # fmt: skip
    """Repays part of the principal early and re-amortises the rest; returns what is left."""
    interest = int(needs.interest)
    if pool <= interest:  # not even the interest to date: an ordinary payment
        return pool
    rate = loan.policy.prepayment_fee_rate
    # What is left after the interest pays the principal and its fee: X + X·rate.
    affordable = cut((pool - interest) * rate.denominator, rate.denominator + rate.numerator)
    prepaid = min(int(affordable), int(needs.principal))
    fee = half_up_fen(prepaid * rate.numerator, rate.denominator)
    _reamortise(loan, day, current, int(needs.principal) - prepaid, mode=mode,
                interest_paid=interest)  # fmt: skip
    bill = loan.bills[current]
    bill.principal += prepaid
    bill.fee += fee
    bill.paid_principal += prepaid
    bill.paid_interest += interest
    bill.paid_fee += fee
    loan.reamortised = True
    return pool - prepaid - interest - fee


def _reamortise(loan: WorkingLoan, day: date, current: int, balance: int, *, mode: PrepayMode,
                interest_paid: int) -> None:  # fmt: skip
    """New principal and interest parts for the installments from ``current`` on, for
    ``balance`` still to repay from ``day``; the current one keeps ``interest_paid``."""
    rest = loan.bills[current:]
    remaining = Remaining(
        start=max(day, loan.period_start(current)),  # after installments paid ahead in full
        dues=tuple(bill.due for bill in rest),
        balance=balance,
        shorten=mode is PrepayMode.SHORTEN_TERM,
        first_interest_paid=_whole_period(loan, day, current),
        level=loan.level,
        regular_part=loan.regular_part,
    )
    parts = reamortise(loan.terms, remaining)
    loan.level = parts.level
    for bill, principal, interest in zip(rest, parts.principals, parts.interests, strict=False):
        bill.principal, bill.interest = principal, interest
    rest[0].interest += interest_paid
    shortened = len(parts.principals)
    if shortened < len(rest):
        _drop_fees(loan, rest[shortened:], rest[shortened - 1])
        del loan.bills[current + shortened :]


def _drop_fees(loan: WorkingLoan, dropped: list[Bill], last: Bill) -> None:
    """Installments a shorter term no longer needs: their fees are waived, or moved to the
    new last installment, by policy."""
    if loan.policy.unbilled_fees_on_payoff is UnbilledFees.CHARGE:
        last.fee += sum(bill.fee - bill.waived_fee for bill in dropped)


def _breakdown(
    needs: PayoffBreakdown, past_due: Mapping[Component, int], credit: int
) -> PayoffBreakdown:
    """The whole payoff: the past-due amounts by component, then what settles the rest."""
    return PayoffBreakdown(
        principal=Money(needs.principal + past_due[Component.PRINCIPAL]),
        interest=Money(needs.interest + past_due[Component.INTEREST]),
        fee=Money(needs.fee + past_due[Component.FEE]),
        penalty=Money(past_due[Component.PENALTY]),
        prepayment_fee=needs.prepayment_fee,
        credit_applied=Money(credit),
    )
