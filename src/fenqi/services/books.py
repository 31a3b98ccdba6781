"""Reports over the journal: the trial balance, and the check that every loan's books equal
its replayed state."""

from __future__ import annotations

from fenqi import wire
from fenqi.domain.ledger import balances
from fenqi.loans.ports import UnitOfWork
from fenqi.services.context import Context, Document, caller, transact
from fenqi.services.policy import Permission, require


def trial_balance(context: Context) -> Document:
    """Debits and credits per account over every posting; balanced when the totals agree."""

    def report(unit: UnitOfWork) -> Document:
        require(caller(context, unit), Permission.READ)
        return wire.trial_balance(unit.trial_balance(), unit.account_names())

    return transact(context, report)


def check_books(context: Context) -> Document:
    """Every loan's accounts in the journal against its state replayed to the day its books
    reach: any difference is listed by loan and account."""

    def check(unit: UnitOfWork) -> Document:
        require(caller(context, unit), Permission.READ)
        differences = []
        loan_ids = unit.loans.ids()
        for loan_id in loan_ids:
            loan = unit.loans.get(loan_id)
            state = loan.state_on(loan.booked_through)
            expected, booked = balances(loan.terms, state), unit.loans.books(loan_id)
            for account in sorted(set(expected) | set(booked)):
                if expected.get(account, 0) != booked.get(account, 0):
                    differences.append(wire.difference(loan_id, account, booked, expected))
        return {"loans_checked": len(loan_ids), "differences": differences,
                "consistent": not differences}  # fmt: skip

    return transact(context, check)
