"""The operator console (运营后台): staff sign in with a password, find a borrower, read her plans
with their events and books, and take payments, quote payoffs, waive and reverse.

Pages call the same services as the JSON API, which decide who may do what; a page asks the
policy (``policy.offer``) only which forms to draw, and a borrower's session opens nothing
here. A form that moves money carries the session's CSRF token and an idempotency key made when
the page was drawn, so the same form sent twice moves money once. A refusal is a page saying
why, with the status the API would answer, and changes nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from fenqi import settings
from fenqi.clock import today
from fenqi.domain.errors import InputError
from fenqi.domain.events import WaiverKind
from fenqi.domain.money import AMOUNT_AT_MOST, Money
from fenqi.http.fields import Day, Id, fits
from fenqi.http.problems import status_of
from fenqi.http.security import SESSION_COOKIE, base_context, client_address
from fenqi.services import audit, borrowers, credentials, payouts, policy, servicing, sms
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context, Document, Replayed
from fenqi.services.days import booking_day
from fenqi.services.errors import ConfirmationNeededError, NotFoundError
from fenqi.services.policy import Offer, Principal, UnauthenticatedError
from fenqi.services.throttles import TooManyAttemptsError
from fenqi.web.pages import (
    NO_NUL,
    ToConfirm,
    check_csrf,
    check_same_site,
    language,
    locked_out,
    render,
    sign_in_response,
    sign_out_response,
    signed_in,
    unreadable,
)
from fenqi.wire import document, documents

HOME = "/console"
LOGIN = "/console/login"
FORMS = ("pay", "waive", "reverse")  # the loan page's forms that move money, each with its key
MONEY_IN = ("payment", "prepayment")  # the event kinds a reversal takes back

FormText = Annotated[str, Form(max_length=200, pattern=NO_NUL)]
Short = Annotated[str, Field(max_length=200, pattern=NO_NUL)]


class _RefusalsAsPages(APIRoute):
    """A console route answers a refusal with a page saying why, in the status the API would
    give, never a JSON problem: the services' refusals, and forms FastAPI cannot read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except InputError as refusal:
                return _refused(request, status_of(refusal), refusal)
            except RequestValidationError as invalid:
                return _refused(request, 422, unreadable(invalid, language(request)))

        return handler


router = APIRouter(prefix=HOME, route_class=_RefusalsAsPages, include_in_schema=False)
# What a search opens as a receipt: a receipt's or payment's id, R12-3 or P12-3 (ASCII digits).
_RECEIPT_ID = re.compile(r"[RP][0-9]{1,10}-[0-9]{1,10}", re.ASCII)


def _refused(request: Request, status: int, reason: InputError | str) -> HTMLResponse:
    """The refusal page: a refusal said in the operator's language where it has words
    (``pages.say``), a form it could not read naming the field as the page does."""
    desk = getattr(request.state, "desk", None)
    return render(request, "console/refused.html", status, desk=desk, refusal=reason)


# -- who is at the desk ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Desk:
    """The operator at the console: who, their session's CSRF token, a context acting as them,
    and what the policy offers them (which forms a page draws)."""

    who: Principal
    csrf: str
    context: Context
    offer: Offer


def _desk(request: Request) -> Desk:
    """The signed-in operator; a visitor goes to the login page, a borrower is refused."""
    who, csrf, context = signed_in(request, LOGIN)
    desk = Desk(who, csrf, context, policy.offer(who))
    request.state.desk = desk  # so that a refusal page still shows the operator's menu
    return desk


Operator = Annotated[Desk, Depends(_desk)]


def _today(day: date | None) -> date:
    return day if day is not None else today()


def _booked(day: date | None) -> date:
    """The day a form books on: the one given, within the booking window, else today."""
    return booking_day(day, today(), settings.backdate_days(), field="on")


def _amount(text: str) -> Money:
    return Money.parse(text, at_most=AMOUNT_AT_MOST)


# -- signing in and out ---------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return render(request, "console/login.html")


@router.post("/login")
def login(request: Request, username: FormText = "", password: FormText = "") -> Response:
    """An operator's password opens a session (a cookie); a wrong one shows the form again, and
    too many wrong ones (for the name, or from the address) a lockout."""
    check_same_site(request)
    if not (fits("username", username) and fits("password", password)):  # as the API refuses
        return render(request, "console/login.html", 422, username=username, malformed=True)
    try:
        token, _ = credentials.sign_in_operator(base_context(request), username, password,
                                                client_address(request))  # fmt: skip
    except UnauthenticatedError:
        return render(request, "console/login.html", 401, username=username, wrong=True)
    except TooManyAttemptsError as locked:
        page = render(request, "console/login.html", 429, username=username, locked=locked.minutes)
        return locked_out(page, locked)
    return sign_in_response(request, HOME, token)


@router.post("/logout")
def logout(request: Request, desk: Operator, csrf: FormText = "") -> Response:
    check_csrf(desk.csrf, csrf)
    credentials.sign_out(desk.context, request.cookies[SESSION_COOKIE])
    return sign_out_response(request, LOGIN)


# -- reading --------------------------------------------------------------------------------------


@router.get("")
def search(request: Request, desk: Operator,
           q: Annotated[str, Query(max_length=100)] = "") -> Response:  # fmt: skip
    """Borrowers by phone (or its last 4 digits), name, order id or loan id: what an agent
    types when someone calls. A loan's id opens that loan."""
    if not q.strip():
        return render(request, "console/search.html", desk=desk, q=q, found=None)
    if _RECEIPT_ID.fullmatch(q.strip()):  # a payment's or receipt's id opens its receipt
        return RedirectResponse(f"{HOME}/receipts/R{q.strip()[1:]}", status_code=303)
    looked_up = borrowers.look_up(desk.context, q)
    if looked_up.loan_id is not None:
        return RedirectResponse(f"{HOME}/loans/{looked_up.loan_id}", status_code=303)
    return render(request, "console/search.html", desk=desk, q=q,
                  found=documents(looked_up.borrowers))  # fmt: skip


@router.get("/receipts/{receipt_id}")
def receipt(request: Request, desk: Operator, receipt_id: str) -> HTMLResponse:
    """A receipt (凭证) as the borrower has it: what was paid, how, where it went, what was
    left; a payment's id (``P12-3``) names the same one."""
    shown = document(servicing.show_receipt(desk.context, receipt_id[:40]))
    return render(request, "console/receipt.html", desk=desk, receipt=shown)


@router.get("/borrowers/{borrower_id}")
def borrower(request: Request, desk: Operator, borrower_id: Id,
             as_of: Day | None = None) -> HTMLResponse:  # fmt: skip
    """The borrower, her limit, her methods, her plans as of a day and what she was texted."""
    day = _today(as_of)
    shown = document(borrowers.show_borrower(desk.context, borrower_id))
    plans = documents(servicing.list_loans(desk.context, borrower_id, day))
    sent = documents(sms.messages_to(desk.context, borrower_id, day))
    return render(request, "console/borrower.html", desk=desk, borrower=shown, plans=plans,
                  day=day, messages=sent)  # fmt: skip


@router.get("/loans/{loan_id}")
def loan(request: Request, desk: Operator, loan_id: Id, as_of: Day | None = None,
         payoff: Day | None = None) -> HTMLResponse:  # fmt: skip
    """The plan as of a day, with its history and books; ``payoff`` adds a payoff quote (any
    operator may ask what paying off would take)."""
    quote = (None if payoff is None
             else document(servicing.quote_payoff(desk.context, loan_id, payoff)))  # fmt: skip
    return _loan_page(request, desk, loan_id, _today(as_of), quote=quote)


def _loan_page(request: Request, desk: Desk, loan_id: int, day: date, status_code: int = 200,
               **shown: Any) -> HTMLResponse:  # fmt: skip
    """The plan, its events, its payouts and where each stands, its journal, and the forms the
    operator's roles allow, each with a new idempotency key."""
    context = desk.context
    plan = document(servicing.show_loan(context, loan_id, day))
    history = document(servicing.loan_history(context, loan_id))
    owner = document(borrowers.show_borrower(context, plan["borrower_id"]))
    events = history["events"]
    methods = {method["id"]: method["masked_account"] for method in owner["methods"]}
    shown_events = [{**event, "details": _details(loan_id, event["payload"], methods)}
                    for event in events]  # fmt: skip
    return render(request, "console/loan.html", status_code, desk=desk, loan=plan, day=day,
                  borrower=owner, events=shown_events, entries=history["entries"],
                  payouts=[{**shown, "why": _payout_reason(shown["reason"])}
                           for shown in documents(payouts.of_loan(context, loan_id))],
                  methods=methods, receipts=documents(servicing.list_receipts(context, loan_id)),
                  reversible=_reversible(loan_id, events), waiver_limit=desk.offer.waiver_limit,
                  keys={form: uuid.uuid4().hex for form in FORMS}, **shown)  # fmt: skip


@dataclass(frozen=True)
class Detail:
    """One detail of an event as the loan page shows it: its field, and either a words key
    (a code: a channel, a mode, yes or no) or text as it is (an amount, a reason)."""

    field: str
    key: str = ""
    text: str = ""


# The details whose values are codes, and the words that say them.
_CODED_DETAILS = {"channel": "channel.", "mode": "console.mode.", "kind": "console.waive."}


def _details(loan_id: int, payload: Document, methods: dict[int, str]) -> list[Detail]:
    """An event's details in words: a code through the words catalog, a payment by its id, a
    method by its masked account; a detail that is absent (None) is left out, not shown as
    "None"."""
    shown = []
    for field, value in payload.items():
        if value is None:
            continue
        if field in _CODED_DETAILS:
            shown.append(Detail(field, key=_CODED_DETAILS[field] + str(value)))
        elif isinstance(value, bool):
            shown.append(Detail(field, key="console.yes" if value else "console.no"))
        elif field == "payment_seq":
            shown.append(Detail(field, text=f"P{loan_id}-{value}"))
        elif field == "method_id":
            shown.append(Detail(field, text=methods.get(value, f"#{value}")))
        else:
            shown.append(Detail(field, text=str(value)))
    return shown


def _payout_reason(reason: str | None) -> Detail | None:
    """Why a payout is not paid, in words: fenqi's own reason (no debit order to refund
    against) from the catalog; a gateway's, which only it knows, as the gateway said it."""
    if reason is None:
        return None
    if reason == payouts.NO_ORDER:
        return Detail("reason", key="console.payout.no_order")
    return Detail("reason", key="console.payout.gateway_said", text=reason)


def _reversible(loan_id: int, events: list[Document]) -> list[Document]:
    """The payments and prepayments not taken back yet: what the reversal form offers."""
    taken_back = {event["payload"]["payment_seq"] for event in events
                  if event["kind"] == "reversal"}  # fmt: skip
    return [{"seq": event["seq"], "id": f"P{loan_id}-{event['seq']}", **event["payload"],
             "effective": event["effective"]}
            for event in events
            if event["kind"] in MONEY_IN and event["seq"] not in taken_back]  # fmt: skip


@router.get("/cob")
def close_of_business(
    request: Request, desk: Operator, on: Annotated[Day | None, Query(alias="date")] = None
) -> HTMLResponse:
    """The nightly batch's runs, and the portfolio by delinquency bucket as it closed them."""
    day = _today(on)
    runs, aging = documents(cob.runs(desk.context)), document(cob.aging(desk.context, day))
    return render(request, "console/cob.html", desk=desk, runs=runs, aging=aging, day=day)


@router.get("/audit")
def audit_log(request: Request, desk: Operator,
              target: Annotated[str, Query(max_length=100)] = "") -> HTMLResponse:  # fmt: skip
    """Who did what, when, to what and why (admins), about one target if given."""
    entries = documents(audit.audit_log(desk.context, target.strip() or None))
    return render(request, "console/audit.html", desk=desk, entries=entries, target=target)


# -- acting on a plan -----------------------------------------------------------------------------


class ActionForm(BaseModel):
    """What every form that moves money carries: the session's CSRF token (checked before
    anything else), the idempotency key drawn into the form, and the day it counts on (blank:
    today)."""

    csrf: Short = ""
    key: Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
    on: Day | None = None


class PaymentForm(ActionForm):
    amount: Short = ""
    source: Short = ""  # blank: the default method; "manual": by hand; else a method id
    allow_overpayment: bool = False  # an admin's approval of more than the payoff
    confirm: bool = False  # sent by the confirm step, once what it does was shown


class WaiverForm(ActionForm):
    what: Literal["penalty", "fee"] = "penalty"
    amount: Short = ""
    reason: Short = ""
    confirm: bool = False  # sent by the confirm step, once what it does was shown


class ReversalForm(ActionForm):
    seq: Id  # the payment's number within this plan
    reason: Short = ""
    confirm: bool = False  # sent by the confirmation step, once its consequences were shown


def _act(request: Request, desk: Desk, loan_id: int, form: ActionForm, *, done: str,
         act: Callable[[], Document]) -> HTMLResponse:  # fmt: skip
    """Does an operator's action once the form's CSRF token is the session's (else 403), and
    shows the plan again with what was done, or with the refusal in its status: the service
    refused inside its transaction, so nothing moved."""
    check_csrf(desk.csrf, form.csrf)
    day = _today(form.on)
    try:
        result = act()
    except ConfirmationNeededError as needed:  # shown with its consequences and a confirm step
        confirming = {"form": form.model_dump(mode="json"), **needed.consequences}
        return _loan_page(request, desk, loan_id, day, status_of(needed), confirming=confirming)
    except ToConfirm as step:  # nothing moved yet: what it would do, and a confirm button
        shown: dict[str, Any] = {step.what: {"form": form.model_dump(mode="json"),
                                             **step.preview}}  # fmt: skip
        return _loan_page(request, desk, loan_id, day, 200, **shown)
    except InputError as refusal:
        return _loan_page(request, desk, loan_id, day, status_of(refusal), refusal=refusal)
    replayed = isinstance(result, Replayed)
    return _loan_page(request, desk, loan_id, day,
                      done={"what": done, "replayed": replayed, "result": result})  # fmt: skip


def _source(choice: str) -> servicing.Source:
    """The payment form's choice: the default method (""), by hand ("manual"), or a method id
    (ASCII digits only; anything else is no method of hers)."""
    if choice == "manual":
        return servicing.Source(manual=True)
    if not choice:
        return servicing.Source()
    if not (choice.isascii() and choice.isdigit() and len(choice) <= 10):
        raise NotFoundError(f"no bound method {choice!r}")
    return servicing.Source(method_id=int(choice))


@router.post("/loans/{loan_id}/payments")
def take_payment(request: Request, desk: Operator, loan_id: Id,
                 form: Annotated[PaymentForm, Form()]) -> HTMLResponse:  # fmt: skip
    """Takes a payment by hand or from a bound method (agents and admins), up to what pays the
    plan off that day; more only with an admin's approval (the form's box)."""

    def pay() -> Document:
        if not form.confirm:  # first what it would do, refused for what would refuse it
            raise ToConfirm("paying", document(servicing.preview_payment(
                desk.context, loan_id, _amount(form.amount), _source(form.source),
                _booked(form.on), allow_overpayment=form.allow_overpayment)))  # fmt: skip
        return document(servicing.pay(desk.context, loan_id, _amount(form.amount),
                                      _source(form.source), _booked(form.on),
                                      idempotency_key=form.key,
                                      allow_overpayment=form.allow_overpayment))  # fmt: skip

    return _act(request, desk, loan_id, form, done="paid", act=pay)


@router.post("/loans/{loan_id}/waivers")
def waive(request: Request, desk: Operator, loan_id: Id,
          form: Annotated[WaiverForm, Form()]) -> HTMLResponse:  # fmt: skip
    """Forgives penalty or fee with a reason: agents up to their limit, admins any amount."""

    def forgive() -> Document:
        if not form.confirm:  # first what it would do, refused for what would refuse it
            raise ToConfirm("waiving", document(servicing.preview_waiver(
                desk.context, loan_id, WaiverKind(form.what), _amount(form.amount),
                reason=form.reason, day=_booked(form.on))))  # fmt: skip
        return document(servicing.waive(desk.context, loan_id, WaiverKind(form.what),
                                        _amount(form.amount), reason=form.reason,
                                        day=_booked(form.on),
                                        idempotency_key=form.key))  # fmt: skip

    return _act(request, desk, loan_id, form, done="waived", act=forgive)


@router.post("/loans/{loan_id}/reversals")
def reverse(request: Request, desk: Operator, loan_id: Id,
            form: Annotated[ReversalForm, Form()]) -> HTMLResponse:  # fmt: skip
    """Takes back a mistaken payment of this plan (admins): its money goes back. One that
    reopens a settled plan or makes a current one overdue is shown with its consequences first,
    to be confirmed."""

    def take_back() -> Document:
        return document(servicing.reverse(desk.context, f"P{loan_id}-{form.seq}", form.reason,
                                          _booked(form.on), confirm=form.confirm, today=today(),
                                          idempotency_key=form.key))  # fmt: skip

    return _act(request, desk, loan_id, form, done="reversed", act=take_back)
