"""Errors as RFC 9457 problem details: ``application/problem+json`` with a machine-readable
``type``, a ``title``, the ``status``, a ``detail`` that says what is wrong, and the ``field`` at
fault when there is one.

An error nothing else answered (``unexpected``) is still a problem document: a database that
cannot serve now is a 503 ``database-not-ready`` (or a 409 ``conflict`` when other writers held
what the request needed), with ``Retry-After``; anything else is a 500 ``internal-error`` that
names only the request's id, never the error's text (which may hold a borrower's data)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from fenqi.domain.errors import InputError
from fenqi.services.close_of_business import RunFailedError
from fenqi.services.context import IdempotencyKeyReusedError
from fenqi.services.errors import (
    ConfirmationNeededError,
    ConflictError,
    DeclinedError,
    InFlightError,
    NotFoundError,
    RefusedError,
)
from fenqi.services.policy import ForbiddenError, UnauthenticatedError
from fenqi.services.quoting import FieldError
from fenqi.services.throttles import TooManyAttemptsError
from fenqi.services.withholding import UnverifiedNotificationError
from fenqi.settings import SettingError
from fenqi.store.database import DatabaseNotReadyError, trouble

MEDIA_TYPE = "application/problem+json"
_WHERE = ("body", "query", "path", "header")  # where a field is, not which
PREFIX = "urn:fenqi:problem:"

# The most specific class first: the first that matches says which problem it is.
_KINDS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (UnauthenticatedError, 401, "unauthenticated", "Sign in or give credentials"),
    (UnverifiedNotificationError, 401, "bad-signature", "The signature does not verify"),
    (TooManyAttemptsError, 429, "too-many-attempts", "Too many attempts; wait and try again"),
    (ForbiddenError, 403, "forbidden", "Not allowed for your role"),
    (NotFoundError, 404, "not-found", "Not found"),
    (InFlightError, 409, "in-flight", "The same request is still being worked out"),
    (IdempotencyKeyReusedError, 422, "idempotency-key-reused", "Idempotency key reused"),
    (DeclinedError, 402, "payment-declined", "The payment channel declined"),
    (FieldError, 422, "invalid-field", "A field cannot be used"),
    (RefusedError, 422, "refused", "Refused by the rules"),
    (InputError, 422, "invalid-input", "The input cannot be used"),
    (DatabaseNotReadyError, 503, "database-not-ready", "The database is not ready"),
)
# The statuses that ask the client to send the same request again, and after how many seconds.
RETRY_AFTER = {409: 1, 503: 2}
UNAVAILABLE = (503, "database-not-ready", "The database is not ready",
               "the database cannot be reached or did not answer in time; send the same "
               "request again (with the same Idempotency-Key) in a moment")  # fmt: skip
CONTENDED = (409, "conflict", "Busy with other requests for the same records",
             "other requests held the same records for too long; send the same request again "
             "(with the same Idempotency-Key) in a moment")  # fmt: skip
INTERNAL = (500, "internal-error", "Internal error",
            "an unexpected error; it is logged under this request's id")  # fmt: skip
# A setting changed under a running service (it refuses to start with one it cannot use): the
# operator's to fix, so a 500, never a 4xx that would tell the client the request was wrong.
MISCONFIGURED = (500, "misconfigured", "The server is misconfigured",
                 "a setting of this server cannot be used; its operator must correct it (the "
                 "log under this request's id names it)")  # fmt: skip


class Consequences(BaseModel):
    """What a correction would do to the loan as of ``as_of``."""

    as_of: str
    status_before: str
    status_after: str
    dpd: int
    penalty: str
    amount_due: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    request_id: str | None = None
    consequences: Consequences | None = None  # confirmation-needed: what it would do


_PROBLEM_SCHEMA = Problem.model_json_schema()
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": title, "content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}}
    for status, title in (
        (400, "A body that cannot be read (not UTF-8 JSON)"),
        (401, "No valid credentials"),
        (402, "The payment channel declined"),
        (403, "Not allowed for this role or person"),
        (404, "Not found (or not yours)"),
        (
            409,
            "The same idempotent request is in flight, others held its records too long, "
            "or a correction needs confirming",
        ),
        (422, "Invalid or refused input, or an idempotency key reused"),
        (429, "Too many sign-in attempts: wait the seconds Retry-After says"),
        (500, "An unexpected error, logged under the request's id"),
        (503, "The database is not ready, cannot be reached or did not answer in time"),
    )
}


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PREFIX + kind, "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status in RETRY_AFTER:
        headers["Retry-After"] = str(RETRY_AFTER[status])
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def unexpected(error: Exception, request_id: str) -> JSONResponse:
    """The answer to an error no handler took (see the module's docstring)."""
    status, kind, title, detail = classify(error)
    return problem(status, kind, title, detail, request_id=request_id)


def classify(error: Exception) -> tuple[int, str, str, str]:
    """Status, kind, title and detail of an error no handler took: the detail is fixed text,
    never the error's own."""
    if isinstance(error, ConflictError):
        return CONTENDED
    if isinstance(error, SettingError):
        return MISCONFIGURED
    return {"unavailable": UNAVAILABLE, "contended": CONTENDED}.get(trouble(error) or "", INTERNAL)


def install(app: FastAPI) -> None:
    """Every refusal fenqi raises, every invalid request and every HTTP error becomes a
    problem document; nothing else about the failure leaks out."""

    @app.exception_handler(InputError)
    async def refused(_request: Request, error: InputError) -> JSONResponse:
        return _for(error)

    @app.exception_handler(RunFailedError)
    async def batch_failed(_request: Request, error: RunFailedError) -> JSONResponse:
        # The request was good and the batch broke: a server error, said without a trace.
        return problem(500, "batch-failed", "The close of business failed", str(error),
                       run=error.document["id"])  # fmt: skip

    @app.exception_handler(DatabaseNotReadyError)
    async def not_ready(_request: Request, error: DatabaseNotReadyError) -> JSONResponse:
        return _for(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = [
            part for part in first.get("loc", ()) if isinstance(part, str) and part not in _WHERE
        ]
        field = ".".join(where) or None
        detail = f"{field}: {first.get('msg', 'invalid')}" if field else str(first.get("msg"))
        if first.get("type") == "json_invalid":  # say why: a duplicate key, a NUL, …
            detail = f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}"
        return problem(422, "invalid-request", "The request is not valid", detail, field=field)

    @app.exception_handler(HTTPException)
    async def http(_request: Request, error: HTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        answer = problem(error.status_code, kind, str(error.detail), str(error.detail))
        answer.headers.update(error.headers or {})  # e.g. Allow on a 405
        return answer


def answer(error: Exception) -> JSONResponse:
    """The problem document a refusal is answered with."""
    return _for(error)


def status_of(error: Exception) -> int:
    """The status a refusal is answered with: the pages show it with the same one as the API."""
    return _for(error).status_code


def _for(error: Exception) -> JSONResponse:
    if isinstance(error, ConfirmationNeededError):  # says how to confirm, and what it would do
        detail = f'{error.what}; send it again with "confirm": true to go ahead'
        return problem(409, "confirmation-needed", "Confirm this correction first",
                       " ".join(detail.split()), consequences=error.consequences)  # fmt: skip
    for kind, status, name, title in _KINDS:
        if isinstance(error, kind):
            field = getattr(error, "field", None)
            extra = {"field": field} if field else {}
            answer = problem(status, name, title, " ".join(str(error).split()), **extra)
            if isinstance(error, TooManyAttemptsError):
                answer.headers["Retry-After"] = str(error.retry_after)
            return answer
    return problem(422, "invalid-input", "The input cannot be used", str(error))
