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

from fenqi.services.access import (
    Principal,
    UnauthenticatedError,
    principal_for_key,
    principal_for_session,
)
from fenqi.services.context import Context

SESSION_COOKIE = "fenqi_session"

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An operator's API key")
_bearer = HTTPBearer(auto_error=False, description="An API key, or a session token from sign-in")


def client_address(request: Request) -> str | None:
    """The address sign-in tries are limited by: the peer's, or behind a proxy named in
    FENQI_TRUSTED_PROXIES the client's it forwarded (api/hardening.py rewrites the peer)."""
    return request.client.host if request.client is not None else None


def base_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


def authenticate(context: Context, token: str | None, cookie: str | None) -> tuple[Principal, str]:
    """Who is asking, and their session's CSRF token ("" for an API key)."""
    if token and token.startswith("fq_"):
        return principal_for_key(context, token), ""
    if token:
        return principal_for_session(context, token)
    if cookie:
        return principal_for_session(context, cookie)
    raise UnauthenticatedError("no credentials: give an API key, or sign in")


def principal(
    request: Request,
    key: Annotated[str | None, Security(_api_key)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Principal:
    token = key or (bearer.credentials if bearer is not None else None)
    who, csrf = authenticate(base_context(request), token, None)
    request.state.principal, request.state.csrf = who, csrf
    return who


Caller = Annotated[Principal, Depends(principal)]


def context_for(request: Request, who: Principal) -> Context:
    """The services' context with the caller as the actor the audit log names."""
    return replace(base_context(request), actor=who.name)
