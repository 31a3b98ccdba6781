"""The JSON API: every operation of the CLI, over the same services. A route checks who may
call it, parses nothing the services do not, calls one service and returns its document."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import Field

from fenqi import settings
from fenqi.api import models, problems, responses
from fenqi.api.bodies import StrictJsonRoute
from fenqi.api.responses import answers
from fenqi.api.security import Caller, base_context, client_address, context_for
from fenqi.clock import today
from fenqi.domain.events import PrepayMode, WaiverKind
from fenqi.domain.money import AMOUNT_AT_MOST, Money
from fenqi.services import (
    access,
    audit,
    books,
    borrowers,
    products,
    quoting,
    servicing,
    sms,
)
from fenqi.services import close_of_business as cob
from fenqi.services.access import OverpaymentApproval, Permission, Principal
from fenqi.services.context import Context, Document, Replayed
from fenqi.services.days import booking_day
from fenqi.services.errors import NotFoundError
from fenqi.services.quoting import FieldError
from fenqi.wire import document, documents

router = APIRouter(prefix="/api", responses=problems.RESPONSES, route_class=StrictJsonRoute)
IdempotencyKey = Annotated[
    str,
    Header(alias="Idempotency-Key", min_length=1, max_length=200,
           description="The same key and request replay the first response; never twice."),
]  # fmt: skip
AsOf = Annotated[models.Day | None, Query(description="The day to show (default: today).")]
EventId = Annotated[str, Field(pattern=r"^[PRpr]?[0-9]{1,10}-[0-9]{1,10}$")]
REPLAYED = "Idempotent-Replayed"


def _today(day: date | None) -> date:
    return day if day is not None else today()


def _booked(day: date | None) -> date:
    """The day staff book on: the one they gave (within the booking window), else today."""
    return booking_day(day, today(), settings.backdate_days())


def _paid_on(who: Principal, day: date | None) -> date:
    """Staff may book money on the day it arrived; a borrower pays today, never back-dated."""
    if who.is_borrower and day not in (None, today()):
        raise FieldError("date", f"a borrower pays on the day itself ({today()}); leave date out")
    return _booked(day)


def _money(field: str, text: str) -> Money:
    try:
        return Money.parse(text, at_most=AMOUNT_AT_MOST)
    except ValueError as error:
        raise FieldError(field, str(error)) from None


def _overpayment(who: Principal, allowed: bool) -> OverpaymentApproval | None:
    """The caller's approval of an overpayment when asked for: admins only (403 otherwise)."""
    return access.approve_overpayment(who) if allowed else None


def _replayed(response: Response, answer: object) -> Document:
    """The answer's document, saying in a header when an idempotent request got its first
    response again."""
    response.headers[REPLAYED] = "true" if isinstance(answer, Replayed) else "false"
    return document(answer)


_NO_SIMULATION = (
    "a simulated balance is set only by staff, when the service runs in "
    "simulation mode (fenqi serve --simulate)"
)


def _simulating(request: Request) -> bool:
    """Whether this service runs in simulation mode (``fenqi serve --simulate``)."""
    return bool(request.app.state.simulation)


def _loan(request: Request, who: Principal, loan_id: int) -> Context:
    """The context for acting on a loan the caller may see: a borrower's own, or any for staff."""
    context = context_for(request, who)
    who.owns(servicing.loan_owner(context, loan_id), f"loan {loan_id}")
    return context


# -- sign-in --------------------------------------------------------------------------------------


@router.post("/auth/code", tags=["sign-in"], **answers(responses.CodeSent))
def send_code(request: Request, body: models.CodeIn) -> Document:
    """Texts a one-time sign-in code to a borrower's phone. The answer is the same for any
    phone; too many requests from one address are refused (429, ``Retry-After``)."""
    return access.send_sign_in_code(base_context(request), body.phone, client_address(request))


@router.post("/auth/session", tags=["sign-in"], **answers(responses.Session))
def borrower_session(request: Request, body: models.SignInIn) -> Document:
    """A borrower's session token for a valid code (send it as ``Authorization: Bearer``). A
    code allows 5 tries; then, and after too many wrong ones from one address, 429."""
    token, csrf = access.sign_in_borrower(base_context(request), body.phone, body.code,
                                          client_address(request))  # fmt: skip
    return {"token": token, "csrf": csrf}


@router.post("/auth/login", tags=["sign-in"], **answers(responses.Session))
def operator_session(request: Request, body: models.LoginIn) -> Document:
    """An operator's session token for a user name and password. After 10 wrong passwords for a
    name in 15 minutes, or too many from one address, 429 (the same for a name nobody has)."""
    token, csrf = access.sign_in_operator(base_context(request), body.username, body.password,
                                          client_address(request))  # fmt: skip
    return {"token": token, "csrf": csrf}


@router.get("/me", tags=["sign-in"], **answers(responses.Me))
def me(who: Caller) -> Document:
    return {"name": who.name, "role": who.role, "borrower_id": who.borrower_id}


# -- products and quotes --------------------------------------------------------------------------


@router.get("/products", tags=["products"], **answers(list[responses.Product]))
def list_products(request: Request, who: Caller) -> list[Document]:
    return documents(products.list_products(context_for(request, who)))


@router.post("/products", tags=["products"], **answers(list[responses.Product]))
def load_products(request: Request, who: Caller, body: models.CatalogIn) -> list[Document]:
    """Adds or replaces the products of a TOML catalog (admins)."""
    who.need(Permission.ADMINISTER)
    return documents(products.load_catalog(context_for(request, who), body.toml, "request"))


@router.post("/quotes", tags=["products"], **answers(responses.Quote))
def quote(who: Caller, body: models.QuoteIn) -> Document:
    """A plan's schedule, total cost and APR, before any checkout."""
    del who  # anyone signed in may ask what a plan costs
    fields = body.model_dump(exclude={"start"})
    texts = {name: None if value is None else str(value) for name, value in fields.items()}
    plan = quoting.PlanRequest(start=_today(body.start), **texts)  # type: ignore[arg-type]
    return document(quoting.quote_request(plan))


# -- borrowers and methods ------------------------------------------------------------------------


@router.post("/borrowers", tags=["borrowers"], **answers(responses.Borrower, 201))
def create_borrower(request: Request, who: Caller, body: models.BorrowerIn) -> Document:
    who.need(Permission.SERVE)
    limit = _money("credit_limit", body.credit_limit)
    return borrowers.create_borrower(context_for(request, who), body.name, body.phone, limit)


@router.get("/borrowers", tags=["borrowers"], **answers(list[responses.Borrower]))
def find_borrowers(
    request: Request, who: Caller, q: Annotated[str, Query(min_length=1, max_length=100)]
) -> list[Document]:
    """Borrowers by phone, name, order id or loan id (staff)."""
    who.need(Permission.READ)
    return borrowers.find_borrowers(context_for(request, who), q)


@router.get("/borrowers/{borrower_id}", tags=["borrowers"], **answers(responses.Borrower))
def show_borrower(request: Request, who: Caller, borrower_id: models.Id) -> Document:
    who.owns(borrower_id, f"borrower {borrower_id}")
    return borrowers.show_borrower(context_for(request, who), borrower_id)


@router.get(
    "/borrowers/{borrower_id}/loans", tags=["loans"], **answers(list[responses.LoanSummary])
)
def list_loans(request: Request, who: Caller, borrower_id: models.Id,
               as_of: AsOf = None) -> list[Document]:  # fmt: skip
    who.owns(borrower_id, f"borrower {borrower_id}")
    return documents(servicing.list_loans(context_for(request, who), borrower_id, _today(as_of)))


@router.post(
    "/borrowers/{borrower_id}/methods", tags=["borrowers"], **answers(responses.MethodChanged, 201)
)
def bind_method(request: Request, who: Caller, borrower_id: models.Id,
                body: models.MethodIn) -> Document:  # fmt: skip
    """Binds a method; staff in simulation mode may give it a simulated balance."""
    if not who.is_borrower:
        who.need(Permission.SERVE)
    who.owns(borrower_id, f"borrower {borrower_id}")
    balance = None
    if body.sim_balance is not None:
        if not (_simulating(request) and who.may(Permission.SIMULATE)):
            raise FieldError("sim_balance", _NO_SIMULATION)
        balance = _money("sim_balance", body.sim_balance)
    return borrowers.bind_method(context_for(request, who), borrower_id, body.kind, body.account,
                                 default=body.default, sim_balance=balance)  # fmt: skip


def _method(request: Request, who: Principal, method_id: int) -> Context:
    """The context for changing a method: a borrower's own, or any for agents and admins."""
    if not who.is_borrower:
        who.need(Permission.SERVE)
    context = context_for(request, who)
    who.owns(borrowers.method_owner(context, method_id), f"method {method_id}")
    return context


@router.post("/methods/{method_id}/default", tags=["borrowers"], **answers(responses.MethodChanged))
def default_method(request: Request, who: Caller, method_id: models.Id) -> Document:
    return borrowers.set_default_method(_method(request, who, method_id), method_id)


@router.delete("/methods/{method_id}", tags=["borrowers"], **answers(responses.MethodChanged))
def unbind_method(request: Request, who: Caller, method_id: models.Id) -> Document:
    return borrowers.unbind_method(_method(request, who, method_id), method_id)


@router.put(
    "/methods/{method_id}/sim-balance", tags=["borrowers"], **answers(responses.MethodChanged)
)
def fund_method(
    request: Request, who: Caller, method_id: models.Id, body: models.FundIn
) -> Document:
    """Sets the payment simulator's balance for a method (staff, in simulation mode only: a
    service not started with ``--simulate`` has no such thing, 404)."""
    if not _simulating(request):
        raise NotFoundError("the service does not run in simulation mode: no simulated balances")
    who.need(Permission.SIMULATE)
    balance = _money("sim_balance", body.sim_balance)
    return borrowers.fund_method(context_for(request, who), method_id, balance)


# -- checkout and loans ---------------------------------------------------------------------------


@router.post("/checkout/quote", tags=["loans"], **answers(responses.Quote))
def checkout_quote(who: Caller, body: models.CheckoutIn) -> Document:
    """The offer a checkout would make (its full cost and APR), to show before consent."""
    who.need(Permission.SERVE)
    periods = None if body.periods is None else str(body.periods)
    plan = quoting.PlanRequest(principal=body.amount, start=_today(body.date),
                               product=body.product, periods=periods)  # fmt: skip
    return document(quoting.quote_request(plan))


@router.post("/checkout", tags=["loans"], **answers(responses.Loan, 201))
def checkout(request: Request, response: Response, who: Caller, body: models.CheckoutIn,
             key: IdempotencyKey) -> Document:  # fmt: skip
    """An order becomes a plan: consent recorded with its cost and APR, the merchant owed."""
    who.need(Permission.SERVE)
    order = servicing.Order(body.borrower_id, body.order_id, body.merchant,
                            _money("amount", body.amount), body.product, body.periods,
                            _booked(body.date), body.item)  # fmt: skip
    made = servicing.checkout(context_for(request, who), order, idempotency_key=key)
    return _replayed(response, made)


@router.get("/loans/{loan_id}", tags=["loans"], **answers(responses.Loan))
def show_loan(request: Request, who: Caller, loan_id: models.Id, as_of: AsOf = None) -> Document:
    return document(servicing.show_loan(_loan(request, who, loan_id), loan_id, _today(as_of)))


@router.get("/loans/{loan_id}/history", tags=["loans"], **answers(responses.History))
def loan_history(request: Request, who: Caller, loan_id: models.Id) -> Document:
    """The loan's events and journal entries (staff)."""
    who.need(Permission.READ)
    return document(servicing.loan_history(context_for(request, who), loan_id))


@router.get("/loans/{loan_id}/payoff-quote", tags=["payments"], **answers(responses.Payoff))
def payoff_quote(request: Request, who: Caller, loan_id: models.Id,
                 on: Annotated[models.Day | None, Query(alias="date")] = None
                 ) -> Document:  # fmt: skip
    return document(servicing.quote_payoff(_loan(request, who, loan_id), loan_id, _today(on)))


def _source(who: Principal, method_id: int | None, channel: str | None) -> servicing.Source:
    if channel is not None and who.is_borrower:
        who.need(Permission.TAKE_PAYMENT)  # only staff take money by hand
    return servicing.Source(
        method_id=method_id, manual=channel == "manual", by_hand_if_unbound=not who.is_borrower
    )


@router.post("/loans/{loan_id}/payments", tags=["payments"], **answers(responses.PaymentTaken, 201))
def pay(request: Request, response: Response, who: Caller, loan_id: models.Id,
        body: models.PaymentIn, key: IdempotencyKey) -> Document:  # fmt: skip
    """Takes a payment: up to what pays the plan off that day, more with ``allow_overpayment``
    (admins only)."""
    if not who.is_borrower:
        who.need(Permission.TAKE_PAYMENT)
    approval = _overpayment(who, body.allow_overpayment)
    context = _loan(request, who, loan_id)
    paid = servicing.pay(context, loan_id, _money("amount", body.amount),
                         _source(who, body.method_id, body.channel), _paid_on(who, body.date),
                         idempotency_key=key, overpayment=approval)  # fmt: skip
    return _replayed(response, paid)


@router.post(
    "/loans/{loan_id}/prepayments", tags=["payments"], **answers(responses.PaymentTaken, 201)
)
def prepay(request: Request, response: Response, who: Caller, loan_id: models.Id,
           body: models.PrepaymentIn, key: IdempotencyKey) -> Document:  # fmt: skip
    if not who.is_borrower:
        who.need(Permission.TAKE_PAYMENT)
    approval = _overpayment(who, body.allow_overpayment)
    if body.full == (body.amount is not None):
        raise FieldError("amount", "give an amount, or full: true to pay the whole plan off")
    amount = None if body.amount is None else _money("amount", body.amount)
    paid = servicing.prepay(_loan(request, who, loan_id), loan_id, amount,
                            mode=PrepayMode(body.mode),
                            source=_source(who, body.method_id, body.channel),
                            day=_paid_on(who, body.date), idempotency_key=key,
                            overpayment=approval)  # fmt: skip
    return _replayed(response, paid)


@router.post("/loans/{loan_id}/refunds", tags=["corrections"], **answers(responses.Refunded, 201))
def refund(request: Request, response: Response, who: Caller, loan_id: models.Id,
           body: models.RefundIn, key: IdempotencyKey) -> Document:  # fmt: skip
    """A merchant's refund for returned goods (staff)."""
    who.need(Permission.SERVE)
    done = servicing.refund(context_for(request, who), loan_id, _money("amount", body.amount),
                            _booked(body.date), idempotency_key=key)  # fmt: skip
    return _replayed(response, done)


@router.post(
    "/loans/{loan_id}/credit-refunds",
    tags=["corrections"],
    **answers(responses.CreditPaidBack, 201),
)
def refund_credit(request: Request, response: Response, who: Caller, loan_id: models.Id,
                  body: models.CreditRefundIn, key: IdempotencyKey) -> Document:  # fmt: skip
    """Pays a credit balance back where it came from (admins): the answer's ``paid_to`` lists
    each method or channel and its amount."""
    who.need(Permission.PAY_OUT)
    amount = None if body.amount is None else _money("amount", body.amount)
    done = servicing.refund_credit(context_for(request, who), loan_id, amount, _booked(body.date),
                                   idempotency_key=key)  # fmt: skip
    return _replayed(response, done)


@router.post(
    "/payments/{payment_id}/reversal", tags=["corrections"], **answers(responses.Reversed, 201)
)
def reverse(request: Request, response: Response, who: Caller,
            payment_id: EventId, body: models.ReversalIn,
            key: IdempotencyKey) -> Document:  # fmt: skip
    """Takes back a mistaken payment (admins): its money goes back. One that reopens a settled
    plan or makes a current one overdue is a 409 (`confirmation-needed`, with its
    `consequences`) unless the body says `"confirm": true`."""
    who.need(Permission.PAY_OUT)
    done = servicing.reverse(context_for(request, who), payment_id, body.reason,
                             _booked(body.date), confirm=body.confirm, today=today(),
                             idempotency_key=key)  # fmt: skip
    return _replayed(response, done)


@router.post("/loans/{loan_id}/waivers", tags=["corrections"], **answers(responses.Waived, 201))
def waive(request: Request, response: Response, who: Caller, loan_id: models.Id,
          body: models.WaiverIn, key: IdempotencyKey) -> Document:  # fmt: skip
    """Forgives penalty or fee with a reason: agents up to their limit, admins any amount."""
    amount = _money("amount", body.amount)
    who.may_waive(amount)
    context, what = context_for(request, who), WaiverKind(body.what)
    done = servicing.waive(context, loan_id, what, amount, reason=body.reason,
                           day=_booked(body.date), idempotency_key=key)  # fmt: skip
    return _replayed(response, done)


@router.get(
    "/loans/{loan_id}/receipts", tags=["payments"], **answers(list[responses.ListedReceipt])
)
def list_receipts(request: Request, who: Caller, loan_id: models.Id) -> list[Document]:
    """The plan's receipts, oldest first, each saying whether its payment was reversed."""
    return documents(servicing.list_receipts(_loan(request, who, loan_id), loan_id))


@router.get("/receipts/{receipt_id}", tags=["payments"], **answers(responses.Receipt))
def show_receipt(request: Request, who: Caller, receipt_id: EventId) -> Document:
    loan_id, _ = servicing.parse_id(receipt_id, "R", "receipt")
    return document(servicing.show_receipt(_loan(request, who, loan_id), receipt_id))


# -- books, batch, messages, audit ---------------------------------------------------------------


@router.get("/ledger/trial-balance", tags=["books"], **answers(responses.TrialBalance))
def trial_balance(request: Request, who: Caller) -> Document:
    who.need(Permission.READ)
    return document(books.trial_balance(context_for(request, who)))


@router.get("/ledger/check", tags=["books"], **answers(responses.BookCheck))
def check_books(request: Request, who: Caller) -> Document:
    who.need(Permission.READ)
    return document(books.check_books(context_for(request, who)))


@router.get("/cob/runs", tags=["batch"], **answers(list[responses.CobRun]))
def cob_runs(request: Request, who: Caller) -> list[Document]:
    who.need(Permission.READ)
    return cob.runs(context_for(request, who))


@router.get("/cob/runs/{run_id}", tags=["batch"], **answers(responses.CobRunReport))
def cob_run(request: Request, who: Caller, run_id: models.Id) -> Document:
    who.need(Permission.READ)
    return cob.run_report(context_for(request, who), run_id)


@router.post(
    "/cob",
    tags=["batch"],
    status_code=201,
    response_model=None,
    responses={
        201: {"model": responses.CobClosed, "description": "The day closed"},
        200: {
            "model": responses.CobClosed,
            "description": "Nothing to close on that day: no run was recorded",
        },
        500: {**problems.RESPONSES[422], "description": "The run failed (batch-failed)"},
    },
)
def close_day(request: Request, response: Response, who: Caller, body: models.CobIn) -> Document:
    """Closes a business day in this process (admins; the nightly job uses ``fenqi cob``),
    catching up first the days on which loans are behind (listed in ``caught_up``). A day after
    today is refused; a day with nothing to close is a 200 and records no run; a run whose
    chunks failed is a 500 problem naming the run and the error."""
    who.need(Permission.ADMINISTER)
    closed = cob.close(context_for(request, who), body.date)
    if closed["status"] == "failed":
        raise cob.RunFailedError(closed)
    if all(document["id"] is None for document in [closed, *closed["caught_up"]]):
        response.status_code = 200
    return closed


@router.get("/reports/aging", tags=["batch"], **answers(responses.Aging))
def aging(request: Request, who: Caller,
          on: Annotated[models.Day | None, Query(alias="date")] = None) -> Document:  # fmt: skip
    who.need(Permission.READ)
    return cob.aging(context_for(request, who), _today(on))


@router.get("/sms/outbox", tags=["batch"], **answers(list[responses.SmsMessage]))
def outbox(request: Request, who: Caller,
           status: Annotated[str | None, Query(pattern="^(pending|sent|expired)$")] = None
           ) -> list[Document]:  # fmt: skip
    who.need(Permission.READ)
    return sms.outbox(context_for(request, who), status)


@router.get("/audit", tags=["audit"], **answers(list[responses.AuditEntry]))
def audit_log(
    request: Request, who: Caller, target: Annotated[str | None, Query(max_length=100)] = None
) -> list[Document]:
    """Who did what, when, to what, why, before and after (admins)."""
    who.need(Permission.ADMINISTER)
    return documents(audit.audit_log(context_for(request, who), target))
