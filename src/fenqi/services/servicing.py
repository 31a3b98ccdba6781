"""Servicing a plan from checkout to payoff: each operation is one unit of work that gets the
loan from the ``Loans`` port, lets the domain decide, books the event (``fenqi.loans.booking``:
its journal entries, receipt and the loan's new summary) and saves the booking.

Money taken from a bound method goes through the withholding gateway in phases of their own
(``fenqi.services.withholding.collect``): the request is committed, the gateway asked with no
transaction open, and its answer booked. Money taken by hand is booked in one unit of work.
Money paid back to a bound method goes the same way (``fenqi.services.payouts``): the unit of
work that books the credit refund or the reversal commits a pending refund request with it,
and the gateway is asked once it has committed, never inside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, TypeVar

from fenqi import clock
from fenqi.catalog import read_lpr_table
from fenqi.clock import stamp
from fenqi.domain.apr import apr
from fenqi.domain.corrections import Consequences, consequences
from fenqi.domain.events import (
    Channel,
    CreditRefund,
    Event,
    Payment,
    Prepayment,
    PrepayMode,
    Refund,
    Reversal,
    Waiver,
    WaiverKind,
)
from fenqi.domain.loan import (
    InstallmentStatus,
    LoanState,
    LoanStatus,
    paying_back,
    payoff_quote,
    replay,
)
from fenqi.domain.money import Money
from fenqi.domain.products import Component
from fenqi.domain.quote import Quote, quote
from fenqi.domain.schedule import Method, schedule
from fenqi.domain.withholding import DebitRequest, Kind
from fenqi.loans.aggregate import MAX_ID, Loan
from fenqi.loans.booking import book
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.ports import UnansweredError, UnitOfWork
from fenqi.loans.receipts import Receipt
from fenqi.services import payouts, withholding
from fenqi.services.context import (
    Context,
    Replayed,
    authenticated,
    caller,
    caller_and_stamp,
    permitted,
    transact,
    transact_once,
)
from fenqi.services.errors import (
    ConfirmationNeededError,
    NotFoundError,
    RefusedError,
    plain_text,
)
from fenqi.services.policy import (
    MoneyIn,
    OverpaymentApproval,
    Permission,
    Principal,
    require,
    sees,
    takes_money,
    waives,
)
from fenqi.services.quoting import PlanRequest, quote_request
from fenqi.services.views import (
    LATE_EXAMPLE_DAYS,
    CreditPaidBack,
    LateExample,
    ListedReceipt,
    LoanHistory,
    LoanSummary,
    LoanView,
    Overview,
    PaymentPreview,
    PaymentTaken,
    Payoff,
    Payout,
    PlanExplained,
    PrepaymentOutcome,
    PrepaymentPreview,
    Refunded,
    Reversed,
    Waived,
    WaiverPreview,
    to_repay,
)
from fenqi.wire import consequences as consequences_document
from fenqi.wire import payout as payout_document
from fenqi.wire import present
from fenqi.wire import quote as quote_document

T = TypeVar("T")
CLOSED = (LoanStatus.SETTLED, LoanStatus.CANCELLED)
# A payment's or receipt's id: the loan, then the event's number; ASCII digits only (``\\d`` would
# also take "١٨", and file the row under a name no one else would find it by).
_EVENT_ID = re.compile(r"[PR]?([0-9]{1,10})-([0-9]{1,10})", re.ASCII | re.IGNORECASE)


class OverpaymentError(RefusedError):
    """A payment of more than what pays the plan off that day, without an admin's approval."""

    field = "amount"


# -- checkout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """What the mall sends at checkout."""

    borrower_id: int
    order_id: str
    merchant: str
    amount: Money
    product: str
    periods: int | None
    day: date
    item: str | None = None  # what was bought, as the mall names it


def checkout(context: Context, order: Order, *,
             idempotency_key: str | None = None) -> LoanView | Replayed:  # fmt: skip
    """Turns an order into a plan: quoted under the product's cap, within the borrower's
    available limit, the full cost and APR recorded as consented, the merchant owed the price."""
    for what, text in (("the order id", order.order_id), ("the merchant", order.merchant),
                       ("the item", order.item or ""), ("the product", order.product)):  # fmt: skip
        plain_text(what, text)
    if not order.order_id.strip() or not order.merchant.strip():
        raise RefusedError("an order needs an order id and a merchant")
    if order.amount <= 0:
        raise RefusedError(f"order amount {order.amount} must be more than 0")

    def make(unit: UnitOfWork) -> LoanView:
        available = unit.available_limit(order.borrower_id, lock=True)
        existing = unit.loans.for_order(order.order_id)
        if existing is not None:
            raise RefusedError(f"order {order.order_id} already has plan {existing}")
        product, definition = unit.product(order.product)
        terms = product.terms(order.amount, order.day, order.periods)
        offer = quote(terms, product.apr_cap.on(order.day, read_lpr_table()), product.code)
        if order.amount > available:
            raise RefusedError(
                f"order amount {order.amount} is over the available limit of {available}"
            )
        loan = Loan(
            id=0, borrower_id=order.borrower_id, order_id=order.order_id,
            merchant=order.merchant, item=(order.item or "").strip() or None,
            product_code=product.code, terms=terms, policy=product, definition=definition,
            cap=offer.cap, events=[], status=LoanStatus.ACTIVE,
            outstanding_principal=int(terms.principal), dpd=0, version=0, opened=order.day,
            booked_through=order.day, closed_through=order.day, next_action_date=None,
            journal={},  # nothing booked yet: the opening entry books the loan's whole state
        )  # fmt: skip
        memo = f"disbursement to merchant {order.merchant} for order {order.order_id}"
        opening = book(loan, [], order.day, memo=memo, accrual=memo, issued=stamp())
        shown = quote_document(offer)
        unit.loans.add(loan, opening, shown)
        return LoanView.of(loan, opening.state, shown)

    request = {"op": "checkout", **{k: str(v) for k, v in vars(order).items()}}
    return _once(context, f"order:{order.order_id}", idempotency_key, request, make,
                 guard=_needs(context, Permission.SERVE))  # fmt: skip


# -- quotes -------------------------------------------------------------------------------------


def quote_plan(context: Context, plan: PlanRequest) -> Quote:
    """What a plan would cost (its schedule, total cost and APR): anyone signed in may ask."""
    authenticated(context)
    return quote_request(plan)


def checkout_quote(context: Context, plan: PlanRequest) -> Quote:
    """The offer a checkout would make, to show before consent: for staff who serve borrowers."""
    permitted(context, Permission.SERVE)
    return quote_request(plan)


# -- reading ------------------------------------------------------------------------------------


def show_loan(context: Context, loan_id: int, as_of: date) -> LoanView:
    """The plan on ``as_of``, with what the borrower was shown when she agreed to it (its APR
    and full cost), which is hers to see for as long as the plan lasts."""

    def show(unit: UnitOfWork) -> LoanView:
        loan = unit.loans.read(loan_id, as_of)
        sees(caller(context, unit), loan.borrower_id, f"loan {loan_id}")
        return _view(unit, loan, as_of)

    return transact(context, show)


def view_loan(context: Context, loan_id: int, as_of: date, render: Callable[[LoanView], T]) -> T:
    """``show_loan`` shown by ``render`` (a module's function, as a route's presenter), from
    the bills the context keeps (``Context.bills``) when the plan is still at the version and on
    the day one was kept for: then the caller is checked and the plan's owner and version read
    (one statement, ``caller_and_stamp``), and nothing is replayed. Otherwise the plan is read
    and shown, and kept for the version it was read at."""
    kept = context.bills

    def show(unit: UnitOfWork) -> T:
        who, stamp = caller_and_stamp(context, unit, loan_id)
        sees(who, stamp.borrower_id, f"loan {loan_id}")
        if kept is not None:
            shown = kept.get(render, loan_id, stamp.version, as_of)
            if shown is not None:
                return shown
        loan = unit.loans.read(loan_id, as_of)
        shown = render(_view(unit, loan, as_of))
        if kept is not None:
            kept.keep(render, loan_id, loan.version, as_of, shown)
        return shown

    return transact(context, show, reading=True)


async def kept_view(
    context: Context, loan_id: int, as_of: date, render: Callable[[LoanView], T]
) -> T | None:
    """``view_loan``'s answer when the process keeps it, checked as ``view_loan`` checks it
    but from the event loop, with no thread and no unit of work: the caller's credential and
    the plan's stamp read in one statement (``Context.quick``), who may see the plan decided,
    then the bill kept for that version and day. None when the answer needs ``view_loan``
    (in a thread): nothing kept for that stamp, no quick reads here, a credential whose check
    has a write to make, or a read that had no answer (``view_loan`` then says what is wrong).
    Refusals are ``view_loan``'s: 401 for a credential not valid, 404 for no such plan or one
    the caller may not see."""
    kept, quick, credential = context.bills, context.quick, context.credential
    if kept is None or quick is None or credential is None or context.principal is not None:
        return None
    try:
        checked = await credential.principal_and_stamp_at_once(quick, loan_id)
    except UnansweredError:
        return None
    if checked is None:
        return None
    who, stamp = checked
    if stamp is None:
        raise NotFoundError(f"no loan {loan_id}")
    sees(who, stamp.borrower_id, f"loan {loan_id}")
    return kept.get(render, loan_id, stamp.version, as_of)


def _view(unit: UnitOfWork, loan: Loan, as_of: date) -> LoanView:
    return LoanView.of(loan, loan.state_on(as_of), unit.loans.consent(loan.id))


def list_loans(context: Context, borrower_id: int, as_of: date) -> list[LoanSummary]:
    def listing(unit: UnitOfWork) -> list[LoanSummary]:
        sees(caller(context, unit), borrower_id, f"borrower {borrower_id}")
        loans = [unit.loans.read(loan_id, as_of) for loan_id in unit.loans.ids_of(borrower_id)]
        return [LoanSummary.of(loan, loan.state_on(as_of)) for loan in loans]

    return transact(context, listing)


def overview(context: Context, borrower_id: int, as_of: date) -> Overview:
    """A borrower's plans on ``as_of`` and what she has to repay across them
    (``views.Overview``), read in one unit of work: what her page and the API lead with."""

    def work(unit: UnitOfWork) -> Overview:
        sees(caller(context, unit), borrower_id, f"borrower {borrower_id}")
        account = unit.borrowers.get(borrower_id)
        if account is None:
            raise NotFoundError(f"no borrower {borrower_id}")
        loans = [unit.loans.read(loan_id, as_of) for loan_id in unit.loans.ids_of(borrower_id)]
        limits = (account.credit_limit, unit.available_limit(borrower_id))
        return Overview.of(borrower_id, as_of, limits, [_view(unit, loan, as_of) for loan in loans])

    return transact(context, work)


def quote_payoff(context: Context, loan_id: int, day: date) -> Payoff:
    def work(unit: UnitOfWork) -> Payoff:
        record = unit.loans.get(loan_id)
        sees(caller(context, unit), record.borrower_id, f"loan {loan_id}")
        _check_day(record, day)
        return Payoff(
            loan_id, payoff_quote(record.terms, record.policy, record.events, day, record.cap)
        )

    return transact(context, work)


def preview_payment(context: Context, loan_id: int, amount: Money, source: Source, day: date, *,
                    allow_overpayment: bool = False) -> PaymentPreview:  # fmt: skip
    """What ``pay`` with these arguments would book, worked out by the same fold and refused
    for the same reasons (who may pay, the day, the payoff, the method), with nothing written
    and no gateway asked: what a confirm step shows before the money moves. A gateway may
    still decline it when it is taken."""
    _check_payment(amount)
    allowed = _money_in_allowed(context, loan_id, source, day, allow_overpayment)

    def work(unit: UnitOfWork) -> PaymentPreview:
        record = _open_loan(unit, loan_id, day)
        may = allowed(unit, record.borrower_id)
        payoff = _within_payoff(unit, record, amount, day=day, may=may)
        channel = _channel_of(_method(unit, record, source, may))
        seq = record.next_seq
        event = withholding.payment_event(record, seq, day, amount, channel, payoff=payoff)
        after = record.state_with(event, record.booking_day(day))
        went = after.allocations[seq]
        return PaymentPreview(
            loan_id, day, amount, "prepayment" if isinstance(event, Prepayment) else "payment",
            went.total(Component.PRINCIPAL), went.total(Component.INTEREST),
            went.total(Component.FEE), went.total(Component.PENALTY), went.to_credit,
            after.status, after.amount_due, after.outstanding_principal,
        )  # fmt: skip

    return transact(context, work)


def preview_prepayment(context: Context, loan_id: int, amount: Money,
                       day: date) -> PrepaymentPreview:  # fmt: skip
    """What prepaying ``amount`` on ``day`` would do, in each mode the plan may be prepaid in
    (``PrepaymentPreview``), worked out by the fold that books a prepayment, so the preview and
    the booking agree to the fen; nothing is written. Refused for a plan with nothing to
    prepay, an amount of 0 or less, or more than the payoff that day."""
    if amount <= 0:
        raise RefusedError(f"prepayment amount {amount} must be more than 0")

    def work(unit: UnitOfWork) -> PrepaymentPreview:
        record = unit.loans.read(loan_id, day)
        sees(caller(context, unit), record.borrower_id, f"loan {loan_id}")
        _check_day(record, day)
        if record.status in CLOSED:
            raise RefusedError(f"loan {loan_id} is {record.status}: there is nothing to prepay")
        payoff, before = record.payoff_on(day), record.state_on(day)
        if amount > payoff:
            raise OverpaymentError(
                f"{amount} is more than the {payoff} that pays loan {loan_id} off on {day}: "
                f"the most that can be prepaid is {payoff}"
            ).coded("over-payoff", amount=amount, most=payoff, day=day)
        seq, settles, owed = record.next_seq, amount >= payoff, to_repay(before)
        outcomes = tuple(
            PrepaymentOutcome.of(mode, seq, amount, owed, record.state_with(
                Prepayment(seq, day, amount, Channel.MANUAL, mode, settles), day))
            for mode in PrepayMode
            if mode is PrepayMode.REDUCE_INSTALLMENT or _shortens(record.terms.method)
        )  # fmt: skip
        return PrepaymentPreview(loan_id, day, amount, payoff, owed, outcomes)

    return transact(context, work, reading=True)


def _shortens(method: Method) -> bool:
    """Whether a plan of ``method`` may be prepaid to end sooner: not one that repays its
    principal only at the end."""
    return method not in (Method.INTEREST_ONLY, Method.BULLET)


def explain_plan(context: Context, loan_id: int, day: date) -> PlanExplained:
    """A plan's cost and what being late would cost, in its own numbers (``PlanExplained``):
    its schedule and APR as quoted at checkout, the product's rules for lateness, and its next
    installment as the fold would have it if left unpaid (``LateExample``)."""

    def work(unit: UnitOfWork) -> PlanExplained:
        record = unit.loans.read(loan_id, day)
        sees(caller(context, unit), record.borrower_id, f"loan {loan_id}")
        terms, policy = record.terms, record.policy
        plan = schedule(terms)
        rate = apr(plan)
        per_period = terms.fee_rate if terms.fee_total_rate is None else \
            terms.fee_total_rate / terms.periods  # fmt: skip
        return PlanExplained(
            loan_id, terms.method, terms.principal, terms.periods, plan.installments[0].payment,
            plan.total_interest, plan.total_fee,
            Money(plan.total_interest + plan.total_fee + terms.upfront_fee), terms.annual_rate,
            per_period, per_period * 12, rate.compound, rate.simple, policy.grace_days,
            policy.reminder_days, policy.debit_retry_days, policy.write_off_dpd,
            _late_example(record, day),
        )  # fmt: skip

    return transact(context, work, reading=True)


def _late_example(record: Loan, day: date) -> LateExample | None:
    """The plan's next installment not yet late, as it would stand ``LATE_EXAMPLE_DAYS`` past
    its due date if nothing were paid: worked out by the fold on the plan as it is."""
    waiting = (InstallmentStatus.FUTURE, InstallmentStatus.DUE)
    row = next((row for row in record.state_on(day).installments if row.status in waiting), None)
    if row is None:
        return None
    later = row.due_date + timedelta(days=LATE_EXAMPLE_DAYS)
    then = record.state_on(later).installments[row.period - 1]
    after = record.state_on(later + timedelta(days=1)).installments[row.period - 1]
    return LateExample(
        row.period, row.due_date, row.payment,
        row.due_date + timedelta(days=record.policy.grace_days), then.late_fee,
        Money(after.penalty - then.penalty), LATE_EXAMPLE_DAYS, then.penalty, then.outstanding,
    )  # fmt: skip


def show_receipt(context: Context, receipt_id: str) -> Receipt:
    loan_id, seq = parse_id(receipt_id, "R", "receipt")

    def show(unit: UnitOfWork) -> Receipt:
        sees(caller(context, unit), unit.loans.borrower_of(loan_id), f"loan {loan_id}")
        receipt = unit.loans.receipt(loan_id, seq)
        if receipt is None:
            raise NotFoundError(f"no receipt R{loan_id}-{seq}")
        return receipt

    return transact(context, show)


def list_receipts(context: Context, loan_id: int) -> list[ListedReceipt]:
    """A plan's receipts, oldest first, each saying whether its payment was later reversed."""

    def listing(unit: UnitOfWork) -> list[ListedReceipt]:
        loan = unit.loans.get(loan_id)
        sees(caller(context, unit), loan.borrower_id, f"loan {loan_id}")
        taken_back = {event.payment_seq for event in loan.events if isinstance(event, Reversal)}
        return [ListedReceipt(receipt, receipt.seq in taken_back)
                for receipt in unit.loans.receipts(loan_id)]  # fmt: skip

    return transact(context, listing)


# -- money in -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a payment comes from: a bound method (by id), the borrower's default method
    (neither given; for staff, by hand if she has none bound), or the manual channel (cash at
    a counter, a bank transfer: staff only)."""

    method_id: int | None = None
    manual: bool = False


def pay(context: Context, loan_id: int, amount: Money, source: Source, day: date, *,
        idempotency_key: str | None = None,
        allow_overpayment: bool = False) -> PaymentTaken | Replayed:  # fmt: skip
    """A payment on any day, allocated by the product's rules; it gets a receipt. It may be up
    to what pays the plan off that day; more only when ``allow_overpayment`` is asked for by an
    admin (``policy.takes_money``: who may pay which plan, how, on which day).

    A payment that reaches the payoff amount of its day while installments are still to fall
    due pays the plan off (``withholding.pays_off``): it is booked as a full prepayment, so
    that, as the payoff quote says, no interest of a period not yet run is charged and the plan
    is settled (an approved excess is a credit balance). Allocated as an ordinary payment, the
    same money would pay the later installments' scheduled interest ahead and leave principal
    owed that the quote no longer counts."""
    _check_payment(amount)
    request = {"op": "pay", "loan": loan_id, "amount": int(amount), "day": day.isoformat(),
               "method": source.method_id, "manual": source.manual,
               "overpayment": allow_overpayment}  # fmt: skip
    allowed = _money_in_allowed(context, loan_id, source, day, allow_overpayment)

    def decide(unit: UnitOfWork) -> PaymentTaken | withholding.Wanted:
        record = _open_loan(unit, loan_id, day)
        may = allowed(unit, record.borrower_id)
        payoff = _within_payoff(unit, record, amount, day=day, may=may)
        method = _method(unit, record, source, may)
        if method is not None:
            return withholding.Wanted(Kind.PAY, amount, method, day)
        event = withholding.payment_event(record, record.next_seq, day, amount, Channel.MANUAL,
                                          payoff=payoff)  # fmt: skip
        return withholding.money_in(unit, record, event, None, caller(context, unit).name)

    return withholding.collect(context, loan_id, request, decide, key=idempotency_key,
                               guard=_paying(allowed, loan_id, day))  # fmt: skip


def prepay(context: Context, loan_id: int, amount: Money | None, *, mode: PrepayMode,
           source: Source, day: date, idempotency_key: str | None = None,
           allow_overpayment: bool = False) -> PaymentTaken | Replayed:  # fmt: skip
    """Repays early: ``amount`` None pays the whole plan off at its payoff quote; otherwise the
    amount pays what is past due and the interest to date, then repays principal (an amount that
    reaches the payoff pays the plan off). An amount beyond the payoff needs an admin's
    ``allow_overpayment``, as for ``pay``.

    A payoff quote of 0.00 for a plan still open (what was paid ahead covers it) is paid off
    with nothing to pay: the plan is settled and no channel is asked for money."""
    if amount is not None and amount <= 0:
        raise RefusedError(f"prepayment amount {amount} must be more than 0")
    request = {"op": "prepay", "loan": loan_id, "amount": None if amount is None else int(amount),
               "mode": mode.value, "day": day.isoformat(), "method": source.method_id,
               "manual": source.manual, "overpayment": allow_overpayment}  # fmt: skip
    allowed = _money_in_allowed(context, loan_id, source, day, allow_overpayment)

    def decide(unit: UnitOfWork) -> PaymentTaken | withholding.Wanted:
        record = _open_loan(unit, loan_id, day)
        may = allowed(unit, record.borrower_id)
        if mode is PrepayMode.SHORTEN_TERM and not _shortens(record.terms.method):
            raise RefusedError(
                f"a {record.terms.method} plan repays its principal at the end; "
                "prepay with --mode reduce-installment"
            )
        due = _within_payoff(unit, record, amount, day=day, may=may)
        paying = due if amount is None else amount
        method = _method(unit, record, source, may)
        if method is not None and paying > 0:
            return withholding.Wanted(Kind.PREPAY, paying, method, day, mode)
        event = Prepayment(record.next_seq, day, paying, _channel_of(method), mode, paying >= due)
        return withholding.money_in(unit, record, event, method, caller(context, unit).name)

    return withholding.collect(context, loan_id, request, decide, key=idempotency_key,
                               guard=_paying(allowed, loan_id, day))  # fmt: skip


def _check_payment(amount: Money) -> None:
    if amount <= 0:
        raise RefusedError(f"payment amount {amount} must be more than 0")


def _money_in_allowed(context: Context, loan_id: int, source: Source, day: date,
                      overpayment: bool) -> Callable[[UnitOfWork, int], MoneyIn]:  # fmt: skip
    """What the acting principal may do paying ``loan_id`` (of the borrower given), refused
    when she may not pay it at all."""

    def allowed(unit: UnitOfWork, borrower_id: int) -> MoneyIn:
        return takes_money(caller(context, unit), borrower_id, loan_id, manual=source.manual,
                           overpayment=overpayment, day=day, today=clock.today())  # fmt: skip

    return allowed


def _paying(allowed: Callable[[UnitOfWork, int], MoneyIn], loan_id: int,
            day: date) -> Callable[[UnitOfWork], MoneyIn]:  # fmt: skip
    """A guard: refuses a principal who may not pay ``loan_id`` at all, before a replay. It
    reads the loan the payment on ``day`` writes, locked, which the payment then works on."""
    return lambda unit: allowed(unit, unit.loans.get(loan_id, for_update=True,
                                                     as_of=day).borrower_id)  # fmt: skip


def _needs(context: Context, permission: Permission) -> Callable[[UnitOfWork], Principal]:
    """A guard: the acting principal, refused unless she holds ``permission``."""

    def guard(unit: UnitOfWork) -> Principal:
        who = caller(context, unit)
        require(who, permission)
        return who

    return guard


def _within_payoff(unit: UnitOfWork, record: Loan, amount: Money | None, *, day: date,
                   may: MoneyIn) -> Money:  # fmt: skip
    """The payoff amount on ``day``, once ``amount`` (None: the payoff itself) is found no more
    than the most that can be owed: what pays the plan off on ``day``, and no more than pays it
    off counting every payment already booked (a backdated payment may come after later ones).
    Beyond it, money would only sit as a credit balance to be paid out again, so it takes an
    admin's approval, which the audit log keeps with the amounts."""
    payoff = record.payoff_on(day)
    booked, most = record.booking_day(day), payoff
    if booked != day:
        most = min(most, record.payoff_on(booked))
    # Payments from her methods that a gateway still holds pay it off too, once booked.
    most = Money(max(most - unit.in_flight(record.id), 0))
    if amount is None or amount <= most:
        return payoff
    overpayment: OverpaymentApproval | None = may.overpayment
    if overpayment is None:
        refusal = OverpaymentError(
            f"{amount} is more than the {most} that pays loan {record.id} off on {day}: the "
            f"most that can be taken is {most} (more needs an admin's approval of an overpayment)"
        )
        if most == 0:  # paid ahead so far that nothing more is needed: say how she gets out
            raise OverpaymentError(
                f"{refusal}; what was paid already covers it: a full payoff settles it with "
                "nothing to pay"
            ).coded("over-payoff-covered")
        raise refusal.coded("over-payoff", amount=amount, most=most, day=day)
    unit.audit(overpayment.approver, "payment.overpayment", f"loan:{record.id}",
               "", after={"amount": str(amount), "payoff": str(most),
                                              "taken_by": overpayment.approver})  # fmt: skip
    return payoff


def _method(unit: UnitOfWork, record: Loan, source: Source,
            may: MoneyIn) -> PaymentMethod | None:  # fmt: skip
    borrower_id = record.borrower_id
    if source.manual:
        return None
    if source.method_id is None:
        # The default method, as on a due date; with none bound, money taken at a counter.
        method = unit.default_method(borrower_id)
        if method is None and not may.by_hand_if_unbound:
            raise RefusedError(f"borrower {borrower_id} has no payment method bound: bind one")
        return method
    method = unit.method(source.method_id)
    if method is None or method.borrower_id != borrower_id or method.status != "active":
        raise NotFoundError(f"no bound method {source.method_id} for borrower {borrower_id}")
    return method


def _channel_of(method: PaymentMethod | None) -> Channel:
    return Channel.MANUAL if method is None else method.channel


# -- corrections --------------------------------------------------------------------------------


def refund(context: Context, loan_id: int, amount: Money, day: date, *,
           idempotency_key: str | None = None) -> Refunded | Replayed:  # fmt: skip
    """The merchant refunds part or all of the price of returned goods
    (docs/domain.md#merchant-refunds). What the borrower paid beyond the re-priced plan goes back
    where it came from, as a credit refund does: never to a method bound since, whoever made it
    her default."""
    if amount <= 0:
        raise RefusedError(f"refund amount {amount} must be more than 0")
    opened: list[DebitRequest] = []  # the payouts' refund requests the unit committed

    def work(unit: UnitOfWork) -> Refunded:
        opened.clear()  # a unit run again on fresh state opens them anew
        record = unit.loans.get(loan_id, for_update=True)
        _check_day(record, day)
        priced = record.terms.principal - sum(
            e.amount for e in record.events if isinstance(e, Refund)
        )
        if amount > priced:
            raise RefusedError(f"refund {amount} is more than the {Money(priced)} left to refund")
        _check_refundable(record, amount, priced, day)
        credit_before = record.state_on(record.booking_day(day)).credit_balance
        event = Refund(record.next_seq, day, amount, Channel.MANUAL, to_credit=True)
        state = _book(unit, record, event, f"merchant refund of {amount}")
        payout = Money(max(state.credit_balance - credit_before, 0))
        paid_to, state = _pay_credit_back(unit, record, payout, day=day, state=state, opened=opened)
        unit.audit(caller(context, unit).name, "loan.refund", f"loan:{loan_id}", "",
                   after={"amount": str(amount), "paid_back": str(payout),
                          "paid_to": [_booked(paid) for paid in paid_to]})  # fmt: skip
        return Refunded(f"F{loan_id}-{event.seq}", loan_id, amount, payout, paid_to, day,
                        LoanSummary.of(record, state))  # fmt: skip

    request = {"op": "refund", "loan": loan_id, "amount": int(amount), "day": day.isoformat()}
    done = _once(context, f"loan:{loan_id}", idempotency_key, request, work,
                 guard=_needs(context, Permission.SERVE))  # fmt: skip
    if isinstance(done, Replayed):
        return payouts.replayed(context, done)
    return replace(done, paid_to=payouts.paid_out(context, done.paid_to, opened))


def refund_credit(context: Context, loan_id: int, amount: Money | None, day: date, *,
                  idempotency_key: str | None = None) -> CreditPaidBack | Replayed:  # fmt: skip
    """Pays the borrower's credit balance (or ``amount`` of it) back where it came from: to the
    methods that paid money in, the most recent payment first, never more to one than it paid
    in less what it already got back; money taken by hand goes back by hand. Each payee is a
    credit refund event of its own, and the answer lists them (``paid_to``)."""
    if amount is not None and amount <= 0:
        raise RefusedError(f"amount {amount} must be more than 0")
    opened: list[DebitRequest] = []  # the payouts' refund requests the unit committed

    def work(unit: UnitOfWork) -> CreditPaidBack:
        opened.clear()  # a unit run again on fresh state opens them anew
        record = unit.loans.get(loan_id, for_update=True)
        _check_day(record, day)
        before = record.state_on(record.booking_day(day))
        credit = before.credit_balance
        paying = credit if amount is None else amount
        if paying <= 0 or paying > credit:
            raise RefusedError(f"loan {loan_id} holds a credit balance of {credit} on {day}")
        paid_to, state = _pay_credit_back(
            unit, record, paying, day=day, state=before, opened=opened
        )
        unit.audit(caller(context, unit).name, "loan.refund_credit", f"loan:{loan_id}",
                   "",
                   before={"credit_balance": str(credit)},
                   after={"credit_balance": str(state.credit_balance),
                          "paid_to": [_booked(paid) for paid in paid_to]})  # fmt: skip
        return CreditPaidBack(loan_id, paying, day, paid_to, LoanSummary.of(record, state))

    request = {
        "op": "refund-credit",
        "loan": loan_id,
        "amount": None if amount is None else int(amount),
        "day": day.isoformat(),
    }
    done = _once(context, f"loan:{loan_id}", idempotency_key, request, work,
                 guard=_needs(context, Permission.PAY_OUT))  # fmt: skip
    if isinstance(done, Replayed):
        return payouts.replayed(context, done)
    return replace(done, paid_to=payouts.paid_out(context, done.paid_to, opened))


def _pay_credit_back(unit: UnitOfWork, record: Loan, paying: Money, *, day: date,
                     state: LoanState, opened: list[DebitRequest],
                     ) -> tuple[tuple[Payout, ...], LoanState]:  # fmt: skip
    """Pays ``paying`` of the credit balance back where it came from (``_payees``): a credit
    refund event and a payout for each payee, a payout to a bound method with its refund
    requests (``payouts.open_payout``, added to ``opened``) for the gateway to be asked once
    the unit has committed. Returns what went where, and the loan's state after the last of
    them (``state``, the one before, when there was nothing to pay)."""
    paid_to: list[Payout] = []
    if paying <= 0:
        return (), state
    loan_id = record.id
    for method, share in _payees(unit, record, paying, state):
        channel = _channel_of(method)
        event = CreditRefund(record.next_seq, day, share, channel,
                             None if method is None else method.id)  # fmt: skip
        state = _book(unit, record, event, f"credit balance of {share} paid back")
        payout_id = f"C{loan_id}-{event.seq}"
        if method is not None:
            opened.extend(
                payouts.open_payout(unit, loan_id, payout_id, method, amount=share, day=day)
            )
        paid_to.append(
            Payout(
                payout_id,
                channel,
                None if method is None else method.id,
                None if method is None else method.masked_account,
                share,
            )
        )
    return payouts.with_status(paid_to, opened), state


def _booked(paid: Payout) -> dict[str, Any]:
    """A payout as the audit log keeps it: where the money was booked to go (what the gateway
    said of it is the refund request's)."""
    shown = payout_document(paid)
    return {key: shown[key] for key in ("id", "channel", "method_id", "account", "amount")}


def _payees(unit: UnitOfWork, record: Loan, paying: Money,
            state: LoanState) -> list[tuple[PaymentMethod | None, Money]]:  # fmt: skip
    """Where ``paying`` goes back to (``paying_back``, with ``state`` the loan as its events
    now stand): each method (None: by hand) given at most what it paid in and still stands,
    less what already went back to it. A payment whose method is not known (one seeded
    without a receipt) goes back by hand. Refuses when what came in cannot account for
    ``paying``."""
    paid_with = {receipt.seq: None if receipt.method is None else receipt.method.id
                 for receipt in unit.loans.receipts(record.id)}  # fmt: skip
    shares, short = paying_back(record.events, state, paid_with, int(paying))
    if short > 0:
        raise RefusedError(
            f"only {Money(int(paying) - short)} of loan {record.id}'s credit balance can go "
            "back to the methods that paid it in"
        )
    return [(None if payer is None else unit.method(payer), Money(share))
            for payer, share in shares.items()]  # fmt: skip


def reverse(context: Context, payment_id: str, reason: str, day: date | None = None, *,
            confirm: bool = False, today: date | None = None,
            idempotency_key: str | None = None) -> Reversed | Replayed:  # fmt: skip
    """Takes back a mistaken payment or prepayment: the loan is replayed as if it had never been
    paid, and what that takes out of the payment's channel goes back to where it came from: the
    payment, less anything of it already paid back (a credit refund, a merchant refund's
    payout). A reversal that would undo money already paid out through another channel is
    refused: the money cannot be taken back from there.

    Its consequences are worked out as of ``today`` (or the day it is booked on, if later): a
    reversal that reopens a settled plan or makes a current one overdue is refused, with
    nothing changed, unless ``confirm`` is given. The result says what they were."""
    loan_id, seq = parse_id(payment_id, "P", "payment")
    payment_id = f"P{loan_id}-{seq}"  # the canonical id: the audit log and the key's scope
    if not plain_text("the reason", reason).strip():
        raise RefusedError("a reversal needs a reason")
    opened: list[DebitRequest] = []  # the payout's refund requests the unit committed

    def work(unit: UnitOfWork) -> Reversed:
        opened.clear()  # a unit run again on fresh state opens them anew
        record = unit.loans.get(loan_id, for_update=True)
        paid = next((e for e in record.events if e.seq == seq), None)
        if not isinstance(paid, Payment | Prepayment):
            raise NotFoundError(f"no payment {payment_id}")
        if any(isinstance(e, Reversal) and e.payment_seq == seq for e in record.events):
            raise RefusedError(f"payment {payment_id} is already reversed")
        on = max(day or record.booked_through, paid.effective)
        before = record.state_on(record.booking_day(on))
        event = Reversal(record.next_seq, on, seq, reason.strip())
        effect = _consequences(record, event, today)
        if effect.needs_confirmation and not confirm:
            what = _reaching_back(f"reversing {payment_id}", loan_id, effect)
            raise ConfirmationNeededError(what, consequences_document(effect))
        state = _book(unit, record, event, f"reversal of {payment_id}: {reason}")
        back = _paid_back_by(paid, before, state)
        receipt = unit.loans.receipt(loan_id, seq)
        method_id = None if receipt is None or receipt.method is None else receipt.method.id
        method = None if method_id is None else unit.method(method_id)
        reversal_id = f"V{loan_id}-{event.seq}"
        paid_to: tuple[Payout, ...] = ()
        if back > 0:
            if method is not None:
                opened.extend(payouts.open_payout(unit, loan_id, reversal_id, method, amount=back,
                                                  day=on, paid_by=seq))  # fmt: skip
            paid_to = payouts.with_status([Payout(
                reversal_id, paid.channel, None if method is None else method.id,
                None if method is None else method.masked_account, back,
            )], opened)  # fmt: skip
        unit.audit(caller(context, unit).name, "payment.reverse", f"loan:{loan_id}", reason,
                   before={"payment_id": payment_id, "amount": str(paid.amount),
                           "status": effect.status_before.value},
                   after={"paid_back": str(back), "status": effect.status_after.value,
                          "dpd": effect.dpd, "confirmed": effect.needs_confirmation,
                          "paid_to": [_booked(out) for out in paid_to]})  # fmt: skip
        return Reversed(reversal_id, payment_id, loan_id, paid.amount, back, reason, on, effect,
                        LoanSummary.of(record, state), paid_to)  # fmt: skip

    request = {
        "op": "reverse",
        "payment": payment_id,
        "reason": reason,
        "day": None if day is None else day.isoformat(),
    }
    done = _once(context, f"payment:{payment_id}", idempotency_key, request, work,
                 guard=_needs(context, Permission.PAY_OUT))  # fmt: skip
    if isinstance(done, Replayed):
        return payouts.replayed(context, done)
    return replace(done, paid_to=payouts.paid_out(context, done.paid_to, opened))


def _paid_back_by(paid: Payment | Prepayment, before: LoanState, after: LoanState) -> Money:
    """What a reversal sends back: how much the replay without the payment takes out of each
    channel's cash (received less paid back). Only the payment's own channel may move: if
    another moves, money the payment paid for already left through it (a credit refund or a
    merchant refund's payout by another method), and paying the payment back too would pay
    twice."""

    def net(state: LoanState, channel: Channel) -> int:
        return int(state.cash_in.get(channel, 0)) - int(state.cash_out.get(channel, 0))

    moved = {channel: net(before, channel) - net(after, channel) for channel in Channel}
    # Said in words and positive amounts: less cash kept through a channel without the payment
    # (moved < 0) is money that already went back to her through it.
    through = {Channel.MANUAL: "by hand", Channel.BANK_CARD: "to her bank card",
               Channel.ALIPAY: "to her Alipay", Channel.WECHAT: "to her WeChat Pay"}  # fmt: skip
    went = [
        f"{Money(-amount)} already went back to the borrower {through[channel]}"
        if amount < 0
        else f"{Money(amount)} more would go to the borrower {through[channel]}"
        for channel, amount in moved.items()
        if amount and channel is not paid.channel
    ]
    if went:
        raise RefusedError(
            f"this payment cannot be reversed: of the money it paid for, {' and '.join(went)} "
            "(a credit refund or a merchant refund's payout), which a reversal cannot take back"
        )
    return Money(max(moved[paid.channel], 0))


def waive(context: Context, loan_id: int, kind: WaiverKind, amount: Money, *, reason: str,
          day: date, idempotency_key: str | None = None) -> Waived | Replayed:  # fmt: skip
    """An operator forgives penalty or fee still owed, with a reason, in the audit log."""
    _check_waiver(amount, reason)

    def work(unit: UnitOfWork) -> Waived:
        record = unit.loans.get(loan_id, for_update=True)
        event, owed = _waiver(record, kind, amount, reason, day)
        state = _book(unit, record, event, f"{kind} waived: {reason}")
        unit.audit(caller(context, unit).name, f"waive.{kind}", f"loan:{loan_id}", reason,
                   before={kind.value: str(owed)},
                   after={kind.value: str(_waivable(state, kind))})  # fmt: skip
        return Waived(f"W{loan_id}-{event.seq}", loan_id, kind, amount, reason, day,
                      LoanSummary.of(record, state))  # fmt: skip

    request = {
        "op": "waive",
        "loan": loan_id,
        "what": kind.value,
        "amount": int(amount),
        "reason": reason,
        "day": day.isoformat(),
    }
    return _once(context, f"loan:{loan_id}", idempotency_key, request, work,
                 guard=lambda unit: waives(caller(context, unit), amount))  # fmt: skip


def preview_waiver(context: Context, loan_id: int, kind: WaiverKind, amount: Money, *,
                   reason: str, day: date) -> WaiverPreview:  # fmt: skip
    """What ``waive`` with these arguments would do, refused for what would refuse it (who may
    waive how much, the reason, the day, more than is owed), with nothing written: what is
    owed of ``kind`` before and after, and the plan's status and amount due after."""
    _check_waiver(amount, reason)

    def work(unit: UnitOfWork) -> WaiverPreview:
        waives(caller(context, unit), amount)
        record = unit.loans.get(loan_id)
        event, owed = _waiver(record, kind, amount, reason, day)
        effect = _consequences(record, event, None)
        return WaiverPreview(loan_id, day, kind, amount, owed, Money(owed - amount), effect)

    return transact(context, work, reading=True)


def _check_waiver(amount: Money, reason: str) -> None:
    if amount <= 0:
        raise RefusedError(f"waiver amount {amount} must be more than 0")
    if not plain_text("the reason", reason).strip():
        raise RefusedError("a waiver needs a reason")


def _waiver(record: Loan, kind: WaiverKind, amount: Money, reason: str,
            day: date) -> tuple[Waiver, Money]:  # fmt: skip
    """The waiver of ``amount`` of ``kind`` on ``day``, and what of it is owed: refused for a
    day before the plan or more than is owed."""
    _check_day(record, day)
    owed = _waivable(record.state_on(day), kind)
    if amount > owed:
        raise RefusedError(f"only {owed} of {kind} is owed on loan {record.id} on {day}")
    return Waiver(record.next_seq, day, kind, amount, reason.strip()), owed


def _consequences(record: Loan, event: Event, today: date | None) -> Consequences:
    """What ``event`` does to the loan as of today (or the day it is booked on, if later)."""
    day = record.booking_day(event.effective)
    look = day if today is None else max(day, today)
    after = replay(record.terms, record.policy, [*record.events, event], look, record.cap)
    return consequences(record.state_on(look), after)


def _reaching_back(what: str, loan_id: int, effect: Consequences) -> str:
    """The sentence that asks an operator to confirm a correction, with its consequences."""
    change = "reopens settled" if effect.reopens else "puts overdue"
    return (f"{what} {change} loan {loan_id}: as of {effect.as_of} its status goes from "
            f"{effect.status_before} to {effect.status_after}, {effect.dpd} days past due, "
            f"penalty {effect.penalty}, amount due {effect.amount_due}")  # fmt: skip


def _check_refundable(record: Loan, amount: Money, priced: int, day: date) -> None:
    """A plan partly prepaid was re-amortised: it can no longer be re-priced from its terms, so
    while it still owes principal only a refund of the whole remaining price is taken."""
    reversed_ = {e.payment_seq for e in record.events if isinstance(e, Reversal)}
    partial = [e for e in record.events
               if isinstance(e, Prepayment) and not e.full and e.seq not in reversed_]  # fmt: skip
    owing = record.state_on(record.booking_day(day)).outstanding_principal > 0
    if partial and owing and amount < priced:
        raise RefusedError(
            f"loan {record.id} was partly prepaid on {partial[-1].effective}, so it cannot be "
            f"re-priced; refund the whole remaining {Money(priced)} (a full return) instead"
        )


def _waivable(state: LoanState, kind: WaiverKind) -> Money:
    """What may be forgiven: what the state says is outstanding. For fees, that is the fees of
    installments fallen due and their late fees (滞纳金), less what was paid or forgiven; a fee
    not yet billed is not owed, so it is not forgiven (the fold forgives oldest first, so a
    waiver within this never reaches one)."""
    if kind is WaiverKind.PENALTY:
        return state.outstanding_penalty
    return state.outstanding_fee


def _once(context: Context, scope: str, key: str | None, request: dict[str, Any],
          work: Callable[[UnitOfWork], T], *,
          guard: Callable[[UnitOfWork], object]) -> T | Replayed:  # fmt: skip
    """``work`` once per idempotency key, for whoever ``guard`` lets ask; a replay is the first
    answer as it was presented."""
    return transact_once(context, scope, key, request, work, present=present, guard=guard)


# -- booking ------------------------------------------------------------------------------------


def _book(unit: UnitOfWork, record: Loan, event: Event, memo: str) -> LoanState:
    """Books ``event`` and saves the booking; returns the loan's state on the booking day."""
    booking = book(record, [event], event.effective, memo=memo, issued=stamp())
    unit.loans.save(record, booking)
    return booking.state


def _open_loan(unit: UnitOfWork, loan_id: int, day: date) -> Loan:
    """The loan a payment or prepayment on ``day`` will write, locked for the write (from its
    checkpoint, when one serves: such a write replays it to ``day`` and later days only)."""
    record = unit.loans.get(loan_id, for_update=True, as_of=day)
    _check_day(record, day)
    state = record.state_on(record.booking_day(day))
    if state.status in CLOSED:
        raise RefusedError(f"loan {loan_id} is {state.status}; nothing is owed on it").coded(
            "nothing-owed", status=state.status
        )
    return record


def _check_day(record: Loan, day: date) -> None:
    if day < record.terms.start:
        raise RefusedError(f"{day} is before loan {record.id} began on {record.terms.start}")


def parse_id(text: str, prefix: str, what: str) -> tuple[int, int]:
    """``P12-3`` → loan 12, event 3: the id names its loan, so finding it reads one shard. A
    payment and its receipt share the numbers, so either prefix (or none) finds either. Only
    ASCII digits: the id is stored and logged as ``P12-3``, whatever way it was typed."""
    found = _EVENT_ID.fullmatch(text.strip())
    if found is None or max(int(found[1]), int(found[2])) > MAX_ID:
        raise NotFoundError(f"{plain_text('the id', text)!r} is not a {what} id; they look like "
                            f"{prefix}12-3")  # fmt: skip
    return int(found[1]), int(found[2])


def loan_history(context: Context, loan_id: int) -> LoanHistory:
    """A loan's events and its journal entries with their lines, oldest first: what an operator
    reads to see what happened and how it was booked."""

    def history(unit: UnitOfWork) -> LoanHistory:
        require(caller(context, unit), Permission.READ)  # staff only: a borrower reads her bills
        unit.loans.borrower_of(loan_id)  # refuses an unknown loan
        return LoanHistory(loan_id, unit.loans.history(loan_id))

    return transact(context, history)
