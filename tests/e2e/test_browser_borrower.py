"""A borrower's story in a real browser: headless Chromium (Debian's, through Playwright) on a
phone-sized screen, against the real server on a SQLite database. She signs in with the code
texted to her, sees her bills (one overdue, in red), pays it and gets a receipt, sees it paid,
takes the payoff quote and pays the plan off, and sees it settled.

Screenshots of each step go to ``test-artifacts/borrower/`` (git-ignored): look at them, since
only a person sees whether Chinese renders as text and the page reads well on a phone."""

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from fenqi.clock import today
from fenqi.services import products, servicing
from fenqi.services.context import Context
from fenqi.store.database import make_engine, upgrade
from fenqi.wire import present
from tests.e2e.borrowers import MASKED_CARD, Plan, open_plan, pay_on_time, sign_in_code
from tests.e2e.chromium import ARGS, CHROMIUM, skip_without_chromium
from tests.e2e.serving import serving
from tests.simulated import simulated_context

skip_without_chromium("BROWSER TESTS")

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402 - only with Chromium

PHONE_SCREEN = {"width": 390, "height": 844}
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "borrower"
PHONE = "13900139000"


@dataclass(frozen=True)
class Server:
    url: str
    engine: Engine
    context: Context
    plan: Plan


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The app served by uvicorn in a thread, on a database where she has a cash plan whose
    first two bills she paid on time and whose third fell due ten days ago, unpaid."""
    url = f"sqlite:///{tmp_path / 'fenqi.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    plan = open_plan(context, PHONE, "JD-20260815-0001", due_days_ago=10)
    pay_on_time(context, plan, 2)
    with serving(url) as base:
        yield Server(base, engine, context, plan)
    engine.dispose()


@pytest.fixture
def phone() -> Iterator[Page]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport=PHONE_SCREEN, device_scale_factor=2,
                                      is_mobile=True, has_touch=True, locale="zh-CN")  # fmt: skip
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # A script or style the Content-Security-Policy refused is logged as an error.
        page.on("console", lambda line: errors.append(f"{line.text} {line.location['url']}")
                if line.type == "error" else None)  # fmt: skip
        yield page
        browser.close()
        assert errors == [], errors


def shot(page: Page, name: str) -> None:
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def test_she_pays_a_bill_then_pays_the_plan_off_on_her_phone(server: Server, phone: Page) -> None:
    loan = present(servicing.show_loan(server.context, server.plan.loan_id, today()))
    assert loan["installments"][2]["status"] == "overdue"
    signs_in(phone, server)
    pays_the_overdue_bill(phone, server, loan)
    pays_the_plan_off(phone, server)
    looks_around(phone, server)
    assert present(servicing.show_loan(server.context, server.plan.loan_id, today()))["status"] == (
        "settled"
    )


def signs_in(phone: Page, server: Server) -> None:
    phone.goto(f"{server.url}/me")
    expect(phone).to_have_url(f"{server.url}/me/login")
    shot(phone, "01-sign-in")
    phone.fill("#phone", PHONE)
    phone.get_by_role("button", name="获取验证码").click()
    phone.fill("#code", sign_in_code(server.engine, PHONE))
    shot(phone, "02-code")
    phone.get_by_role("button", name="登录", exact=True).click()
    expect(phone).to_have_url(f"{server.url}/me")


def pays_the_overdue_bill(phone: Page, server: Server, loan: dict[str, Any]) -> None:
    """Her bills, the third overdue in red; she pays what is due (the form's amount)."""
    plan_card = phone.locator(f"#plan-{server.plan.loan_id}")
    expect(plan_card).to_contain_text("华为商城")
    expect(plan_card).to_contain_text("已逾期")
    expect(plan_card).to_contain_text(f"¥{loan['amount_due']}")
    shot(phone, "03-plans")

    plan_card.get_by_role("link", name="查看账单与还款").click()
    third = phone.locator("#bills > table > tbody > tr:not(.detail)").nth(3)
    expect(phone.locator("tr.overdue")).to_have_count(1)
    expect(third).to_contain_text(f"逾期{loan['installments'][2]['dpd']}天")
    expect(phone.locator("#amount")).to_have_value(loan["amount_due"])
    shot(phone, "04-plan-overdue")

    pay = phone.get_by_role("button", name="还款", exact=True)
    expect(pay).to_have_css("background-color", "rgb(194, 65, 12)")  # /static/fenqi.css
    pay.click()
    confirm = phone.locator("#confirm-pay")  # where it would go, before anything moves
    expect(confirm).to_contain_text(f"¥{loan['amount_due']}")
    expect(confirm).to_contain_text("这笔钱还到")
    shot(phone, "04b-confirm")
    confirm.get_by_role("button", name=f"确认还款 ¥{loan['amount_due']}").click()
    receipt = phone.locator("#receipt")
    expect(receipt).to_contain_text("还款凭证")
    expect(receipt).to_contain_text(f"¥{loan['amount_due']}")
    shot(phone, "05-receipt")

    phone.get_by_role("link", name="返回账单").click()
    expect(phone.locator("tr.overdue")).to_have_count(0)
    expect(third).to_contain_text("已还")
    expect(phone.locator("#receipts a")).to_have_count(3)  # two on time, and today's
    shot(phone, "06-bill-paid")


def pays_the_plan_off(phone: Page, server: Server) -> None:
    quote = present(servicing.quote_payoff(server.context, server.plan.loan_id, today()))
    payoff = phone.locator("#payoff")
    expect(payoff).to_contain_text(f"¥{Decimal(quote['amount']):,}")
    payoff.screenshot(path=SHOTS / "07-payoff-quote.png")
    payoff.get_by_role("button", name="一键结清").click()
    expect(phone.locator("#receipt")).to_contain_text("提前还款")
    shot(phone, "08-payoff-receipt")

    phone.get_by_role("link", name="返回账单").click()
    expect(phone.locator("#summary .pill")).to_have_text("已结清")
    expect(phone.locator("#pay")).to_have_count(0)
    shot(phone, "09-settled")
    phone.get_by_role("link", name="我的分期", exact=True).click()
    expect(phone.locator(f"#plan-{server.plan.loan_id} .pill")).to_have_text("已结清")
    shot(phone, "10-plans-settled")


def looks_around(phone: Page, server: Server) -> None:
    """The hardship page, her methods, and her plans in English."""
    phone.get_by_role("link", name="还款遇到困难？看看我们可以怎样帮您").click()
    expect(phone.locator("main")).to_contain_text("最长可达60期")
    shot(phone, "11-hardship")
    phone.get_by_role("link", name="支付方式").click()
    expect(phone.locator("main")).to_contain_text(MASKED_CARD)
    shot(phone, "12-methods")
    asked: list[str] = []

    def say_no(dialog: Any) -> None:  # /static/fenqi.js asks before a method is removed
        asked.append(dialog.message)
        dialog.dismiss()

    phone.once("dialog", say_no)
    phone.get_by_role("button", name="解绑").click()
    expect(phone.locator("main")).to_contain_text(MASKED_CARD)
    assert asked == [f"确定解绑 {MASKED_CARD} 吗？"]
    phone.goto(f"{server.url}/me?lang=en")
    expect(phone.locator(f"#plan-{server.plan.loan_id} .pill")).to_have_text("Paid off")
    shot(phone, "13-plans-english")
