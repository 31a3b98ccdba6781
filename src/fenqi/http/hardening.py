"""What the service adds around every answer for the safety of the people using it, and the
settings that decide it (README "Security"):

- every answer: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: same-origin`` and a Content-Security-Policy (scripts and styles from the
  service itself only, no frames); ``Cache-Control: no-store`` on all but the static files, so
  no personal page or API answer stays in a shared cache or the browser's history;
- ``FENQI_DOCS`` (``open`` | ``off``): whether ``/docs``, ``/redoc`` and ``/openapi.json`` answer;
- ``FENQI_METRICS`` (``open`` | ``staff`` | ``off``): ``/metrics`` for anyone, for operators
  only (an API key or a console session), or not at all;
- ``FENQI_SECURE_COOKIES`` (``yes`` | ``no``): the service is behind TLS, so cookies are
  ``Secure`` and ``Strict-Transport-Security`` is sent (a request that arrived over https gets
  both anyway);
- ``FENQI_TRUSTED_PROXIES`` (addresses or networks, comma-separated): the proxies whose
  ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed (uvicorn's middleware rewrites the
  client's address and scheme); from anyone else those headers are ignored, so a client cannot
  pick the address its sign-in tries are counted against.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from fenqi.domain.errors import InputError
from fenqi.http import problems
from fenqi.http.security import SESSION_COOKIE, presented
from fenqi.services.context import permitted
from fenqi.services.policy import Permission
from fenqi.settings import SettingError

DOCS_VARIABLE = "FENQI_DOCS"
METRICS_VARIABLE = "FENQI_METRICS"
SECURE_VARIABLE = "FENQI_SECURE_COOKIES"
PROXIES_VARIABLE = "FENQI_TRUSTED_PROXIES"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
METRICS_PATH = "/metrics"
STATIC_PREFIX = "/static/"

# The pages load their scripts and styles from /static and nothing else; the API's answers are
# data, never a document. Swagger UI and ReDoc are pages of FastAPI's own, with an inline script
# and files from a CDN: they are only kept out of frames.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
          "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
DOCS_POLICY = "frame-ancestors 'none'"
ALWAYS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
          "Referrer-Policy": "same-origin"}  # fmt: skip
HSTS = "max-age=31536000"
_YES, _NO = {"1", "yes", "true", "on"}, {"0", "no", "false", "off", ""}


class Exposure(StrEnum):
    OPEN = "open"  # anyone
    STAFF = "staff"  # operators, with an API key or a console session
    OFF = "off"  # not served


@dataclass(frozen=True)
class Settings:
    docs: Exposure = Exposure.OPEN
    metrics: Exposure = Exposure.OPEN
    secure_cookies: bool = False
    trusted_proxies: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            docs=_exposure(environ, DOCS_VARIABLE, (Exposure.OPEN, Exposure.OFF)),
            metrics=_exposure(environ, METRICS_VARIABLE, tuple(Exposure)),
            secure_cookies=_yes_or_no(environ, SECURE_VARIABLE),
            trusted_proxies=_proxies(environ.get(PROXIES_VARIABLE, "")),
        )


def _exposure(environ: Mapping[str, str], name: str, accepted: tuple[Exposure, ...]) -> Exposure:
    given = environ.get(name, "open").strip().lower()
    if given not in accepted:
        raise SettingError(f'{name}="{given}" is not one of: {", ".join(accepted)}')
    return Exposure(given)


def _yes_or_no(environ: Mapping[str, str], name: str) -> bool:
    given = environ.get(name, "").strip().lower()
    if given not in _YES | _NO:
        raise SettingError(f'{name}="{given}" is not yes or no')
    return given in _YES


def _proxies(text: str) -> tuple[str, ...]:
    given = tuple(part.strip() for part in text.split(",") if part.strip())
    for proxy in given:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingError(f'{PROXIES_VARIABLE}: "{proxy}" is not an IP address or a '
                               "network; give e.g. 10.0.0.5 or 10.0.0.0/8") from None  # fmt: skip
    return given


def install(app: FastAPI, settings: Settings | None = None) -> None:
    """Adds the headers and the gates around every answer (the settings from the environment
    unless given); with trusted proxies, the forwarded client address and scheme too."""
    chosen = settings if settings is not None else Settings.from_environment()
    app.state.settings = chosen
    app.add_middleware(Hardening, settings=chosen)
    if chosen.trusted_proxies:  # added last, so it runs first: everything sees the real client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(chosen.trusted_proxies))


def behind_tls(request: Request) -> bool:
    """Whether cookies are to be ``Secure``: the setting says the service is behind TLS, or
    this request came over https (as such, or from a trusted proxy that says so)."""
    return _over_tls(request.app.state.settings, request.url.scheme)


def _over_tls(settings: Settings, scheme: str | None) -> bool:
    return settings.secure_cookies or scheme == "https"


class Hardening:
    """The headers on every answer, and the gates on the docs and the metrics (plain ASGI, so
    it holds for every answer, streamed or not, refusals included)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        secure = _over_tls(self.settings, scope.get("scheme"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(MutableHeaders(scope=message), path, secure)
            await send(message)

        refusal = await self._gate(scope, path)
        await (refusal or self.app)(scope, receive, with_headers)

    async def _gate(self, scope: Scope, path: str) -> Response | None:
        """A refusal for the docs or the metrics when the settings keep them from this caller."""
        hidden = problems.problem(404, "not-found", "Not Found", "Not Found")
        if path in DOCS_PATHS and self.settings.docs is Exposure.OFF:
            return hidden
        if path != METRICS_PATH or self.settings.metrics is Exposure.OPEN:
            return None
        if self.settings.metrics is Exposure.OFF:
            return hidden
        return await run_in_threadpool(_staff_only, Request(scope))


def _staff_only(request: Request) -> Response | None:
    """None for an operator's credentials (an API key, a bearer session, the console's cookie);
    else the problem document the API would answer."""
    bearer = request.headers.get("authorization", "")
    token = request.headers.get("x-api-key") or (
        bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
    )
    try:
        credential = token or request.cookies.get(SESSION_COOKIE)
        permitted(presented(request.app.state.context, credential), Permission.READ)
    except InputError as refusal:
        return problems.answer(refusal)
    return None


def _add_headers(headers: MutableHeaders, path: str, secure: bool) -> None:
    for name, value in ALWAYS.items():
        headers[name] = value
    is_docs = path in DOCS_PATHS and path != "/openapi.json"
    headers["Content-Security-Policy"] = DOCS_POLICY if is_docs else POLICY
    if not path.startswith(STATIC_PREFIX):
        headers["Cache-Control"] = "no-store"
    if secure:
        headers["Strict-Transport-Security"] = HSTS
