"""Money going back: a merchant's refund for returned goods, and a credit balance paid back.

A refund re-prices the plan on the lower principal: interest and fees on the returned part
go back with it, and what the borrower paid beyond the new plan, once anything past due is paid,
goes back to her.
"""

from __future__ import annotations

from dataclasses import replace

from fenqi.domain.events import CreditRefund, Refund
from fenqi.domain.loan.allocation import allocate
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
    loan.pay_out(event.channel, paid_back)


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
