"""Server-rendered pages: the borrower's "我的分期" and the operator console."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from fenqi.web import borrower, console
from fenqi.web.pages import CsrfError, SignInNeededError, render


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


def _routers() -> list[APIRouter]:
    """The pages' routers (the borrower's page and the console register here)."""
    return [console.router, borrower.router]
