"""The borrower's page 我的分期 (``/me``), built for a phone: she signs in with a one-time code,
sees her plans with their full cost and APR, each plan's bills, pays any amount or pays the plan
off, prints her receipts, manages her payment methods, and finds a calm word on hardship.

Every page calls the services and shows their documents. A plan or receipt that is not hers
gets the very page a missing one gets, so nothing tells her another borrower's exists. A form
carries the session's CSRF token, and a form that moves money an idempotency key made when the
page was drawn, so a double click pays once. A refusal shows on the page it came from, with
the status the API would answer, and changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from fenqi import clock, shown
from fenqi.domain.dunning import DEFAULT_LENDER
from fenqi.domain.errors import InputError
from fenqi.domain.events import Channel, PrepayMode
from fenqi.domain.money import AMOUNT_AT_MOST, Money, MoneyError
from fenqi.http.fields import fits
from fenqi.http.problems import status_of
from fenqi.http.security import SESSION_COOKIE, base_context, client_address
from fenqi.services import borrowers, credentials, products, servicing, sms
from fenqi.services.context import Context, Document
from fenqi.services.errors import DeclinedError, InFlightError, NotFoundError
from fenqi.services.policy import Principal, UnauthenticatedError
from fenqi.services.throttles import TooManyAttemptsError
from fenqi.store.schema import MAX_ID
from fenqi.web.pages import (
    NO_NUL,
    SignInNeededError,
    ToConfirm,
    check_csrf,
    check_same_site,
    locked_out,
    render,
    sign_in_response,
    sign_out_response,
    signed_in,
)
from fenqi.wire import document, documents

HOME = "/me"
LOGIN = "/me/login"
router = APIRouter(prefix=HOME, include_in_schema=False)

# What she may bind: every channel but money taken by hand, which is for the counter.
_KINDS = tuple(channel.value for channel in Channel if channel is not Channel.MANUAL)
_DONE = ("bound", "default", "unbound")  # what the methods page may say was just done


class NoMethodError(InputError):
    """A payment form sent without one of her bound methods."""


class NoModeError(InputError):
    """A prepayment form sent without one of the modes its preview offered."""


# What the page says first about a refusal, most specific first; the service's words follow.
_SAYINGS: tuple[tuple[type[InputError], str], ...] = (
    (MoneyError, "me.problem.amount"),
    (NoMethodError, "me.pay.no_method"),
    (NoModeError, "me.prepay.no_mode"),
    (DeclinedError, "me.problem.declined"),
    (InFlightError, "me.problem.in_flight"),
    (NotFoundError, "me.problem.not_found"),
    (InputError, "me.problem.refused"),
)

Short = Annotated[str, Field(max_length=200, pattern=NO_NUL)]


class CsrfForm(BaseModel):
    """Every form she sends carries her session's CSRF token (checked before anything else)."""

    csrf: Short = ""


class MoneyForm(CsrfForm):
    """Paying or paying off: the idempotency key drawn into the form, the bound method she
    chose, and for a payment the amount, and whether it comes from the confirm step."""

    key: Short = ""
    method: Short = ""
    amount: Short = ""
    confirm: bool = False


class MethodForm(CsrfForm):
    """Binding a method: its kind, the account, and whether it becomes her default."""

    kind: Short = ""
    account: Short = ""
    default: Short = ""


class PhoneForm(BaseModel):
    """Signing in: her phone, and the code texted to it."""

    phone: Short = ""
    code: Short = ""


@dataclass(frozen=True)
class Visit:
    """A signed-in borrower's request: who she is, her form token, a context acting as her."""

    who: Principal
    borrower_id: int
    csrf: str
    context: Context


@dataclass(frozen=True)
class Problem:
    """What went wrong, as the page says it: a sentence of ours (a words key), then the
    service's refusal (in her language where it has words: ``pages.say``)."""

    key: str
    refusal: InputError | None = None


def _visit(request: Request) -> Visit:
    who, csrf, context = signed_in(request, LOGIN)
    if who.borrower_id is None:  # an operator's console session is not a borrower's
        raise SignInNeededError(LOGIN)
    return Visit(who, who.borrower_id, csrf, context)


def _posted(request: Request, form: CsrfForm) -> Visit:
    """The borrower behind a form, once its CSRF token is her session's (else 403)."""
    visit = _visit(request)
    check_csrf(visit.csrf, form.csrf)
    return visit


def _page(request: Request, name: str, visit: Visit | None, status_code: int = 200,
          **values: Any) -> HTMLResponse:  # fmt: skip
    """A page of ``templates/borrower``, with the helpers that format the services' text."""
    csrf = "" if visit is None else visit.csrf
    return render(request, f"borrower/{name}", status_code, csrf=csrf, **values)  # fmt: skip


def _missing(request: Request, visit: Visit) -> HTMLResponse:
    """The one answer for a plan, receipt or method that does not exist or is not hers."""
    return _page(request, "missing.html", visit, 404)


def _problem(error: InputError) -> Problem:
    key = next(key for kind, key in _SAYINGS if isinstance(error, kind))
    return Problem(key, error)


def _key() -> str:
    """An idempotency key for one drawing of a form: sending it twice moves money once."""
    return secrets.token_urlsafe(16)


# -- formatting the services' text -----------------------------------------------------------------


def _next_bill(loan: Document) -> Document | None:
    """The first installment not yet paid: what she pays next, and when."""
    return next((row for row in loan["installments"] if row["status"] != "paid"), None)


def _settled_on(loan: Document, receipts: Sequence[Document]) -> str | None:
    """The day a settled plan was paid off: its last payment that still stands."""
    if loan["status"] != "settled":
        return None
    return max((receipt["date"] for receipt in receipts if not receipt["reversed"]), default=None)


def _upcoming(loan: Document) -> Document | None:
    """The next bill, when nothing is due now: what the due card and the pay form speak of."""
    return None if Money.parse(loan["amount_due"]) > 0 else _next_bill(loan)


def _prefill(loan: Document) -> str:
    """What the pay form offers: what is due now, else the next installment."""
    if Money.parse(loan["amount_due"]) > 0:
        return str(loan["amount_due"])
    upcoming = _next_bill(loan)
    return "" if upcoming is None else str(upcoming["outstanding"])


def _month(month: Document, rows: list[Document]) -> Document:
    """A month of the repayment calendar: its year and number, its sum and its installments."""
    year, number = (int(part) for part in month["month"].split("-"))
    return {"key": month["month"], "year": year, "month": number, "rows": rows,
            "total": month["amount"]}  # fmt: skip


def _id(text: str) -> int:
    """An id from an address; anything else names nothing (the 404 page, not a JSON error)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and 0 < int(text) <= MAX_ID):
        raise NotFoundError(f"no {text!r}")
    return int(text)


# -- signing in --------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", None)


@router.post("/login/code")
def send_code(request: Request, form: Annotated[PhoneForm, Form()]) -> HTMLResponse:
    """Texts a code (the answer is the same for a phone that is not a borrower's). A phone the
    API would refuse ("١٣٩…" in another script's digits, letters) is refused here too, before
    anything is stored."""
    check_same_site(request)
    phone = form.phone.strip()
    if not fits("phone", phone):
        return _page(request, "login.html", None, 422, problem=Problem("me.login.bad_phone"))
    try:
        sent = credentials.send_sign_in_code(base_context(request), phone, client_address(request))
    except TooManyAttemptsError as locked:  # too many requests from her address
        return locked_out(_page(request, "login.html", None, 429, locked=locked.minutes), locked)
    again = clock.stamp() + timedelta(seconds=sent.again_in_seconds)
    return _page(request, "login.html", None, phone=phone, minutes=sent.expires_in_minutes,
                 again_at=shown.beijing(again.isoformat()))  # fmt: skip


@router.post("/login")
def sign_in(request: Request, form: Annotated[PhoneForm, Form()]) -> Response:
    check_same_site(request)
    phone, code = form.phone.strip(), form.code.strip()
    if not fits("phone", phone):
        return _page(request, "login.html", None, 422, problem=Problem("me.login.bad_phone"))
    if not fits("code", code):  # not a try: no code has this shape
        wrong = Problem("me.login.bad_code")
        return _page(request, "login.html", None, 422, phone=phone, problem=wrong)
    try:
        token, _ = credentials.sign_in_borrower(base_context(request), phone, code,
                                                client_address(request))  # fmt: skip
    except UnauthenticatedError:
        wrong = Problem("me.login.wrong_code")
        return _page(request, "login.html", None, 401, phone=phone, problem=wrong)
    except TooManyAttemptsError as locked:
        page = _page(request, "login.html", None, 429, phone=phone, locked=locked.minutes)
        return locked_out(page, locked)
    return sign_in_response(request, HOME, token)


@router.post("/logout")
def sign_out(request: Request, form: Annotated[CsrfForm, Form()]) -> Response:
    visit = _posted(request, form)
    credentials.sign_out(visit.context, request.cookies[SESSION_COOKIE])
    return sign_out_response(request, LOGIN)


# -- her plans ---------------------------------------------------------------------------------


@router.get("")
def plans_page(request: Request) -> HTMLResponse:
    """Her limit, what she has to repay (due now, within the week, this month, in all) and
    each plan: one overview, read in one unit of work."""
    visit = _visit(request)
    seen = document(servicing.overview(visit.context, visit.borrower_id, clock.today()))
    return _page(
        request,
        "plans.html",
        visit,
        seen=seen,
        plans=[{"loan": loan, "next": _next_bill(loan)} for loan in seen["plans"]],
        names=_product_names(visit.context),
    )


@router.get("/messages")
def messages_page(request: Request) -> HTMLResponse:
    """Everything fenqi wrote to her (消息中心), the latest first, each with what became of its
    text message: in the app whether or not the text went."""
    visit = _visit(request)
    shown = documents(sms.messages_to(visit.context, visit.borrower_id, clock.today()))
    return _page(request, "messages.html", visit, messages=shown)


@router.get("/calendar")
def calendar_page(request: Request) -> HTMLResponse:
    """Every installment she still owes, on every plan, by month and day (还款日历)."""
    visit = _visit(request)
    seen = document(servicing.overview(visit.context, visit.borrower_id, clock.today()))
    rows: dict[str, list[Document]] = {}
    for row in seen["installments"]:
        rows.setdefault(row["due_date"][:7], []).append(row)
    months = [_month(month, rows[month["month"]]) for month in seen["months"]]
    return _page(request, "calendar.html", visit, seen=seen, months=months)


@router.get("/loans/{loan_id}")
def plan_page(request: Request, loan_id: str) -> Response:
    visit = _visit(request)
    return _on_her_plan(request, visit, loan_id, lambda plan: _plan(request, visit, plan))


@router.post("/loans/{loan_id}/pay")
def pay(request: Request, loan_id: str, form: Annotated[MoneyForm, Form()]) -> Response:
    """Any amount, from the method she chose, on today's date; then its receipt."""
    visit = _posted(request, form)

    def take(plan: int) -> Document:
        amount = Money.parse(form.amount, at_most=AMOUNT_AT_MOST)
        if not form.confirm:  # first where it would go, refused for what would refuse it
            raise ToConfirm("payment", document(servicing.preview_payment(
                visit.context, plan, amount, _source(form), clock.today())),
                form.model_dump())  # fmt: skip
        return document(servicing.pay(visit.context, plan, amount, _source(form), clock.today(),
                                      idempotency_key=form.key or None))  # fmt: skip

    return _on_her_plan(request, visit, loan_id, lambda plan: _money_in(request, visit, plan, take))


@router.post("/loans/{loan_id}/payoff")
def pay_off(request: Request, loan_id: str, form: Annotated[MoneyForm, Form()]) -> Response:
    """The whole plan at today's payoff quote; then its receipt."""
    visit = _posted(request, form)

    def take(plan: int) -> Document:
        return document(servicing.prepay(
            visit.context, plan, None, mode=PrepayMode.REDUCE_INSTALLMENT, source=_source(form),
            day=clock.today(), idempotency_key=form.key or None))  # fmt: skip

    return _on_her_plan(request, visit, loan_id, lambda plan: _money_in(request, visit, plan, take))


@router.get("/loans/{loan_id}/explained")
def explained_page(request: Request, loan_id: str) -> Response:
    """How the plan's cost works out and what being late would cost, in its own numbers."""
    visit = _visit(request)

    def explain(plan: int) -> Response:
        today = clock.today()
        loan = document(servicing.show_loan(visit.context, plan, today))
        plain = document(servicing.explain_plan(visit.context, plan, today))
        return _page(request, "explained.html", visit, loan=loan, plain=plain)

    return _on_her_plan(request, visit, loan_id, explain)


class PrepayForm(MoneyForm):
    """Prepaying part of a plan, in the mode she chose on its preview."""

    mode: Short = ""


@router.get("/loans/{loan_id}/prepay")
def prepay_preview(request: Request, loan_id: str, amount: str = "") -> Response:
    """What prepaying ``amount`` today would do, in each mode the plan allows, each with its
    own confirm form: nothing moves until she chooses one."""
    visit = _visit(request)

    def preview(plan: int) -> Response:
        try:
            asked = Money.parse(amount[:30], at_most=AMOUNT_AT_MOST)
            seen = document(servicing.preview_prepayment(visit.context, plan, asked,
                                                         clock.today()))  # fmt: skip
        except InputError as refusal:
            return _plan(request, visit, plan, status_of(refusal), _problem(refusal))
        loan = document(servicing.show_loan(visit.context, plan, clock.today()))
        methods = document(borrowers.show_borrower(visit.context, visit.borrower_id))["methods"]
        return _page(request, "prepay.html", visit, loan=loan, preview=seen, methods=methods,
                     keys={outcome["mode"]: _key() for outcome in seen["outcomes"]})  # fmt: skip

    return _on_her_plan(request, visit, loan_id, preview)


@router.post("/loans/{loan_id}/prepay")
def prepay(request: Request, loan_id: str, form: Annotated[PrepayForm, Form()]) -> Response:
    """Part of the plan repaid early, in the mode she confirmed; then its receipt."""
    visit = _posted(request, form)

    def take(plan: int) -> Document:
        amount = Money.parse(form.amount, at_most=AMOUNT_AT_MOST)
        mode = _mode(form.mode)
        return document(servicing.prepay(
            visit.context, plan, amount, mode=mode, source=_source(form), day=clock.today(),
            idempotency_key=form.key or None))  # fmt: skip

    return _on_her_plan(request, visit, loan_id, lambda plan: _money_in(request, visit, plan, take))


def _mode(text: str) -> PrepayMode:
    """The mode a confirm form names; anything else is refused as a form not ours."""
    try:
        return PrepayMode(text)
    except ValueError:
        raise NoModeError("choose how the prepayment changes the rest of the plan") from None


def _on_her_plan(request: Request, visit: Visit, loan_id: str,
                 then: Callable[[int], Response]) -> Response:  # fmt: skip
    """``then`` on the plan; a missing plan and another's (the services refuse it as missing)
    get the same 404."""
    try:
        return then(_id(loan_id))
    except NotFoundError:
        return _missing(request, visit)


def _money_in(request: Request, visit: Visit, plan: int,
              take: Callable[[int], Document]) -> Response:  # fmt: skip
    try:
        paid = take(plan)
    except ToConfirm as step:
        return _confirm(request, visit, plan, step)
    except InputError as refusal:
        return _plan(request, visit, plan, status_of(refusal), _problem(refusal))
    return RedirectResponse(f"{HOME}/receipts/{paid['receipt_id']}", status_code=303)


def _confirm(request: Request, visit: Visit, plan: int, step: ToConfirm) -> HTMLResponse:
    """Where her payment would go and the plan after it, with the button that pays (the same
    form, key and method, confirmed): nothing has moved yet."""
    loan = document(servicing.show_loan(visit.context, plan, clock.today()))
    methods = document(borrowers.show_borrower(visit.context, visit.borrower_id))["methods"]
    method = next((shown for shown in methods if str(shown["id"]) == step.form.get("method")),
                  None)  # fmt: skip
    return _page(request, "confirm.html", visit, loan=loan, paying=step.preview, form=step.form,
                 method=method)  # fmt: skip


def _source(form: MoneyForm) -> servicing.Source:
    """The bound method she chose (the service refuses one that is not hers). Never none: with
    no method the service would record money taken by hand, which only staff may do."""
    if not form.method:
        raise NoMethodError("choose one of your bound payment methods")
    return servicing.Source(method_id=_id(form.method))


def _plan(request: Request, visit: Visit, plan: int, status_code: int = 200,
          problem: Problem | None = None) -> HTMLResponse:  # fmt: skip
    today = clock.today()
    loan = document(servicing.show_loan(visit.context, plan, today))
    still_open = loan["status"] not in servicing.CLOSED
    receipts = documents(servicing.list_receipts(visit.context, plan))
    return _page(
        request,
        "plan.html",
        visit,
        status_code,
        loan=loan,
        still_open=still_open,
        payoff=document(servicing.quote_payoff(visit.context, plan, today)) if still_open else None,
        prefill=_prefill(loan),
        upcoming=_upcoming(loan),
        methods=document(borrowers.show_borrower(visit.context, visit.borrower_id))["methods"],
        receipts=receipts,
        settled_on=_settled_on(loan, receipts),
        names=_product_names(visit.context),
        pay_key=_key(),
        payoff_key=_key(),
        problem=problem,
    )


def _product_names(context: Context) -> dict[str, dict[str, str]]:
    """Each product's name by language: the page shows the one it speaks."""
    return {item["code"]: {"zh-CN": item["name"], "en": item["name_en"]}
            for item in documents(products.list_products(context))}  # fmt: skip


# -- receipts ----------------------------------------------------------------------------------


@router.get("/receipts/{receipt_id}")
def receipt_page(request: Request, receipt_id: str) -> HTMLResponse:
    """A printable receipt (凭证), hers only."""
    visit = _visit(request)
    try:
        receipt = document(servicing.show_receipt(visit.context, receipt_id))
    except NotFoundError:
        return _missing(request, visit)
    return _page(request, "receipt.html", visit, receipt=receipt)


# -- payment methods ---------------------------------------------------------------------------


@router.get("/methods")
def methods_page(request: Request) -> HTMLResponse:
    return _methods(request, _visit(request))


@router.post("/methods")
def bind_method(request: Request, form: Annotated[MethodForm, Form()]) -> Response:
    """Binds a card, Alipay or WeChat Pay account of hers (the service masks and checks it)."""
    visit = _posted(request, form)

    def bind() -> object:
        return borrowers.bind_method(visit.context, visit.borrower_id, form.kind, form.account,
                                     default=bool(form.default))  # fmt: skip

    return _change_methods(request, visit, bind, "bound")


@router.post("/methods/{method_id}/default")
def default_method(request: Request, method_id: str,
                   form: Annotated[CsrfForm, Form()]) -> Response:  # fmt: skip
    return _on_her_method(request, method_id, form, borrowers.set_default_method, "default")


@router.post("/methods/{method_id}/unbind")
def unbind_method(request: Request, method_id: str,
                  form: Annotated[CsrfForm, Form()]) -> Response:  # fmt: skip
    return _on_her_method(request, method_id, form, borrowers.unbind_method, "unbound")


def _on_her_method(request: Request, method_id: str, form: CsrfForm,
                   change: Callable[[Context, int], object], done: str) -> Response:  # fmt: skip
    visit = _posted(request, form)
    return _change_methods(request, visit, lambda: change(visit.context, _id(method_id)), done)


def _change_methods(request: Request, visit: Visit, change: Callable[[], object],
                    done: str) -> Response:  # fmt: skip
    """Makes the change and says so on the methods page (``done``: what was done)."""
    try:
        change()
    except InputError as refusal:
        return _methods(request, visit, status_of(refusal), _problem(refusal))
    return RedirectResponse(f"{HOME}/methods?done={done}", status_code=303)


def _methods(request: Request, visit: Visit, status_code: int = 200,
             problem: Problem | None = None) -> HTMLResponse:  # fmt: skip
    """Her methods, what was just done to them, and whether removing the last one would stop
    the auto-debit of a plan still open (the page then says so before she confirms)."""
    her = document(borrowers.show_borrower(visit.context, visit.borrower_id))
    plans = servicing.list_loans(visit.context, visit.borrower_id, clock.today())
    done = request.query_params.get("done")
    return _page(request, "methods.html", visit, status_code, methods=her["methods"],
                 kinds=_KINDS, problem=problem, done=done if done in _DONE else None,
                 owing=any(plan.status not in servicing.CLOSED for plan in plans))  # fmt: skip


# -- hardship, and addresses only a form posts to ----------------------------------------------


@router.get("/hardship")
def hardship_page(request: Request) -> HTMLResponse:
    """What restructuring is and how to ask for it (docs/domain.md#hardship-and-restructuring):
    facts, no pressure."""
    return _page(request, "hardship.html", _visit(request), hotline=DEFAULT_LENDER.hotline)


@router.get("/{rest:path}")
def back_to_page(request: Request, rest: str) -> RedirectResponse:
    """An address only a form posts to (the language switch on a refused form's page asks for
    it) goes back up to the page the form was on: ``/me/loans/1/pay`` → ``/me/loans/1``."""
    parent = rest.strip("/").rpartition("/")[0]
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{HOME}/{parent}".rstrip("/") + query, status_code=303)
