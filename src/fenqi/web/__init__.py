"""Server-rendered pages: the borrower's "我的分期" and the operator console, with their
stylesheets and script under ``/static`` (no inline script or style: http/hardening.py's
Content-Security-Policy allows none)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from fenqi.http.problems import RETRY_AFTER
from fenqi.web import borrower, console
from fenqi.web.pages import CsrfError, SignInNeededError, render

PAGES = (console.HOME, borrower.HOME)


def install(app: FastAPI) -> None:
    """Adds the pages and what they do when a visitor is not signed in or a form is forged."""

    @app.exception_handler(SignInNeededError)
    async def to_login(_request: Request, error: SignInNeededError) -> RedirectResponse:
        return RedirectResponse(error.login, status_code=303)

    @app.exception_handler(CsrfError)
    async def forged(request: Request, _error: CsrfError) -> HTMLResponse:
        return render(request, "refused.html", status_code=403)

    for router in _routers():
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), "static")


def _routers() -> list[APIRouter]:
    """The pages' routers (the borrower's page and the console register here)."""
    return [console.router, borrower.router]


def is_page(path: str) -> bool:
    """Whether ``path`` is one of the pages (which answer in HTML, errors included)."""
    return any(path == home or path.startswith(home + "/") for home in PAGES)


def error_page(request: Request, status: int, request_id: str) -> HTMLResponse:
    """A calm page for an error nothing else answered: busy (409, 503) says to try again in a
    moment; anything else says it was noted, and to look before trying again, since it may have
    happened after the change was saved. Both give the request's id to quote to support."""
    words = "error.busy" if status in RETRY_AFTER else "error.unexpected"
    answer = render(request, "error.html", status, words=words, request_id=request_id)
    if status in RETRY_AFTER:
        answer.headers["Retry-After"] = str(RETRY_AFTER[status])
    return answer
