"""Reports over the journal: the trial balance, and the check that every loan's books equal
its replayed state."""

from __future__ import annotations

from fenqi.domain.ledger import balances
from fenqi.domain.money import Money
from fenqi.loans.ports import UnitOfWork
from fenqi.services.context import Context, caller, transact
from fenqi.services.policy import Permission, require
from fenqi.services.views import AccountTotal, BookCheck, BookDifference, TrialBalance


def trial_balance(context: Context) -> TrialBalance:
    """Debits and credits per account over every posting; balanced when the totals agree."""

    def report(unit: UnitOfWork) -> TrialBalance:
        require(caller(context, unit), Permission.READ)
        names = unit.account_names()
        return TrialBalance(tuple(
            AccountTotal(account, names.get(account, account), Money(debit), Money(credit))
            for account, debit, credit in unit.trial_balance()
        ))  # fmt: skip

    return transact(context, report)


def check_books(context: Context) -> BookCheck:
    """Every loan's accounts in the journal against its state replayed to the day its books
    reach: any difference is listed by loan and account."""

    def check(unit: UnitOfWork) -> BookCheck:
        require(caller(context, unit), Permission.READ)
        differences = []
        loan_ids = unit.loans.ids()
        for loan_id in loan_ids:
            loan = unit.loans.get(loan_id)
            state = loan.state_on(loan.booked_through)
            expected, booked = balances(loan.terms, state), unit.loans.books(loan_id)
            for account in sorted(set(expected) | set(booked)):
                if expected.get(account, 0) != booked.get(account, 0):
                    differences.append(BookDifference(
                        loan_id, account, Money(booked.get(account, 0)),
                        Money(expected.get(account, 0))))  # fmt: skip
        return BookCheck(len(loan_ids), tuple(differences))

    return transact(context, check)
