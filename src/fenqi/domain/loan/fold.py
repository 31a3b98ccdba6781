"""A loan as a pure fold over its dated events (docs/design.md#the-fold).

``replay(terms, policy, events, as_of)`` starts from the schedule of the terms and applies every
event effective on or before ``as_of`` in date order, letting time pass between them: penalty
interest accrues on overdue amounts (accumulated-balance method, rounded once per installment) and
a credit balance is applied whenever an installment falls due. A backdated payment or a reversal is
just another event: replaying gives the corrected state.

Each kind of event has exactly one handler, in ``HANDLERS``; an event of a kind without one is a
programming error and stops the replay, rather than being passed by as if it never happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import Any, TypeVar

from fenqi.domain.events import (
    CreditRefund,
    DebitFailed,
    Event,
    Payment,
    Prepayment,
    Refund,
    Reversal,
    Waiver,
    WriteOff,
)
from fenqi.domain.loan.accrual import accrue, assess_late_fees, daily_penalty_rate, late_fee_days
from fenqi.domain.loan.allocation import apply_credit, on_payment, on_waiver
from fenqi.domain.loan.checkpoint import Checkpoint, restore, resumable, saved
from fenqi.domain.loan.prepayment import on_prepayment
from fenqi.domain.loan.refund import on_credit_refund, on_refund
from fenqi.domain.loan.snapshot import snapshot
from fenqi.domain.loan.state import LoanState, LoanStatus, WrittenOff
from fenqi.domain.loan.working import WorkingLoan, start
from fenqi.domain.products import Product
from fenqi.domain.rates import Rate
from fenqi.domain.schedule import Terms


def replay(
    terms: Terms, policy: Product, events: Iterable[Event], as_of: date, cap: Rate | None = None
) -> LoanState:
    """The loan as of ``as_of``: its terms, with every event effective by then applied.
    ``cap`` is the product's APR cap on the contract date, which penalty interest stays under.
    (``replay_to_checkpoint`` replays from a checkpoint, and keeps one.)"""
    return snapshot(run(terms, policy, events, as_of, cap), as_of)


def replay_to_checkpoint(
    terms: Terms,
    policy: Product,
    events: Sequence[Event],
    as_of: date,
    cap: Rate | None = None,
    *,
    since: Checkpoint | None = None,
) -> tuple[LoanState, Checkpoint | None]:
    """``replay`` (from ``since``, if given, with the events after it), and a checkpoint of the
    result for the next replay to start from. None when one would not serve: an event is dated
    after ``as_of``, or the loan is written off (its state that day is history, kept whole)."""
    loan = run(terms, policy, events, as_of, cap, since=since)
    last = max([event.seq for event in events] + [0 if since is None else since.seq])
    if loan.write_off is not None or any(event.effective > as_of for event in events):
        return snapshot(loan, as_of), None
    return snapshot(loan, as_of), Checkpoint(as_of, last, saved(loan))


def run(
    terms: Terms,
    policy: Product,
    events: Iterable[Event],
    as_of: date,
    cap: Rate | None = None,
    *,
    since: Checkpoint | None = None,
) -> WorkingLoan:
    """The working loan once every event effective by ``as_of`` is applied and time has passed
    to ``as_of``: from the start of the terms, or from ``since`` with the events after it."""
    known = [event for event in events if event.effective <= as_of]
    if since is not None and not resumable(since, known, as_of):
        raise ValueError(f"a replay cannot resume at {since.day} with these events")
    penalty_rate = daily_penalty_rate(terms, policy, cap)
    if since is None:
        loan = start(terms, policy, penalty_rate)
    else:
        loan = restore(terms, policy, penalty_rate, since.fold)
    voided = {event.payment_seq for event in known if isinstance(event, Reversal)}
    live = sorted(
        (e for e in known if not isinstance(e, Reversal) and e.seq not in voided),
        key=lambda event: (event.effective, event.seq),
    )
    for event in live:
        apply(loan, event)
    advance(loan, as_of)
    return loan


def apply(loan: WorkingLoan, event: Event) -> None:
    """Lets time pass to the event's day and applies it by its kind's handler."""
    handler = HANDLERS.get(type(event))
    if handler is None:  # fenqi's own mistake, never the input's: not an InputError
        raise AssertionError(
            f"the loan fold has no handler for {type(event).__name__} events; "
            "add one to fenqi.domain.loan.fold.HANDLERS"
        )
    advance(loan, event.effective)
    handler(loan, event)


# -- time --------------------------------------------------------------------------------------


def advance(loan: WorkingLoan, day: date) -> None:
    """Lets time pass to ``day``: penalties accrue; on the way, a credit balance pays what
    falls due and an installment still unpaid when its grace ends takes its late fee. Time
    alone never writes a loan off: only a recorded ``WriteOff`` does."""
    if day <= loan.now:
        return
    while (moment := _next_moment(loan, day)) is not None:
        accrue(loan, moment)
        loan.now = moment
        _at(loan, moment)
    accrue(loan, day)
    loan.now = day


def _next_moment(loan: WorkingLoan, day: date) -> date | None:
    """The first day after ``now`` and by ``day`` on which something happens besides
    accrual, or None."""
    moments = []
    if loan.credit > 0:
        moments += [bill.due for bill in loan.bills if loan.now < bill.due <= day]
    moments += late_fee_days(loan)
    moments = [moment for moment in moments if loan.now < moment <= day]
    return min(moments, default=None)


def _at(loan: WorkingLoan, moment: date) -> None:
    """What happens on ``moment`` itself, before any event of that day."""
    assess_late_fees(loan, moment)
    if loan.credit > 0 and any(bill.due == moment for bill in loan.bills):
        apply_credit(loan, moment)


# -- the events that need no concern of their own ----------------------------------------------


def on_debit_failed(loan: WorkingLoan, event: DebitFailed) -> None:
    """Moves no money: the attempts are kept for retries and reports."""
    loan.failed_debits[event.due_date] = max(
        loan.failed_debits.get(event.due_date, 0), event.attempt
    )


def on_write_off(loan: WorkingLoan, event: WriteOff) -> None:
    """Takes the loan off the books as it stands: once only, and only while it owes
    something (a correction may since have settled or cancelled it before this day)."""
    if loan.write_off is not None or loan.cancelled:
        return
    state = snapshot(loan, event.effective)
    if state.status is not LoanStatus.SETTLED:
        loan.write_off = WrittenOff(event.effective, state)


def on_reversal(loan: WorkingLoan, event: Reversal) -> None:
    """Nothing to do on its day: a reversal voids its payment before the fold starts (``run``
    takes the payment out and passes no reversal on), so the payment was never applied."""


_Handler = Callable[[WorkingLoan, Any], None]
_Kind = TypeVar("_Kind", bound=Event)


def _handles(kind: type[_Kind], handler: Callable[[WorkingLoan, _Kind], None]) -> tuple[
    type[object], _Handler
]:  # fmt: skip
    """A table entry, checked (by mypy) to pair an event type with a handler of that type."""
    return kind, handler


HANDLERS: Mapping[type[object], _Handler] = dict(
    (
        _handles(Payment, on_payment),
        _handles(Prepayment, on_prepayment),
        _handles(Refund, on_refund),
        _handles(Waiver, on_waiver),
        _handles(CreditRefund, on_credit_refund),
        _handles(DebitFailed, on_debit_failed),
        _handles(WriteOff, on_write_off),
        _handles(Reversal, on_reversal),
    )
)
