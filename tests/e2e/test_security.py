"""The service's defences end to end (the real app and database, over HTTP in-process), on
SQLite and PostgreSQL: lockouts answered with 429 and Retry-After the same way for accounts that
do not exist, limits per client address that only a trusted proxy can forward, the security
headers and cookie flags, the settings that close /docs and /metrics, and operators disabled and
keys revoked stopping at once."""

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine

from fenqi.domain.money import Money
from fenqi.http import hardening
from fenqi.http.app import create_app
from fenqi.services import borrowers, credentials
from fenqi.services.context import Context
from fenqi.services.policy import Role
from tests.e2e.borrowers import sign_in_code
from tests.simulated import simulated_context

PASSWORD = "a long password"
HER = "13900000001"
TEMPLATES = Path(hardening.__file__).parents[1] / "web" / "templates"
Client = Callable[..., TestClient]


@pytest.fixture
def context(engine: Engine) -> Context:
    made = simulated_context(engine, actor="setup")
    credentials.create_user(made, "agent", PASSWORD, Role.AGENT)
    credentials.create_user(made, "viewer", PASSWORD, Role.VIEWER)
    borrowers.create_borrower(made, "王芳", HER, Money.parse("1000"))
    return made


@pytest.fixture
def client(
    context: Context, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Client]:
    """A client of an app made with the settings given (``FENQI_…`` names, without the
    prefix), from the address given."""
    opened: list[TestClient] = []

    def make(address: str = "198.51.100.7", base: str = "http://testserver",
             **settings: str) -> TestClient:  # fmt: skip
        for name, value in settings.items():
            monkeypatch.setenv(f"FENQI_{name.upper()}", value)
        made = TestClient(create_app(database_url), base_url=base, client=(address, 50000))
        opened.append(made)
        return made.__enter__()

    yield make
    for made in opened:
        made.__exit__(None, None, None)
        made.app.state.context.engine.dispose()  # type: ignore[attr-defined]


def login(client: TestClient, username: str, password: str, **headers: str) -> Response:
    return client.post("/api/auth/login", json={"username": username, "password": password},
                       headers=headers)  # fmt: skip


def try_code(client: TestClient, phone: str, code: str, **headers: str) -> Response:
    return client.post("/api/auth/session", json={"phone": phone, "code": code}, headers=headers)


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def locked(answer: Response) -> str:
    """A lockout: 429 with a problem document and Retry-After (seconds); its detail."""
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "urn:fenqi:problem:too-many-attempts"
    assert 0 < int(answer.headers["Retry-After"]) <= 15 * 60
    return str(answer.json()["detail"])


# -- lockouts -------------------------------------------------------------------------------------


def test_wrong_passwords_lock_a_name_out_alike_whether_it_exists_or_not(client: Client) -> None:
    api = client()
    answers = {}
    for name in ("agent", "nobody"):
        tries = [login(api, name, f"guess {n}") for n in range(credentials.PASSWORD_TRIES.times)]
        assert {answer.status_code for answer in tries} == {401}
        answers[name] = locked(login(api, name, "one more"))
    assert answers["agent"] == answers["nobody"] == (
        "too many sign-in attempts; try again in 15 minute(s)")  # fmt: skip
    locked(login(api, "agent", PASSWORD))  # even the right one waits
    assert login(api, "viewer", PASSWORD).status_code == 200  # another name is not locked


def test_a_code_allows_five_tries_then_a_lockout_alike_for_any_phone(
    client: Client, context: Context
) -> None:
    api = client()
    answers = {}
    for phone in (HER, "13911112222"):  # hers, and one that is nobody's
        assert api.post("/api/auth/code", json={"phone": phone}).json()["sent"]
        guess = wrong(sign_in_code(context.engine, HER))
        tries = [try_code(api, phone, guess) for _ in range(credentials.CODE_ATTEMPTS)]
        assert {answer.status_code for answer in tries} == {401}
        answers[phone] = locked(try_code(api, phone, guess))
    assert answers[HER] == answers["13911112222"] == (
        "too many wrong codes; ask for a new code; try again in 1 minute(s)")  # fmt: skip


def test_one_address_is_limited_and_only_a_trusted_proxy_says_which(client: Client) -> None:
    def exhaust(api: TestClient, forwarded: str) -> None:
        for n in range(credentials.ADDRESS_TRIES.times):
            answer = try_code(api, f"1370000{n:04d}", "123456", **{"X-Forwarded-For": forwarded})
            assert answer.status_code == 401, answer.text

    direct = client("10.0.0.1")  # X-Forwarded-For from a client is ignored: it is the client
    exhaust(direct, "203.0.113.1")
    locked(try_code(direct, HER, "123456", **{"X-Forwarded-For": "203.0.113.2"}))

    proxied = client("10.0.0.2", TRUSTED_PROXIES="10.0.0.0/24")
    exhaust(proxied, "203.0.113.3")
    locked(try_code(proxied, HER, "123456", **{"X-Forwarded-For": "203.0.113.3"}))
    behind = try_code(proxied, HER, "123456", **{"X-Forwarded-For": "203.0.113.4"})
    assert behind.status_code == 401  # another client behind the same proxy


def test_too_many_code_requests_from_one_address_are_refused(client: Client) -> None:
    api = client("203.0.113.9")
    for n in range(credentials.CODE_REQUESTS.times):
        assert api.post("/api/auth/code", json={"phone": f"1370000{n:04d}"}).status_code == 200
    locked(api.post("/api/auth/code", json={"phone": HER}))


def test_the_console_shows_a_lockout_in_its_words(client: Client) -> None:
    pages = client()
    for name in ("agent", "nobody"):
        for _ in range(credentials.PASSWORD_TRIES.times):
            tried = pages.post("/console/login", data={"username": name, "password": "x"})
            assert tried.status_code == 401
        page = pages.post("/console/login", data={"username": name, "password": PASSWORD})
        assert page.status_code == 429
        assert int(page.headers["Retry-After"]) > 0
        assert "登录尝试次数过多，请15分钟后再试。" in page.text
    english = pages.post("/console/login?lang=en", data={"username": "agent", "password": "x"})
    assert "Too many sign-in attempts. Try again in 15 minute(s)." in english.text


def test_the_borrower_page_shows_a_lockout_in_its_words(client: Client, context: Context) -> None:
    pages = client()
    assert pages.post("/me/login/code", data={"phone": HER}).status_code == 200
    guess = wrong(sign_in_code(context.engine, HER))
    for _ in range(credentials.CODE_ATTEMPTS):
        assert pages.post("/me/login", data={"phone": HER, "code": guess}).status_code == 401
    page = pages.post("/me/login", data={"phone": HER, "code": guess})
    assert page.status_code == 429
    assert int(page.headers["Retry-After"]) <= credentials.RESEND.seconds
    assert "尝试次数过多。请1分钟后重新获取验证码再登录。" in page.text
    assert 'action="/me/login/code"' in page.text  # and the way to a new code


# -- disabled operators and revoked keys ----------------------------------------------------------


def test_a_disabled_operators_key_and_session_stop_at_once(
    client: Client, context: Context
) -> None:
    api = client()
    key = {"X-API-Key": credentials.create_api_key(context, "agent").api_key}
    pages = client()
    assert pages.post("/console/login", data={"username": "agent", "password": PASSWORD}).is_success
    assert api.get("/api/me", headers=key).json()["name"] == "agent"
    credentials.disable_user(context, "agent")
    assert api.get("/api/me", headers=key).status_code == 401
    assert pages.get("/console", follow_redirects=False).headers["location"] == "/console/login"
    refused = login(api, "agent", PASSWORD)
    assert (refused.status_code, refused.json()["detail"]) == (
        401, "the user name or the password is wrong")  # fmt: skip


def test_a_revoked_key_stops_at_once(client: Client, context: Context) -> None:
    api = client()
    made = credentials.create_api_key(context, "viewer")
    assert api.get("/api/me", headers={"X-API-Key": made.api_key}).status_code == 200
    credentials.revoke_api_key(context, made.key_id)
    assert api.get("/api/me", headers={"X-API-Key": made.api_key}).status_code == 401


# -- headers and cookies --------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(client: Client, context: Context) -> None:
    api = client()
    key = {"X-API-Key": credentials.create_api_key(context, "viewer").api_key}
    for answer in (api.get("/me/login"), api.get("/console/login"), api.get("/api/me", headers=key),
                   api.get("/api/loans/1"), api.get("/healthz")):  # fmt: skip
        headers = answer.headers
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self';" in policy
        assert "unsafe-inline" not in policy
        assert "Strict-Transport-Security" not in headers
    style = api.get("/static/fenqi.css")
    assert style.status_code == 200
    assert "no-store" not in style.headers.get("Cache-Control", "")
    docs = api.get("/docs")
    assert docs.headers["Content-Security-Policy"] == "frame-ancestors 'none'"


def test_no_page_has_an_inline_script_or_style() -> None:
    """The Content-Security-Policy allows none: each would be refused by the browser."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=|javascript:", re.I)
    for template in TEMPLATES.rglob("*.html"):
        assert not inline.search(template.read_text()), template


def session_cookie(answer: Response) -> str:
    return next(value for name, value in answer.headers.multi_items()
                if name == "set-cookie" and value.startswith("fenqi_session="))  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "base", "secure"),
    [
        ({}, "http://testserver", False),
        ({"SECURE_COOKIES": "yes"}, "http://testserver", True),
        ({}, "https://testserver", True),
    ],
)
def test_cookies_are_http_only_and_secure_behind_tls(
    client: Client, settings: dict[str, str], base: str, secure: bool
) -> None:
    pages = client(base=base, **settings)
    signed = pages.post("/console/login", data={"username": "agent", "password": PASSWORD},
                        follow_redirects=False)  # fmt: skip
    cookie = session_cookie(signed).lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert ("secure" in cookie.split("; ")) == secure
    assert ("Strict-Transport-Security" in signed.headers) == secure
    language = pages.get("/console/login?lang=en").headers["set-cookie"].lower()
    assert "httponly" in language
    assert ("secure" in language.split("; ")) == secure


def test_a_trusted_proxy_says_the_client_came_over_https(client: Client) -> None:
    https = {"X-Forwarded-Proto": "https"}
    for trusted, secure in (("10.0.0.0/24", True), ("10.9.9.9", False)):
        pages = client("10.0.0.2", TRUSTED_PROXIES=trusted)
        signed = pages.post("/console/login", data={"username": "agent", "password": PASSWORD},
                            headers=https, follow_redirects=False)  # fmt: skip
        assert ("secure" in session_cookie(signed).lower().split("; ")) == secure


# -- /docs and /metrics ---------------------------------------------------------------------------


def test_docs_can_be_turned_off(client: Client) -> None:
    shown = client()
    assert shown.get("/openapi.json").status_code == 200
    assert shown.get("/docs").status_code == 200
    hidden = client(DOCS="off")
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        answer = hidden.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"] == "application/problem+json"
    assert hidden.get("/healthz").status_code == 200


def test_metrics_can_be_for_staff_only_or_off(client: Client, context: Context) -> None:
    assert client().get("/metrics").status_code == 200
    assert client(METRICS="off").get("/metrics").status_code == 404
    staff = client(METRICS="staff")
    assert staff.get("/metrics").status_code == 401
    key = credentials.create_api_key(context, "viewer").api_key
    assert staff.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert staff.get("/metrics", headers={"X-API-Key": key}).status_code == 200
    assert staff.post("/console/login", data={"username": "agent", "password": PASSWORD}).is_success
    assert "fenqi_http_requests_total" in staff.get("/metrics").text  # the console's session
    staff.cookies.clear()
    assert staff.post("/api/auth/code", json={"phone": HER}).status_code == 200
    signed = try_code(staff, HER, sign_in_code(context.engine, HER))
    her = {"Authorization": f"Bearer {signed.json()['token']}"}
    assert staff.get("/metrics", headers=her).status_code == 403  # a borrower is no operator


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("FENQI_METRICS", "maybe", "open, staff, off"),
        ("FENQI_DOCS", "staff", "open, off"),
        ("FENQI_SECURE_COOKIES", "perhaps", "yes or no"),
        ("FENQI_TRUSTED_PROXIES", "proxy.example", "not an IP address"),
    ],
)
def test_a_setting_that_cannot_be_used_is_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(hardening.SettingError, match=says):
        create_app(database_url)
