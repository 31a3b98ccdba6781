"""The operator console in a real headless Chromium, against a real server (uvicorn on a free
port, in a thread) and a SQLite database prepared with the services: a plan whose first
installment is long overdue, with penalty interest.

The story: an agent signs in, finds the borrower by phone, opens the plan, waives the penalty
with a reason; an admin then finds that waiver in the audit log. Each step leaves a screenshot in
``test-artifacts/console/`` (git-ignored) for a person to look at: the Chinese must be text, not
boxes."""

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from fenqi.clock import today
from fenqi.domain.money import Money
from fenqi.services import borrowers, credentials, policy, products, servicing
from fenqi.services.policy import Role
from fenqi.store.database import make_engine, upgrade
from fenqi.wire import present
from tests.e2e.chromium import ARGS, CHROMIUM
from tests.e2e.serving import serving
from tests.simulated import simulated_context

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
PASSWORD = "a long password"
PHONE = "13900139000"
REASON = "首次逾期，客户来电说明情况"


@pytest.fixture
def chromium() -> str:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing — the console's browser test is SKIPPED, NOT PASSED: "
                    "install Debian's chromium and fonts-noto-cjk (make test does)")  # fmt: skip
    return str(CHROMIUM)


def prepare(url: str) -> tuple[int, str]:
    """A borrower whose plan began 80 days ago and was never paid: its first installment is
    about 50 days past due. Returns the plan's id and its penalty today."""
    engine = make_engine(url)
    upgrade(engine)
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    credentials.create_user(context, "agent", PASSWORD, Role.AGENT)
    credentials.create_user(context, "admin", PASSWORD, Role.ADMIN)
    who = borrowers.create_borrower(context, "王芳", PHONE, Money.parse("30000"))
    borrowers.bind_method(context, who.id, "alipay", "wangfang@example.com")
    began = today() - timedelta(days=80)  # the server's day: China's
    order = servicing.Order(who.id, "TM-2026-0815", "天猫", Money.parse("6000"), "cash", 12,
                            began)  # fmt: skip
    loan = present(servicing.checkout(context, order))["id"]
    penalty = present(servicing.show_loan(context, loan, today()))["outstanding_penalty"]
    engine.dispose()
    assert Money(0) < Money.parse(penalty) <= policy.AGENT_WAIVER_LIMIT, penalty
    return loan, penalty


def shot(page: Page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/console")
    expect(page).to_have_url(f"{base}/console/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form[action='/console/login'] button[type=submit]")
    expect(page).to_have_url(f"{base}/console")


def test_an_agent_waives_a_penalty_and_an_admin_finds_it_in_the_audit_log(
    chromium: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'console.sqlite3'}"
    loan, penalty = prepare(url)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serving(url) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        refused: list[str] = []  # a script or style the Content-Security-Policy refused
        page.on("console", lambda line: refused.append(line.text) if line.type == "error" else None)
        the_agent_waives_the_penalty(page, base, loan, penalty)
        page.click("#logout button")
        expect(page).to_have_url(f"{base}/console/login")
        the_admin_finds_the_waiver(page, base, loan)
        browser.close()
    assert refused == [], refused


def the_agent_waives_the_penalty(page: Page, base: str, loan: int, penalty: str) -> None:
    page.goto(f"{base}/console")
    expect(page).to_have_url(f"{base}/console/login")
    expect(page.locator("h1")).to_have_text("运营后台登录")
    shot(page, "01-login")
    sign_in(page, base, "agent")
    expect(page.locator("header")).to_contain_text("agent · 客服")

    page.fill("#q", PHONE)
    page.press("#q", "Enter")
    expect(page.locator("table")).to_contain_text("王芳")
    shot(page, "02-found")

    page.get_by_role("link", name="王芳").click()
    expect(page.locator("h1")).to_contain_text("王芳")
    expect(page.locator("tr.overdue")).to_contain_text("逾期")
    shot(page, "03-borrower")

    page.click(f"a[href^='/console/loans/{loan}']")
    expect(page.locator("h1")).to_contain_text(f"分期计划 {loan}")
    expect(page.locator("tr.overdue").first).to_be_visible()
    expect(page.locator("#reverse")).to_have_count(0)  # agents do not reverse
    shot(page, "04-loan")

    page.click("#payoff button[type=submit]")
    expect(page.locator("#payoff [role=status]")).to_contain_text("结清需还")
    shot(page, "05-payoff-quote")

    page.select_option("#waive-what", "penalty")
    page.fill("#waive-amount", penalty)
    page.fill("#waive-reason", REASON)
    page.click("#waive button[type=submit]")
    confirm = page.locator("#confirm-waive")  # what it would do, before anything moves
    expect(confirm).to_contain_text(f"{penalty} → 0.00")
    shot(page, "06-confirm-waiver")
    confirm.locator("button[type=submit]").click()
    expect(page.locator("[role=status]").first).to_contain_text(f"已减免 {penalty} 元")
    expect(page.locator("#events")).to_contain_text("减免")
    expect(page.locator("#journal")).to_contain_text("减免")  # the entry, by what it books
    shot(page, "07-waived")


def the_admin_finds_the_waiver(page: Page, base: str, loan: int) -> None:
    sign_in(page, base, "admin")
    page.get_by_role("link", name="审计日志").click()
    row = page.locator("tr", has_text="减免罚息")  # waive.penalty, in words
    expect(row).to_contain_text(REASON)
    expect(row).to_contain_text("agent")
    expect(row).to_contain_text(f"loan:{loan}")
    shot(page, "08-audit")

    page.fill("#target", f"loan:{loan}")
    page.click("form[action='/console/audit'] button[type=submit]")
    expect(page.locator("tbody tr")).to_have_count(1)
    shot(page, "09-audit-filtered")

    page.get_by_role("link", name="日终").click()
    expect(page.locator("svg.chart rect.bar")).to_have_count(9)
    shot(page, "10-cob")

    page.goto(f"{base}/console/loans/{loan}?lang=en")
    expect(page.locator("#reverse")).to_contain_text("No payment to reverse.")
    shot(page, "11-loan-en")
