"""The books of a loan, derived from its replayed state (docs/design.md#the-books-as-a-projection).

``balances`` projects a loan's state onto the chart of accounts; a journal entry is the difference
between the balances after an event and before it, so the books follow the loan exactly, however
far back an event reaches. An entry whose debits and credits differ is refused here, and again by
the database.

When interest and fees count as income: an installment's interest and fee become receivable (and
income) when it falls due; paid earlier, they are income when paid. Penalty interest is income as
it accrues after the grace period. Principal is receivable from disbursement. An upfront fee is
income at disbursement, netted from what the merchant (or the borrower) receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple

from fenqi.domain.errors import InvariantError
from fenqi.domain.events import Channel
from fenqi.domain.loan import LoanState
from fenqi.domain.money import Money
from fenqi.domain.schedule import Terms


class Account(StrEnum):
    """The chart of accounts. Assets and expenses are debit-normal; the rest credit-normal."""

    PRINCIPAL_RECEIVABLE = "principal_receivable"
    INTEREST_RECEIVABLE = "interest_receivable"
    FEE_RECEIVABLE = "fee_receivable"
    PENALTY_RECEIVABLE = "penalty_receivable"
    INTEREST_INCOME = "interest_income"
    FEE_INCOME = "fee_income"
    PENALTY_INCOME = "penalty_income"
    MERCHANT_PAYABLE = "merchant_payable"
    CREDIT_BALANCE = "credit_balance"
    WRITE_OFF_EXPENSE = "write_off_expense"
    RECOVERIES = "recoveries"


RECEIVABLES = (
    Account.PRINCIPAL_RECEIVABLE,
    Account.INTEREST_RECEIVABLE,
    Account.FEE_RECEIVABLE,
    Account.PENALTY_RECEIVABLE,
)


def cash_account(channel: Channel) -> str:
    """The cash clearing account of a payment channel."""
    return f"cash_clearing:{channel}"


class UnbalancedEntryError(InvariantError):
    """A journal entry whose debits and credits differ: never posted (the projection is wrong)."""


class Line(NamedTuple):
    """One posting line: an account and a debit or a credit (the other is 0)."""

    account: str
    debit: Money
    credit: Money


Balances = Mapping[str, int]  # account -> debit minus credit, in fen


def balances(terms: Terms, state: LoanState) -> dict[str, int]:
    """What the loan's accounts hold when its books match ``state`` (debit minus credit).

    Once written off, the loan's receivables as they stood that day are an expense, its income
    stays what it was that day, and whatever is paid afterwards is a recovery."""
    if state.write_off is None:
        return _open_books(terms, state)
    books = _open_books(terms, state.write_off.state)
    written_off = sum(books.pop(account, 0) for account in RECEIVABLES)
    books[Account.WRITE_OFF_EXPENSE] = written_off
    books[Account.RECOVERIES] = -state.recovered
    books[Account.CREDIT_BALANCE] = -state.credit_balance
    books[Account.MERCHANT_PAYABLE] = -(terms.net_received - state.merchant_refunds)
    for account in [account for account in books if account.startswith("cash_clearing:")]:
        del books[account]
    books.update(_cash(state))
    return {account: int(amount) for account, amount in books.items() if amount}


def _cash(state: LoanState) -> dict[str, int]:
    cash = {}
    for channel in Channel:
        net = state.cash_in.get(channel, 0) - state.cash_out.get(channel, 0)
        if net:
            cash[cash_account(channel)] = net
    return cash


def _open_books(terms: Terms, state: LoanState) -> dict[str, int]:
    interest_income = fee_income = penalty_income = 0  # plain ints: one pass, no checks
    for row in state.installments:
        if row.billed:
            interest_income += row.interest
            fee_income += row.fee
            fee_income += row.late_fee
            fee_income -= row.waived_fee
        else:
            interest_income += row.paid_interest
            fee_income += row.paid_fee
        penalty_income += row.penalty
        penalty_income -= row.waived_penalty
    merchant = terms.net_received - state.merchant_refunds
    books: dict[str, int] = {
        Account.PRINCIPAL_RECEIVABLE: state.outstanding_principal,
        Account.INTEREST_RECEIVABLE: state.outstanding_interest,
        Account.FEE_RECEIVABLE: state.outstanding_fee,
        Account.PENALTY_RECEIVABLE: state.outstanding_penalty,
        Account.INTEREST_INCOME: -interest_income,
        Account.FEE_INCOME: -(fee_income + terms.upfront_fee),
        Account.PENALTY_INCOME: -penalty_income,
        Account.MERCHANT_PAYABLE: -merchant,
        Account.CREDIT_BALANCE: -state.credit_balance,
        **_cash(state),
    }
    return {account: int(amount) for account, amount in books.items() if amount}


def journal(before: Balances, after: Balances) -> tuple[Line, ...]:
    """The entry that moves the books from ``before`` to ``after``: one line per account that
    changes, debits first. Refused unless debits equal credits."""
    lines = []
    for account in sorted(set(before) | set(after)):
        change = after.get(account, 0) - before.get(account, 0)
        if change:
            debit, credit = max(change, 0), max(-change, 0)
            lines.append(Line(account, Money(debit), Money(credit)))
    lines.sort(key=lambda line: (line.debit == 0, line.account))
    check_balanced(lines)
    return tuple(lines)


def check_balanced(lines: list[Line] | tuple[Line, ...]) -> None:
    debits, credits = sum(line.debit for line in lines), sum(line.credit for line in lines)
    if debits != credits:
        raise UnbalancedEntryError(
            f"journal entry is unbalanced: debits {Money(debits)} ≠ credits {Money(credits)}"
        )
