"""The JSON API: every operation of the CLI, over the same services. A route parses what the
services do not, calls one service with the caller's context and returns its document; who may
do what is the services' to decide (``services/policy.py``)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from fenqi import settings
from fenqi.api import models, responses
from fenqi.api.bodies import StrictJsonRoute
from fenqi.api.responses import answers
from fenqi.clock import today
from fenqi.domain.events import PrepayMode, WaiverKind
from fenqi.domain.money import AMOUNT_AT_MOST, Money
from fenqi.http import problems
from fenqi.http.fields import Day, Id
from fenqi.http.security import Caller, base_context, client_address
from fenqi.services import (
    audit,
    books,
    borrowers,
    credentials,
    products,
    quoting,
    servicing,
    sms,
)
from fenqi.services import close_of_business as cob
from fenqi.services.context import Document, Replayed, authenticated
from fenqi.services.days import booking_day
from fenqi.services.errors import NotFoundError
from fenqi.services.policy import NO_SIMULATION
from fenqi.services.quoting import FieldError
from fenqi.services.views import LoanView
from fenqi.wire import document, documents

router = APIRouter(prefix="/api", responses=problems.RESPONSES, route_class=StrictJsonRoute)
IdempotencyKey = Annotated[
    str,
    Header(alias="Idempotency-Key", min_length=1, max_length=200,
           description="The same key and request replay the first response; never twice."),
]  # fmt: skip
AsOf = Annotated[Day | None, Query(description="The day to show (default: today).")]
EventId = Annotated[str, Field(pattern=r"^[PRpr]?[0-9]{1,10}-[0-9]{1,10}$")]
REPLAYED = "Idempotent-Replayed"


def _today(day: date | None) -> date:
    return day if day is not None else today()


def _booked(day: date | None) -> date:
    """The day staff book on: the one they gave (within the booking window), else today."""
    return booking_day(day, today(), settings.backdate_days())


def _money(field: str, text: str) -> Money:
    try:
        return Money.parse(text, at_most=AMOUNT_AT_MOST)
    except ValueError as error:
        raise FieldError(field, str(error)) from None


def _replayed(response: Response, answer: object) -> Document:
    """The answer's document, saying in a header when an idempotent request got its first
    response again."""
    response.headers[REPLAYED] = "true" if isinstance(answer, Replayed) else "false"
    return document(answer)


def _simulating(request: Request) -> bool:
    """Whether this service runs in simulation mode (``fenqi serve --simulate``)."""
    return bool(request.app.state.simulation)


# -- sign-in --------------------------------------------------------------------------------------


@router.post("/auth/code", tags=["sign-in"], **answers(responses.CodeSent))
def send_code(request: Request, body: models.CodeIn) -> Document:
    """Texts a one-time sign-in code to a borrower's phone. The answer is the same for any
    phone; too many requests from one address are refused (429, ``Retry-After``)."""
    sent = credentials.send_sign_in_code(base_context(request), body.phone, client_address(request))
    return document(sent)


@router.post("/auth/session", tags=["sign-in"], **answers(responses.Session))
def borrower_session(request: Request, body: models.SignInIn) -> Document:
    """A borrower's session token for a valid code (send it as ``Authorization: Bearer``). A
    code allows 5 tries; then, and after too many wrong ones from one address, 429."""
    token, csrf = credentials.sign_in_borrower(base_context(request), body.phone, body.code,
                                               client_address(request))  # fmt: skip
    return {"token": token, "csrf": csrf}


@router.post("/auth/login", tags=["sign-in"], **answers(responses.Session))
def operator_session(request: Request, body: models.LoginIn) -> Document:
    """An operator's session token for a user name and password. After 10 wrong passwords for a
    name in 15 minutes, or too many from one address, 429 (the same for a name nobody has)."""
    token, csrf = credentials.sign_in_operator(base_context(request), body.username,
                                               body.password, client_address(request))  # fmt: skip
    return {"token": token, "csrf": csrf}


@router.get("/me", tags=["sign-in"], **answers(responses.Me))
def me(context: Caller) -> Document:
    who = authenticated(context)
    return {"name": who.name, "role": who.role, "borrower_id": who.borrower_id}


# -- products and quotes --------------------------------------------------------------------------


@router.get("/products", tags=["products"], **answers(list[responses.Product]))
def list_products(context: Caller) -> list[Document]:
    return documents(products.list_products(context))


@router.post("/products", tags=["products"], **answers(list[responses.Product]))
def load_products(context: Caller, body: models.CatalogIn) -> list[Document]:
    """Adds or replaces the products of a TOML catalog (admins)."""
    return documents(products.load_catalog(context, body.toml, "request"))


@router.post("/quotes", tags=["products"], **answers(responses.Quote))
def quote(context: Caller, body: models.QuoteIn) -> Document:
    """A plan's schedule, total cost and APR, before any checkout."""
    fields = body.model_dump(exclude={"start"})
    texts = {name: None if value is None else str(value) for name, value in fields.items()}
    plan = quoting.PlanRequest(start=_today(body.start), **texts)  # type: ignore[arg-type]
    return document(servicing.quote_plan(context, plan))


# -- borrowers and methods ------------------------------------------------------------------------


@router.post("/borrowers", tags=["borrowers"], **answers(responses.Borrower, 201))
def create_borrower(context: Caller, body: models.BorrowerIn) -> Document:
    limit = _money("credit_limit", body.credit_limit)
    return document(borrowers.create_borrower(context, body.name, body.phone, limit))


@router.get("/borrowers", tags=["borrowers"], **answers(list[responses.Borrower]))
def find_borrowers(
    context: Caller, q: Annotated[str, Query(min_length=1, max_length=100)]
) -> list[Document]:
    """Borrowers by phone, name, order id or loan id (staff)."""
    return documents(borrowers.find_borrowers(context, q))


@router.get("/borrowers/{borrower_id}", tags=["borrowers"], **answers(responses.Borrower))
def show_borrower(context: Caller, borrower_id: Id) -> Document:
    return document(borrowers.show_borrower(context, borrower_id))


@router.get(
    "/borrowers/{borrower_id}/loans", tags=["loans"], **answers(list[responses.LoanSummary])
)
def list_loans(context: Caller, borrower_id: Id, as_of: AsOf = None) -> list[Document]:
    return documents(servicing.list_loans(context, borrower_id, _today(as_of)))


@router.get("/borrowers/{borrower_id}/overview", tags=["loans"], **answers(responses.Overview))
def overview(context: Caller, borrower_id: Id, as_of: AsOf = None) -> Document:
    """Her plans and what she has to repay across them: her limit and what is available, due
    within the week, this month and in all, every installment still owed by due date."""
    return document(servicing.overview(context, borrower_id, _today(as_of)))


@router.get(
    "/borrowers/{borrower_id}/messages", tags=["borrowers"], **answers(list[responses.SmsMessage])
)
def messages_to(context: Caller, borrower_id: Id, as_of: AsOf = None) -> list[Document]:
    """What fenqi wrote to her (reminders, bills due and overdue), the latest first, each with
    what became of its text; never a sign-in code. To herself, or to staff."""
    return documents(sms.messages_to(context, borrower_id, _today(as_of)))


@router.post(
    "/borrowers/{borrower_id}/methods", tags=["borrowers"], **answers(responses.MethodChanged, 201)
)
def bind_method(request: Request, context: Caller, borrower_id: Id,
                body: models.MethodIn) -> Document:  # fmt: skip
    """Binds a method; staff in simulation mode may give it a simulated balance."""
    balance = None
    if body.sim_balance is not None:
        if not _simulating(request):
            raise FieldError("sim_balance", NO_SIMULATION)
        balance = _money("sim_balance", body.sim_balance)
    return document(borrowers.bind_method(context, borrower_id, body.kind, body.account,
                                          default=body.default, sim_balance=balance))  # fmt: skip


@router.post("/methods/{method_id}/default", tags=["borrowers"], **answers(responses.MethodChanged))
def default_method(context: Caller, method_id: Id) -> Document:
    return document(borrowers.set_default_method(context, method_id))


@router.delete("/methods/{method_id}", tags=["borrowers"], **answers(responses.MethodChanged))
def unbind_method(context: Caller, method_id: Id) -> Document:
    return document(borrowers.unbind_method(context, method_id))


@router.put(
    "/methods/{method_id}/sim-balance", tags=["borrowers"], **answers(responses.MethodChanged)
)
def fund_method(request: Request, context: Caller, method_id: Id, body: models.FundIn) -> Document:
    """Sets the payment simulator's balance for a method (staff, in simulation mode only: a
    service not started with ``--simulate`` has no such thing, 404)."""
    if not _simulating(request):
        raise NotFoundError("the service does not run in simulation mode: no simulated balances")
    balance = _money("sim_balance", body.sim_balance)
    return document(borrowers.fund_method(context, method_id, balance))


# -- checkout and loans ---------------------------------------------------------------------------


@router.post("/checkout/quote", tags=["loans"], **answers(responses.Quote))
def checkout_quote(context: Caller, body: models.CheckoutIn) -> Document:
    """The offer a checkout would make (its full cost and APR), to show before consent."""
    periods = None if body.periods is None else str(body.periods)
    plan = quoting.PlanRequest(principal=body.amount, start=_today(body.date),
                               product=body.product, periods=periods)  # fmt: skip
    return document(servicing.checkout_quote(context, plan))


@router.post("/checkout", tags=["loans"], **answers(responses.Loan, 201))
def checkout(response: Response, context: Caller, body: models.CheckoutIn,
             key: IdempotencyKey) -> Document:  # fmt: skip
    """An order becomes a plan: consent recorded with its cost and APR, the merchant owed."""
    order = servicing.Order(body.borrower_id, body.order_id, body.merchant,
                            _money("amount", body.amount), body.product, body.periods,
                            _booked(body.date), body.item)  # fmt: skip
    return _replayed(response, servicing.checkout(context, order, idempotency_key=key))


@router.get("/loans/{loan_id}", tags=["loans"], **answers(responses.Loan))
async def show_loan(context: Caller, loan_id: Id, as_of: AsOf = None) -> Response:
    """The plan on a day (default: today), every installment with what it owes that day. The
    service keeps the answer it wrote for the plan's version and the day, so that opening the
    same bill again does not work it out again: that answer is looked up from the event loop,
    and only a bill not kept is worked out in the thread pool."""
    day = _today(as_of)
    body = await servicing.kept_view(context, loan_id, day, _loan_json)
    if body is None:
        body = await run_in_threadpool(servicing.view_loan, context, loan_id, day, _loan_json)
    return Response(body, media_type="application/json")


def _loan_json(view: LoanView) -> bytes:
    """A plan's document, written out byte for byte as FastAPI writes the other answers
    (``JSONResponse``)."""
    shown = document(view)
    return json.dumps(shown, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@router.get("/loans/{loan_id}/history", tags=["loans"], **answers(responses.History))
def loan_history(context: Caller, loan_id: Id) -> Document:
    """The loan's events and journal entries (staff)."""
    return document(servicing.loan_history(context, loan_id))


@router.get("/loans/{loan_id}/payoff-quote", tags=["payments"], **answers(responses.Payoff))
def payoff_quote(context: Caller, loan_id: Id,
                 on: Annotated[Day | None, Query(alias="date")] = None
                 ) -> Document:  # fmt: skip
    return document(servicing.quote_payoff(context, loan_id, _today(on)))


@router.get(
    "/loans/{loan_id}/payment-preview", tags=["payments"], **answers(responses.PaymentPreview)
)
def payment_preview(
    context: Caller,
    loan_id: Id,
    amount: Annotated[str, Query(max_length=30, examples=["888.49"])],
    method_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    channel: Annotated[Literal["manual"] | None, Query()] = None,
    on: Annotated[Day | None, Query(alias="date")] = None,
) -> Document:
    """What a payment would do before it is taken, refused for what would refuse it: where the
    money goes and the plan after it. Nothing is booked and no gateway is asked."""
    return document(servicing.preview_payment(context, loan_id, _money("amount", amount),
                                              _source(method_id, channel), _today(on)))  # fmt: skip


@router.get(
    "/loans/{loan_id}/prepayment-preview", tags=["payments"],
    **answers(responses.PrepaymentPreview),
)  # fmt: skip
def prepayment_preview(
    context: Caller,
    loan_id: Id,
    amount: Annotated[str, Query(max_length=30, examples=["1000.00"])],
    on: Annotated[Day | None, Query(alias="date")] = None,
) -> Document:
    """What prepaying ``amount`` would do, in each mode the plan allows: where the money goes,
    the next installment, how many are left and what is saved. Nothing is booked."""
    return document(servicing.preview_prepayment(context, loan_id, _money("amount", amount),
                                                 _today(on)))  # fmt: skip


@router.get("/loans/{loan_id}/explained", tags=["loans"], **answers(responses.PlanExplained))
def explain_plan(context: Caller, loan_id: Id, as_of: AsOf = None) -> Document:
    """The plan's cost and what being late would cost, in its own numbers: what the borrower's
    explanation page says in words."""
    return document(servicing.explain_plan(context, loan_id, _today(as_of)))


def _source(method_id: int | None, channel: str | None) -> servicing.Source:
    return servicing.Source(method_id=method_id, manual=channel == "manual")


@router.post("/loans/{loan_id}/payments", tags=["payments"], **answers(responses.PaymentTaken, 201))
def pay(response: Response, context: Caller, loan_id: Id,
        body: models.PaymentIn, key: IdempotencyKey) -> Document:  # fmt: skip
    """Takes a payment: up to what pays the plan off that day, more with ``allow_overpayment``
    (admins only). A borrower pays her own plan, from her own methods, on the day itself."""
    paid = servicing.pay(context, loan_id, _money("amount", body.amount),
                         _source(body.method_id, body.channel), _booked(body.date),
                         idempotency_key=key, allow_overpayment=body.allow_overpayment)  # fmt: skip
    return _replayed(response, paid)


@router.post(
    "/loans/{loan_id}/prepayments", tags=["payments"], **answers(responses.PaymentTaken, 201)
)
def prepay(response: Response, context: Caller, loan_id: Id,
           body: models.PrepaymentIn, key: IdempotencyKey) -> Document:  # fmt: skip
    if body.full == (body.amount is not None):
        raise FieldError("amount", "give an amount, or full: true to pay the whole plan off")
    amount = None if body.amount is None else _money("amount", body.amount)
    paid = servicing.prepay(context, loan_id, amount, mode=PrepayMode(body.mode),
                            source=_source(body.method_id, body.channel),
                            day=_booked(body.date), idempotency_key=key,
                            allow_overpayment=body.allow_overpayment)  # fmt: skip
    return _replayed(response, paid)


@router.post("/loans/{loan_id}/refunds", tags=["corrections"], **answers(responses.Refunded, 201))
def refund(response: Response, context: Caller, loan_id: Id,
           body: models.RefundIn, key: IdempotencyKey) -> Document:  # fmt: skip
    """A merchant's refund for returned goods (staff)."""
    done = servicing.refund(context, loan_id, _money("amount", body.amount), _booked(body.date),
                            idempotency_key=key)  # fmt: skip
    return _replayed(response, done)


@router.post(
    "/loans/{loan_id}/credit-refunds",
    tags=["corrections"],
    **answers(responses.CreditPaidBack, 201),
)
def refund_credit(response: Response, context: Caller, loan_id: Id,
                  body: models.CreditRefundIn, key: IdempotencyKey) -> Document:  # fmt: skip
    """Pays a credit balance back where it came from (admins): the answer's ``paid_to`` lists
    each method or channel and its amount."""
    amount = None if body.amount is None else _money("amount", body.amount)
    done = servicing.refund_credit(context, loan_id, amount, _booked(body.date),
                                   idempotency_key=key)  # fmt: skip
    return _replayed(response, done)


@router.post(
    "/payments/{payment_id}/reversal", tags=["corrections"], **answers(responses.Reversed, 201)
)
def reverse(response: Response, context: Caller, payment_id: EventId, body: models.ReversalIn,
            key: IdempotencyKey) -> Document:  # fmt: skip
    """Takes back a mistaken payment (admins): its money goes back. One that reopens a settled
    plan or makes a current one overdue is a 409 (`confirmation-needed`, with its
    `consequences`) unless the body says `"confirm": true`."""
    done = servicing.reverse(context, payment_id, body.reason, _booked(body.date),
                             confirm=body.confirm, today=today(),
                             idempotency_key=key)  # fmt: skip
    return _replayed(response, done)


@router.post("/loans/{loan_id}/waivers", tags=["corrections"], **answers(responses.Waived, 201))
def waive(response: Response, context: Caller, loan_id: Id,
          body: models.WaiverIn, key: IdempotencyKey) -> Document:  # fmt: skip
    """Forgives penalty or fee with a reason: agents up to their limit, admins any amount."""
    done = servicing.waive(context, loan_id, WaiverKind(body.what), _money("amount", body.amount),
                           reason=body.reason, day=_booked(body.date),
                           idempotency_key=key)  # fmt: skip
    return _replayed(response, done)


@router.get(
    "/loans/{loan_id}/receipts", tags=["payments"], **answers(list[responses.ListedReceipt])
)
def list_receipts(context: Caller, loan_id: Id) -> list[Document]:
    """The plan's receipts, oldest first, each saying whether its payment was reversed."""
    return documents(servicing.list_receipts(context, loan_id))


@router.get("/receipts/{receipt_id}", tags=["payments"], **answers(responses.Receipt))
def show_receipt(context: Caller, receipt_id: EventId) -> Document:
    return document(servicing.show_receipt(context, receipt_id))


# -- books, batch, messages, audit ---------------------------------------------------------------


@router.get("/ledger/trial-balance", tags=["books"], **answers(responses.TrialBalance))
def trial_balance(context: Caller) -> Document:
    return document(books.trial_balance(context))


@router.get("/ledger/check", tags=["books"], **answers(responses.BookCheck))
def check_books(context: Caller) -> Document:
    return document(books.check_books(context))


@router.get("/cob/runs", tags=["batch"], **answers(list[responses.CobRun]))
def cob_runs(context: Caller) -> list[Document]:
    return documents(cob.runs(context))


@router.get("/cob/runs/{run_id}", tags=["batch"], **answers(responses.CobRunReport))
def cob_run(context: Caller, run_id: Id) -> Document:
    return document(cob.run_report(context, run_id))


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
def close_day(response: Response, context: Caller, body: models.CobIn) -> Document:
    """Closes a business day in this process (admins; the nightly job uses ``fenqi cob``),
    catching up first the days on which loans are behind (listed in ``caught_up``). A day after
    today is refused; a day with nothing to close is a 200 and records no run; a run whose
    chunks failed is a 500 problem naming the run and the error."""
    closed = document(cob.close(context, body.date))
    if closed["status"] == "failed":
        raise cob.RunFailedError(closed)
    if all(document["id"] is None for document in [closed, *closed["caught_up"]]):
        response.status_code = 200
    return closed


@router.get("/reports/aging", tags=["batch"], **answers(responses.Aging))
def aging(context: Caller,
          on: Annotated[Day | None, Query(alias="date")] = None) -> Document:  # fmt: skip
    return document(cob.aging(context, _today(on)))


@router.get("/sms/outbox", tags=["batch"], **answers(list[responses.SmsMessage]))
def outbox(context: Caller,
           status: Annotated[str | None, Query(pattern="^(pending|sent|expired)$")] = None
           ) -> list[Document]:  # fmt: skip
    return documents(sms.outbox(context, status))


@router.get("/audit", tags=["audit"], **answers(list[responses.AuditEntry]))
def audit_log(
    context: Caller, target: Annotated[str | None, Query(max_length=100)] = None
) -> list[Document]:
    """Who did what, when, to what, why, before and after (admins)."""
    return documents(audit.audit_log(context, target))
