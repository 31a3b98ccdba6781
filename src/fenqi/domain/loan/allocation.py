"""Where money goes: the product's allocation rules applied to the installments, and waivers.

A rule names a stage (past due, due, in advance) and a component (penalty, fee, interest,
principal); money runs through the rules in order until it is spent, and what no rule takes is
the borrower's credit balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import lru_cache

from fenqi.domain.events import Payment, Waiver, WaiverKind
from fenqi.domain.loan.accrual import owed
from fenqi.domain.loan.state import Allocation, Applied, fen
from fenqi.domain.loan.working import Bill, WorkingLoan
from fenqi.domain.products import AllocationRule, Component, Stage


def allocate(loan: WorkingLoan, day: date, amount: int, rules: Sequence[AllocationRule],
             current: int | None = None) -> int:  # fmt: skip
    """Applies ``amount`` by ``rules``; returns what no rule took. Installments before
    ``current`` (default: the one due on ``day``) are past due.

    Past-due and due rules take their component from every installment of their stage,
    oldest first. In advance, installments are filled one at a time, oldest first, each by the
    advance rules' component order: paying ahead pays the next installment.
    """
    if amount <= 0:
        return amount
    if current is None:
        current = loan.current(day)
    for stage, components in _stages(tuple(rules)):
        if stage is Stage.ADVANCE:
            amount = _pay_ahead(loan, day, amount, current, components)
        else:
            start, end = (
                (loan.oldest_open(), current) if stage is Stage.PAST_DUE else (current, current + 1)
            )
            bills = [bill for bill in loan.bills[start:end] if not bill.done]
            for component in components:
                for bill in bills:
                    amount = take(loan, bill, component, day, amount)
                if amount <= 0:
                    return amount
    return amount


def _pay_ahead(loan: WorkingLoan, day: date, amount: int, current: int,
               components: tuple[Component, ...]) -> int:  # fmt: skip
    for bill in loan.bills[current + 1 :]:
        if bill.done:
            continue
        for component in components:
            amount = take(loan, bill, component, day, amount)
        if amount <= 0:
            break
    return amount


def take(loan: WorkingLoan, bill: Bill, component: Component, day: date, amount: int) -> int:
    """Pays what ``bill`` owes of ``component`` out of ``amount``; returns what is left."""
    if amount <= 0:
        return amount
    share = min(owed(loan, bill, component, day), amount)
    if share > 0:
        bill.pay(component, share)
        amount -= share
        if loan.applied is not None:
            loan.applied.append(Applied(bill.period, component, fen(share)))
        if loan.write_off is not None:
            loan.recovered += share
        if bill.cleared_on is None and bill.scheduled_unpaid() == 0:
            bill.cleared_on = day
        if bill.cleared_on is not None:
            # Cleared, its principal no longer accrues penalty: once that is paid too, done.
            bill.done = owed(loan, bill, Component.PENALTY, day) == 0
    return amount


def apply_credit(loan: WorkingLoan, day: date) -> None:
    """Applies the credit balance by the product's rules (what falls due takes it)."""
    loan.credit = allocate(loan, day, loan.credit, loan.policy.allocation)


def on_payment(loan: WorkingLoan, event: Payment) -> None:
    """Money received: with any credit balance, it pays by the product's rules; the rest is
    credit. What it paid is kept as its allocation (receipts and the books read it)."""
    loan.receive(event.channel, event.amount)
    credit_before, loan.applied = loan.credit, []
    loan.credit = allocate(loan, event.effective, loan.credit + event.amount,
                           loan.policy.allocation)  # fmt: skip
    loan.allocations[event.seq] = Allocation(tuple(loan.applied), fen(loan.credit - credit_before))
    loan.applied = None


def on_waiver(loan: WorkingLoan, event: Waiver) -> None:
    """Forgives up to the amount of penalty or fee still owed, oldest installment first."""
    component = Component.PENALTY if event.kind is WaiverKind.PENALTY else Component.FEE
    left = int(event.amount)
    for bill in loan.bills:
        share = min(owed(loan, bill, component, event.effective), left)
        if share <= 0:
            continue
        if component is Component.PENALTY:
            bill.waived_penalty += share
        else:
            bill.waived_fee += share
        left -= share
    loan.mark_cleared(event.effective)


@lru_cache(maxsize=64)
def _stages(rules: tuple[AllocationRule, ...]) -> tuple[tuple[Stage, tuple[Component, ...]], ...]:
    """The rules as runs of one stage each, in order: (past-due, (penalty, fee, …)), …; each
    stage's installments are found once per run instead of once per rule."""
    runs: list[tuple[Stage, list[Component]]] = []
    for rule in rules:
        if runs and runs[-1][0] is rule.stage:
            runs[-1][1].append(rule.component)
        else:
            runs.append((rule.stage, [rule.component]))
    return tuple((stage, tuple(components)) for stage, components in runs)
