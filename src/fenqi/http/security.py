"""Credentials on a request, and the ``Context`` each request runs services with.

The JSON API takes an operator's API key (``X-API-Key``, or ``Authorization: Bearer fq_…``) or a
session token (``Authorization: Bearer …``, from a sign-in). The web pages use the same sessions
through a cookie, and their forms carry the session's CSRF token.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from fenqi.services.context import Context, authenticated, authenticated_at_once
from fenqi.services.credentials import Presented
from fenqi.services.policy import UnauthenticatedError

SESSION_COOKIE = "fenqi_session"

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An operator's API key")
_bearer = HTTPBearer(auto_error=False, description="An API key, or a session token from sign-in")


def client_address(request: Request) -> str | None:
    """The address sign-in tries are limited by: the peer's, or behind a proxy named in
    FENQI_TRUSTED_PROXIES the client's it forwarded (http/hardening.py rewrites the peer)."""
    return request.client.host if request.client is not None else None


def base_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


def presented(context: Context, token: str | None) -> Context:
    """The context carrying the credential a request presented, for the services to check
    (401 at once when there is none)."""
    if not token:
        raise UnauthenticatedError("no credentials: give an API key, or sign in")
    return replace(context, credential=Presented(token))


async def caller(
    request: Request,
    key: Annotated[str | None, Security(_api_key)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Context:
    """The services' context for the request's caller. A read carries the credential as
    presented: the service authenticates, authorizes and reads in one transaction, and the read
    is handed to the thread pool once, for its route (this runs on the event loop). A write is
    authenticated first, so that a request without valid credentials is refused (401) before
    its input is looked at: in one statement from the event loop (``authenticated_at_once``),
    else in a transaction of its own in the thread pool; its service still decides what the
    principal may do."""
    token = key or (bearer.credentials if bearer is not None else None)
    context = presented(base_context(request), token)
    if request.method in ("GET", "HEAD"):
        return context
    principal = await authenticated_at_once(context)
    if principal is None:
        principal = await run_in_threadpool(authenticated, context)
    return replace(context, principal=principal)


Caller = Annotated[Context, Depends(caller)]
