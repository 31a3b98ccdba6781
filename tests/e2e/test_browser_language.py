"""One language at a time: every borrower and console page, drawn in a real headless Chromium
in zh-CN, shows no English word but the allowed ones (the language switch, and what people and
partners typed: names, merchants, items, order numbers); drawn with ``?lang=en``, no Chinese
but the same. Code names (a product's code, an audit record's fields) are set in ``<code>``
and are not words. The pages walked include refusals (an amount over the payoff, a declined
debit) and a settled plan, since a refusal is where a raw message would leak.

Screenshots go to ``test-artifacts/language/`` (git-ignored)."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fenqi.clock import today
from fenqi.domain.events import PrepayMode
from fenqi.domain.money import Money
from fenqi.services import borrowers, credentials, products, servicing
from fenqi.services.context import Context
from fenqi.services.policy import Role
from fenqi.store.database import make_engine, upgrade
from fenqi.wire import present
from tests.e2e.borrowers import open_plan, pay_on_time, sign_in_code
from tests.e2e.chromium import ARGS, CHROMIUM, skip_without_chromium
from tests.e2e.serving import serving
from tests.simulated import simulated_context

skip_without_chromium("LANGUAGE BROWSER TESTS")

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402 - only with Chromium

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "language"
PHONE = "13900139000"
PASSWORD = "a long password"
WALLET = "wangfang@example.com"
# What people and partners typed, shown as typed in either language; and the switch to the other.
TYPED = ("王芳", "华为商城", "华为", "Mate", "JD-20260815-0001", "TM-0002", "天猫", "admin", "setup",
         WALLET, "abc", "typed", "nobody", "not an account")  # fmt: skip
SWITCH = {"zh-CN": "English", "en": "中文"}
LATIN = re.compile(r"[A-Za-z]{2,}")
HAN = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff01-\uff5e]+")
# The visible text: the body without code names, plus what a screen reader or a blank field says.
TEXT = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll("code, script, style").forEach((element) => element.remove());
  const said = [...document.querySelectorAll("[placeholder], [aria-label], img[alt]")]
    .map((e) => e.getAttribute("placeholder") || e.getAttribute("aria-label") || e.getAttribute("alt"));
  return [body.textContent, ...said].join("\\n");
}"""


@dataclass(frozen=True)
class Shop:
    url: str
    engine: Engine
    context: Context
    borrower_id: int
    open_loan: int
    settled_loan: int
    receipt: str


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """She has an overdue cash plan (two bills paid on time) and a mall plan paid off; her card
    holds plenty, her Alipay account next to nothing (a debit from it is declined)."""
    url = f"sqlite:///{tmp_path / 'fenqi.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    credentials.create_user(context, "admin", PASSWORD, Role.ADMIN)
    plan = open_plan(context, PHONE, "JD-20260815-0001", due_days_ago=10)
    pay_on_time(context, plan, 2)
    borrowers.bind_method(context, plan.borrower_id, "alipay", WALLET, sim_balance=Money(100))
    mall = servicing.Order(plan.borrower_id, "TM-0002", "天猫", Money.parse("3000"), "mall-3", 3,
                           today() - timedelta(days=20))  # fmt: skip
    settled = present(servicing.checkout(context, mall))["id"]
    servicing.prepay(
        context,
        settled,
        None,
        mode=PrepayMode.REDUCE_INSTALLMENT,
        source=servicing.Source(),
        day=today() - timedelta(days=5),
    )
    receipt = present(servicing.list_receipts(context, plan.loan_id))[0]["id"]
    with serving(url) as base:
        yield Shop(base, engine, context, plan.borrower_id, plan.loan_id, settled, receipt)
    engine.dispose()


@pytest.fixture
def browser_page() -> Iterator[Page]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser.new_page(viewport={"width": 1024, "height": 900})
        browser.close()


def foreign_words(page: Page, lang: str) -> list[str]:
    """Words of the other language on the page, beyond the typed ones and the switch."""
    text = page.evaluate(TEXT)
    for allowed in (*TYPED, SWITCH[lang]):
        text = text.replace(allowed, " ")
    text = re.sub(r"\b[a-z_]+:[0-9]+\b", " ", text)  # an audit target written as an example
    text = re.sub(r"[\w*.]+@[\w.]+", " ", text)  # her wallet's account, masked
    found = LATIN.findall(text) if lang == "zh-CN" else HAN.findall(text)
    return sorted(set(found))


def check(page: Page, lang: str, name: str) -> None:
    page.screenshot(path=SHOTS / f"{lang}-{name}.png", full_page=True)
    assert foreign_words(page, lang) == [], f"{name} in {lang}"


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_every_borrower_page_speaks_one_language(shop: Shop, browser_page: Page, lang: str) -> None:
    page = browser_page
    page.goto(f"{shop.url}/me/login?lang={lang}")
    check(page, lang, "me-login")
    page.fill("#phone", "1390013")  # too short
    page.locator("form[action='/me/login/code'] button").click()
    check(page, lang, "me-login-bad-phone")
    page.fill("#phone", PHONE)
    page.locator("form[action='/me/login/code'] button").click()
    page.fill("#code", "000000")
    page.locator("form[action='/me/login'] button").click()
    expect(page.locator("[role=alert]")).to_be_visible()
    check(page, lang, "me-login-wrong-code")
    page.fill("#code", sign_in_code(shop.engine, PHONE))
    page.locator("form[action='/me/login'] button").click()
    expect(page).to_have_url(f"{shop.url}/me")
    check(page, lang, "me-plans")
    for path, name in ((f"/me/loans/{shop.open_loan}", "me-plan-overdue"),
                       (f"/me/loans/{shop.settled_loan}", "me-plan-settled"),
                       (f"/me/receipts/{shop.receipt}", "me-receipt"), ("/me/methods", "me-methods"),
                       ("/me/hardship", "me-hardship"), ("/me/calendar", "me-calendar"),
                       (f"/me/loans/{shop.open_loan}/prepay?amount=1000", "me-prepay"),
                       (f"/me/loans/{shop.open_loan}/explained", "me-explained"),
                       ("/me/loans/999999", "me-missing")):  # fmt: skip
        page.goto(f"{shop.url}{path}")
        check(page, lang, name)

    page.goto(f"{shop.url}/me/loans/{shop.open_loan}")
    page.fill("#amount", "30000")  # more than pays the plan off
    page.locator("#pay button").click()
    expect(page.locator("[role=alert]")).to_be_visible()
    check(page, lang, "me-refused-over-payoff")
    page.goto(f"{shop.url}/me/loans/{shop.open_loan}")
    wallet = page.locator("#pay select[name=method] option", has_text="@").get_attribute("value")
    page.locator("#pay select[name=method]").select_option(wallet)
    page.locator("#pay button").click()
    expect(page.locator("#confirm-pay")).to_be_visible()
    check(page, lang, "me-confirm-pay")
    page.locator("#confirm-pay button").click()
    expect(page.locator("[role=alert]")).to_be_visible()
    check(page, lang, "me-refused-declined")
    page.goto(f"{shop.url}/me/methods")
    page.locator("#kind").select_option("alipay")
    page.fill("#account", "not an account")
    page.locator("#bind button").click()
    expect(page.locator("[role=alert]")).to_be_visible()
    check(page, lang, "me-refused-bind")


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_every_console_page_speaks_one_language(shop: Shop, browser_page: Page, lang: str) -> None:
    page = browser_page
    page.goto(f"{shop.url}/console/login?lang={lang}")
    check(page, lang, "console-login")
    page.fill("#username", "admin")
    page.fill("#password", PASSWORD)
    page.click("form[action='/console/login'] button[type=submit]")
    expect(page).to_have_url(f"{shop.url}/console")
    check(page, lang, "console-search")
    day = today()
    for path, name in ((f"/console?q={PHONE[-4:]}", "console-found"),
                       (f"/console/borrowers/{shop.borrower_id}", "console-borrower"),
                       (f"/console/loans/{shop.open_loan}?payoff={day}", "console-loan"),
                       (f"/console/loans/{shop.settled_loan}", "console-loan-settled"),
                       ("/console/cob", "console-cob"), ("/console/audit", "console-audit"),
                       (f"/console/receipts/{shop.receipt}", "console-receipt"),
                       ("/console/loans/999999", "console-missing")):  # fmt: skip
        page.goto(f"{shop.url}{path}")
        check(page, lang, name)

    page.goto(f"{shop.url}/console/loans/{shop.open_loan}")
    page.fill("#pay-amount", "30000")
    page.locator("#pay button[type=submit]").click()
    expect(page.locator("[role=alert]")).to_be_visible()
    check(page, lang, "console-refused-over-payoff")
    page.fill("#waive-amount", "abc")  # typed: shown back as typed
    page.fill("#waive-reason", "typed")
    page.locator("#waive button[type=submit]").click()
    expect(page.locator("[role=alert]")).to_be_visible()
    check(page, lang, "console-refused-amount")
    page.goto(f"{shop.url}/console?q=nobody")
    check(page, lang, "console-found-nobody")
    page.goto(f"{shop.url}/console/loans/{shop.settled_loan}")
    page.locator("#reverse-seq").select_option(index=1)  # the picker has no default
    page.fill("#reverse-reason", "typed")
    page.locator("#reverse button[type=submit]").click()  # it would reopen the settled plan
    expect(page.locator("#confirm-reverse")).to_be_visible()
    check(page, lang, "console-confirm-reversal")
