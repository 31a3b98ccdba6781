"""What every page shares: templates, the language (zh-CN first, English too), the signed-in
person from the session cookie, and the CSRF token every form carries."""

from __future__ import annotations

import hmac
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from fenqi import shown
from fenqi.domain.errors import InputError
from fenqi.http.hardening import behind_tls
from fenqi.http.security import SESSION_COOKIE, base_context
from fenqi.services.context import Context, Document
from fenqi.services.credentials import principal_for_session
from fenqi.services.policy import Principal, UnauthenticatedError
from fenqi.services.throttles import TooManyAttemptsError
from fenqi.web.words import CODED_VALUES, WORDS

LANG_COOKIE = "fenqi_lang"
# A form field's pattern: a NUL is never typed, and PostgreSQL cannot keep one.
NO_NUL = r"^[^\x00]*$"
LANGUAGES = ("zh-CN", "en")
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
# Every page writes amounts, rates and moments as every surface does (``fenqi.shown``).
templates.env.globals.update(yuan=shown.yuan, apr=shown.apr, percent=shown.percent,
                             beijing=shown.beijing)  # fmt: skip
templates.env.filters["grouped"] = shown.grouped
templates.env.filters["readable"] = shown.document
templates.env.filters["masked_phone"] = shown.masked_phone


class SignInNeededError(Exception):
    """No valid session cookie: the page sends the visitor to ``login`` instead."""

    def __init__(self, login: str) -> None:
        self.login = login


class ToConfirm(Exception):  # noqa: N818 - a step of the form, not an error
    """A money-moving form's first sending: what it would do (the service's preview of
    ``what``: a payment, a waiver), to be shown with a confirm button; nothing has moved."""

    def __init__(self, what: str, preview: Document, form: Document | None = None) -> None:
        super().__init__(f"confirm the {what}")
        self.what, self.preview, self.form = what, preview, form or {}


class CsrfError(Exception):
    """A form posted without the session's CSRF token: refused, nothing changes."""


def language(request: Request) -> str:
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "zh-CN"
    return asked if asked in LANGUAGES else "zh-CN"


def word(key: str, lang: str, **fill: Any) -> str:
    """The words ``key`` names in ``lang`` (else in zh-CN, else the key itself), filled in."""
    text = WORDS.get(key, {}).get(lang) or WORDS.get(key, {}).get("zh-CN") or key
    return text.format(**fill) if fill else text


def say(refusal: InputError | str, lang: str) -> str:
    """A refusal as a page shows it: one a service gave a code in the reader's language, from
    the words catalog (its field named first, when it has one); any other as its own message,
    which the API and the command line show too."""
    if isinstance(refusal, str):
        return refusal
    sentence = _coded(refusal, lang)
    if sentence is None:
        return " ".join(str(refusal).split())
    field = getattr(refusal, "field", None)
    return word("input.invalid", lang, field=label(field, lang), message=sentence) if field else (
        sentence)  # fmt: skip


def _coded(refusal: InputError, lang: str) -> str | None:
    """A coded refusal's sentence in ``lang``, its values that are codes said in words; None for
    a refusal without a code or without words for it."""
    key = f"refusal.{refusal.code}"
    if refusal.code is None or key not in WORDS:
        return None
    values = {name: word(CODED_VALUES[name] + value, lang) if name in CODED_VALUES else
              shown.readable(value) for name, value in refusal.values.items()}  # fmt: skip
    return word(key, lang, **values)


def label(field: str, lang: str) -> str:
    """A form's or a query's field, named in the reader's language ("on" → 日期)."""
    key = f"field.{field.strip('-')}"
    return word(key, lang) if key in WORDS else field


# What pydantic puts before a validator's own message: the page shows the message alone.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def unreadable(invalid: RequestValidationError, lang: str) -> str:
    """A form or a query FastAPI could not read, said in the reader's language: the field at
    fault by its name on the page, then what is wrong with it (a coded refusal, or a common
    kind of mistake, in words; else the validator's own message without pydantic's prefix)."""
    first = invalid.errors()[0] if invalid.errors() else {}
    where = [part for part in first.get("loc", ()) if isinstance(part, str)]
    field = where[-1] if len(where) > 1 else ""  # the first part says where: body, query, …
    context = first.get("ctx") or {}
    cause = context.get("error")
    message = _coded(cause, lang) if isinstance(cause, InputError) else None
    if message is None and f"input.{first.get('type')}" in WORDS:
        message = word(f"input.{first.get('type')}", lang, **context)
    if message is None:
        message = str(first.get("msg", ""))
        for prefix in _PYDANTIC_PREFIXES:
            message = message.removeprefix(prefix)
    return word("input.invalid", lang, field=label(field, lang), message=message) if field else (
        message)  # fmt: skip


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    lang = language(request)

    def t(key: str, **fill: Any) -> str:
        return word(key, lang, **fill)

    def said(refusal: InputError | str) -> str:
        return say(refusal, lang)

    response = templates.TemplateResponse(
        request,
        name,
        {"t": t, "say": said, "lang": lang, **values},
        status_code=status_code,
    )
    if request.query_params.get("lang") in LANGUAGES:
        set_cookie(request, response, LANG_COOKIE, lang)
    return response


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    """A cookie no script can read (``HttpOnly``), not sent along by other sites' forms or
    frames (``SameSite=Lax``), and ``Secure`` behind TLS."""
    response.set_cookie(name, value, httponly=True, samesite="lax", secure=behind_tls(request))


def locked_out(page: HTMLResponse, error: TooManyAttemptsError) -> HTMLResponse:
    """A sign-in page refusing a try over the limits (drawn with ``locked=error.minutes``, the
    same whether or not the account exists) says in its headers how long to wait."""
    page.headers["Retry-After"] = str(error.retry_after)
    return page


def signed_in(request: Request, login: str) -> tuple[Principal, str, Context]:
    """The person the session cookie belongs to, their CSRF token, and a context acting as
    them; a visitor without one goes to ``login``."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInNeededError(login)
    try:
        who, csrf = principal_for_session(base_context(request), token)
    except UnauthenticatedError:
        raise SignInNeededError(login) from None
    return who, csrf, replace(base_context(request), principal=who)


def check_csrf(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected, given):
        raise CsrfError("this form has expired or did not come from fenqi; reload the page")


def check_same_site(request: Request) -> None:
    """A sign-in form has no session yet, so no CSRF token: the browser's Origin header says
    where the form was sent from, and one from another site (or a hidden one, "null") is
    refused, so that no other site can sign a visitor in as someone else."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.url.netloc:
        raise CsrfError("this sign-in form did not come from fenqi; open the sign-in page")


def sign_in_response(request: Request, target: str, token: str) -> RedirectResponse:
    response = RedirectResponse(target, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token)
    return response


def sign_out_response(request: Request, target: str) -> RedirectResponse:
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax",
                           secure=behind_tls(request))  # fmt: skip
    return response
