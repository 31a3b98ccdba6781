"""The immutable ``LoanState`` a working loan shows as of a day."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from fenqi.domain.loan.accrual import penalty_accrued
from fenqi.domain.loan.state import InstallmentState, InstallmentStatus, LoanState, LoanStatus, fen
from fenqi.domain.loan.working import Bill, WorkingLoan
from fenqi.domain.money import Money


def snapshot(loan: WorkingLoan, as_of: date) -> LoanState:
    """The loan as of ``as_of``, which it has accrued through (``fold.advance``)."""
    rows = tuple(_installment(loan, bill, as_of) for bill in loan.bills)
    return LoanState(
        as_of=as_of,
        installments=rows,
        status=_status(loan, rows),
        credit_balance=Money(loan.credit),
        cash_in={channel: Money(amount) for channel, amount in loan.cash_in.items()},
        cash_out={channel: Money(amount) for channel, amount in loan.cash_out.items()},
        merchant_refunds=Money(loan.merchant_refunds),
        allocations=dict(loan.allocations),
        payoffs=dict(loan.payoffs),
        failed_debits=dict(loan.failed_debits),
        write_off=loan.write_off,
        recovered=fen(loan.recovered),
        credit_refunds={seq: Money(amount) for seq, amount in loan.credit_refunds.items()},
    )


def _status(loan: WorkingLoan, rows: Sequence[InstallmentState]) -> LoanStatus:
    if loan.cancelled:
        return LoanStatus.CANCELLED
    if all(row.status is InstallmentStatus.PAID for row in rows):
        return LoanStatus.SETTLED
    if loan.write_off is not None:
        return LoanStatus.WRITTEN_OFF
    if any(row.dpd for row in rows):
        return LoanStatus.OVERDUE
    return LoanStatus.ACTIVE


def _installment(loan: WorkingLoan, bill: Bill, as_of: date) -> InstallmentState:
    penalty = penalty_accrued(loan, bill, as_of)
    owed = bill.scheduled_unpaid() + penalty - bill.paid_penalty - bill.waived_penalty
    if owed <= 0:
        status, dpd = InstallmentStatus.PAID, 0
    elif bill.due > as_of:
        status, dpd = InstallmentStatus.FUTURE, 0
    elif as_of <= bill.due + loan.grace:
        status, dpd = InstallmentStatus.DUE, 0
    else:
        status, dpd = InstallmentStatus.OVERDUE, (as_of - bill.due).days
    money = int.__new__
    return InstallmentState._make((  # positionally, in field order: the hottest constructor
        bill.period, bill.due, money(Money, bill.principal), money(Money, bill.interest),
        money(Money, bill.fee), money(Money, bill.late_fee), money(Money, penalty),
        money(Money, bill.paid_principal), money(Money, bill.paid_interest),
        money(Money, bill.paid_fee), money(Money, bill.paid_penalty),
        money(Money, bill.waived_fee), money(Money, bill.waived_penalty), status, dpd,
        money(Money, owed),
    ))  # fmt: skip
