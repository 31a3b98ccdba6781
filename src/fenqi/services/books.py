"""Reports over the journal: the trial balance, and the check that every loan's books equal
its replayed state."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fenqi import wire
from fenqi.domain.ledger import balances
from fenqi.services.context import Context, Document, run
from fenqi.store.loans import account_names, book_balances, load_loan
from fenqi.store.schema import LoanRow, PostingRow


def trial_balance(context: Context) -> Document:
    """Debits and credits per account over every posting; balanced when the totals agree."""

    def report(session: Session) -> Document:
        names = account_names(session)
        query = (
            select(PostingRow.account, func.sum(PostingRow.debit), func.sum(PostingRow.credit))
            .group_by(PostingRow.account)
            .order_by(PostingRow.account)
        )
        rows = [
            (account, int(debit), int(credit)) for account, debit, credit in session.execute(query)
        ]
        return wire.trial_balance(rows, names)

    return run(context, report)


def check_books(context: Context) -> Document:
    """Every loan's accounts in the journal against its state replayed to the day its books
    reach: any difference is listed by loan and account."""

    def check(session: Session) -> Document:
        differences = []
        loan_ids = list(session.scalars(select(LoanRow.id).order_by(LoanRow.id)))
        for loan_id in loan_ids:
            record = load_loan(session, loan_id)
            state = record.state_on(record.booked_through)
            expected, booked = balances(record.terms, state), book_balances(session, loan_id)
            for account in sorted(set(expected) | set(booked)):
                if expected.get(account, 0) != booked.get(account, 0):
                    differences.append(wire.difference(loan_id, account, booked, expected))
        return {"loans_checked": len(loan_ids), "differences": differences,
                "consistent": not differences}  # fmt: skip

    return run(context, check)
