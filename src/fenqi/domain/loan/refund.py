"""Money going back: a merchant's refund for returned goods, and a credit balance paid back.

A refund re-prices the plan on the lower principal: interest and fees on the returned part
go back with it, and what the borrower paid beyond the new plan, once anything past due is paid,
goes back to her.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from fenqi.domain.events import Channel, CreditRefund, Event, Payment, Prepayment, Refund, Reversal
from fenqi.domain.loan.allocation import allocate
from fenqi.domain.loan.state import LoanState
from fenqi.domain.loan.working import PAID, SCHEDULED, WorkingLoan
from fenqi.domain.money import Money
from fenqi.domain.products import Component
from fenqi.domain.schedule import schedule


def on_refund(loan: WorkingLoan, event: Refund) -> None:
    """Re-prices the plan on what the goods kept cost (a full return cancels it), or, once it
    can no longer be re-priced from its terms, takes the returned amount off its principal."""
    loan.first_open = 0  # installments are re-priced: look at all of them again
    day, amount = event.effective, int(event.amount)
    loan.merchant_refunds += amount
    remaining = max(loan.priced_principal - amount, 0)
    if loan.write_off is not None:
        # Off the books the plan is not re-priced: the principal the returned goods stood
        # for is no longer owed, which the merchant's money recovers.
        loan.recovered += _reduce_principal(loan, loan.priced_principal - remaining)
    elif remaining == 0:
        _cancel(loan)
    elif loan.reamortised:
        _reduce_principal(loan, loan.priced_principal - remaining)
    else:
        _reprice(loan, remaining)
    loan.priced_principal = remaining
    # What was overpaid first pays anything overdue; the rest goes back to the borrower.
    payout = allocate(loan, day, loan.credit, loan.past_due_rules)
    if event.to_credit:
        loan.credit = payout
    else:
        loan.credit = 0
        loan.pay_out(event.channel, payout)
    loan.mark_cleared(day)


def on_credit_refund(loan: WorkingLoan, event: CreditRefund) -> None:
    """Pays back up to the amount of the credit balance (never more than there is)."""
    paid_back = min(int(event.amount), loan.credit)
    loan.credit -= paid_back
    loan.credit_refunds[event.seq] = paid_back
    loan.pay_out(event.channel, paid_back)


Payer = int | None
"""Who paid money in, and so may get the credit balance back: the id of a bound payment method,
or None for money taken by hand."""


def paying_back(events: Sequence[Event], state: LoanState, paid_with: Mapping[int, Payer],
                paying: int) -> tuple[dict[Payer, int], int]:  # fmt: skip
    """Where ``paying`` of the credit balance goes back: to the payers of the payments and
    prepayments that stand (not reversed), the most recent first, each given at most what it
    paid in less what credit refunds already paid back to it, and never more than the credit
    balance of ``state`` (the loan as its ``events`` now stand). A credit refund counts for what
    the fold has it pay back (``state.credit_refunds``), not for what it was written for: once
    the payment behind it is reversed, the reversal sent that money back, and the credit refund
    counts for no more than what the loan's credit balance still paid. ``paid_with`` gives each
    payment's payer by its seq (missing: by hand). Returns the share of each payer and what none
    of them can take."""
    known = [e for e in events if e.effective <= state.as_of]  # the ones ``state`` holds
    taken_back = {e.payment_seq for e in known if isinstance(e, Reversal)}
    money_in = [e for e in known
                if isinstance(e, Payment | Prepayment) and e.seq not in taken_back]  # fmt: skip
    room: Counter[Payer] = Counter()
    for event in money_in:
        room[paid_with.get(event.seq)] += int(event.amount)
    for sent in known:
        # One by hand or to a known method counts against it; one written before methods were
        # kept (no method, not by hand) went to a method no longer known, so to no one here.
        if isinstance(sent, CreditRefund) and (
            sent.method_id is not None or sent.channel is Channel.MANUAL
        ):
            room[sent.method_id] -= int(state.credit_refunds.get(sent.seq, 0))
    shares: Counter[Payer] = Counter()
    left = min(paying, int(state.credit_balance))
    for event in sorted(money_in, key=lambda e: (e.effective, e.seq), reverse=True):
        payer = paid_with.get(event.seq)
        share = min(int(event.amount), room[payer], left)
        if share > 0:
            shares[payer] += share
            room[payer] -= share
            left -= share
    return dict(shares), paying - sum(shares.values())


def _cancel(loan: WorkingLoan) -> None:
    """A full return: nothing is owed any more and everything paid goes back
    (docs/domain.md#merchant-refunds)."""
    for bill in loan.bills:
        loan.credit += bill.unapply() + bill.paid_penalty
        bill.principal = bill.interest = bill.fee = bill.late_fee = 0
        bill.paid_penalty = bill.waived_fee = bill.waived_penalty = bill.penalty_days = 0
    loan.cancelled = True


def _reprice(loan: WorkingLoan, principal: int) -> None:
    """The plan as if the goods had cost ``principal``: fees and interest on the returned
    part go back with it (docs/domain.md#merchant-refunds); paid beyond the new amounts
    becomes credit."""
    plan = schedule(replace(loan.terms, principal=Money(principal), upfront_fee=Money(0)))
    parts = zip(plan.principals, plan.interests, plan.fees, strict=True)
    for bill, (principal_k, interest_k, fee_k) in zip(loan.bills, parts, strict=True):
        bill.principal, bill.interest, bill.fee = principal_k, interest_k, fee_k
        charged = (principal_k, interest_k, fee_k + bill.late_fee)
        for component, due in zip(SCHEDULED, charged, strict=True):
            paid = getattr(bill, PAID[component])
            if paid > due:
                loan.credit += paid - due
                setattr(bill, PAID[component], due)
        bill.waived_fee = min(bill.waived_fee, max(fee_k + bill.late_fee - bill.paid_fee, 0))
        if bill.scheduled_unpaid() > 0:
            # Re-priced to owe again (the new schedule's rounding remainder may fall on an
            # installment already paid): it is open, and what pays the plan pays it too.
            bill.cleared_on = None
            bill.done = False


def _reduce_principal(loan: WorkingLoan, amount: int) -> int:
    """A refund once the plan was re-amortised or paid off, so that it can no longer be
    re-priced from its terms: the returned amount comes off the latest installments' unpaid
    principal, then off principal already paid, which goes back to the borrower. (Services
    refuse a partial refund of a partly prepaid plan that still owes principal: its future
    interest would not follow.) Returns how much unpaid principal it cancelled."""
    cancelled = 0
    for bill in reversed(loan.bills):
        taken = min(bill.unpaid(Component.PRINCIPAL), amount)
        bill.principal -= taken
        amount -= taken
        cancelled += taken
    for bill in reversed(loan.bills):
        back = min(bill.paid_principal, amount)
        bill.principal -= back
        bill.paid_principal -= back
        loan.credit += back
        amount -= back
    return cancelled
