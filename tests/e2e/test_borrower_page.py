"""The borrower's page 我的分期 end to end (the real app and database, over HTTP in-process), on
SQLite and PostgreSQL: signing in with a code, her plans with their APR and total cost, a plan
that is not hers answering exactly like one that does not exist, forms refused without her CSRF
token, paying (once, however often the form is sent), paying off, her methods, and English."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi import seeding
from fenqi.clock import CHINA, today
from fenqi.domain.money import Money
from fenqi.http.app import create_app
from fenqi.services import borrowers, products, servicing
from fenqi.services.context import Context
from fenqi.shown import apr, grouped, yuan
from fenqi.store.schema import BorrowerRow, LoanRow, SignInCodeRow, SmsOutboxRow
from fenqi.wire import present
from tests.e2e.borrowers import MASKED_CARD, Plan, money_held, open_plan, sign_in_code
from tests.simulated import simulated_context

HER, OTHER = "13900000001", "13900000002"
UNTRANSLATED = re.compile(r"\b(me|app|sign|console)\.[a-z_]+(\.[a-z_]+)*\b")


class Forms(HTMLParser):
    """The values a page's forms would send, by form id (or action): hidden and text inputs,
    and each select's chosen option."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._form: dict[str, str] | None = None
        self._select: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = self.forms.setdefault(found.get("id") or found["action"], {})
        elif self._form is None:
            return
        elif tag == "input" and found.get("type") != "checkbox":
            self._form[found["name"]] = found.get("value", "")
        elif tag == "select":
            self._select = found["name"]
        elif tag == "option" and self._select and (self._select not in self._form
                                                   or "selected" in found):  # fmt: skip
            self._form[self._select] = found["value"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


@dataclass
class Home:
    client: TestClient
    engine: Engine
    context: Context
    mine: Plan
    other: Plan

    def page(self, path: str) -> Response:
        answer = self.client.get(path)
        assert not UNTRANSLATED.search(answer.text), UNTRANSLATED.search(answer.text)
        return answer

    def form(self, path: str, form_id: str) -> dict[str, str]:
        return Forms(self.page(path).text).forms[form_id]

    def post(self, path: str, data: dict[str, str]) -> Response:
        return self.client.post(path, data=data, follow_redirects=False)

    def pay(self, path: str, data: dict[str, str]) -> Response:
        """The pay form sent, then its confirm step's form when it shows one: what paying
        takes, two clicks."""
        shown = self.post(f"{path}/pay", data)
        if shown.status_code != 200 or 'id="confirm-pay"' not in shown.text:
            return shown
        return self.post(f"{path}/pay", Forms(shown.text).forms["confirm-pay"])

    def loan(self, plan: Plan) -> dict[str, Any]:
        return present(servicing.show_loan(self.context, plan.loan_id, today()))

    def events(self, plan: Plan) -> int:
        return len(present(servicing.loan_history(self.context, plan.loan_id))["events"])


def sign_in(client: TestClient, engine: Engine, phone: str) -> None:
    sent = client.post("/me/login/code", data={"phone": phone})
    assert sent.status_code == 200
    signed = client.post("/me/login", data={"phone": phone, "code": sign_in_code(engine, phone)},
                         follow_redirects=False)  # fmt: skip
    assert (signed.status_code, signed.headers["location"]) == (303, "/me")


@pytest.fixture
def home(engine: Engine, database_url: str) -> Iterator[Home]:
    """Two borrowers, each with a funded card and a cash plan three bills behind; the first
    signed in."""
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    mine = open_plan(context, HER, "JD-MINE")
    other = open_plan(context, OTHER, "TM-SECRET-OTHER")
    with TestClient(create_app(database_url)) as client:
        sign_in(client, engine, HER)
        yield Home(client, engine, context, mine, other)


def test_she_signs_in_with_a_code_and_a_wrong_code_is_refused(engine: Engine,
                                                               database_url: str) -> None:  # fmt: skip
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    open_plan(context, HER, "JD-1")
    with TestClient(create_app(database_url)) as client:
        away = client.get("/me", follow_redirects=False)
        assert (away.status_code, away.headers["location"]) == (303, "/me/login")
        assert "手机号" in client.get("/me/login").text
        code_form = client.post("/me/login/code", data={"phone": HER})
        assert code_form.status_code == 200
        assert 'name="code"' in code_form.text
        assert "验证码已发送" in code_form.text
        # When a new code may be asked for: a minute on, in Beijing time.
        again = re.search(r"(\d\d:\d\d:\d\d)（北京时间）之后可以重新获取验证码", code_form.text)
        assert again is not None, code_form.text
        soon = (datetime.now(CHINA) + timedelta(seconds=60)).strftime("%H:%M:%S")
        assert abs(_seconds(again[1]) - _seconds(soon)) <= 5 or _seconds(soon) < 10
        nobody = client.post("/me/login/code", data={"phone": "13911112222"})
        assert nobody.status_code == 200  # the same answer: it tells nothing
        code = sign_in_code(engine, HER)
        wrong = "000000" if code != "000000" else "111111"
        refused = client.post("/me/login", data={"phone": HER, "code": wrong})
        assert refused.status_code == 401
        assert "验证码不正确或已过期" in refused.text
        for path in ("/me/login/code", "/me/login"):
            forged = client.post(path, data={"phone": HER, "code": code},
                                 headers={"Origin": "null"}, follow_redirects=False)  # fmt: skip
            assert forged.status_code == 403, path
            assert "set-cookie" not in forged.headers
        assert 'name="code"' in refused.text  # the form again
        sign_in(client, engine, HER)
        assert "JD-1" in client.get("/me").text
        csrf = Forms(client.get("/me").text).forms["/me/logout"]["csrf"]
        out = client.post("/me/logout", data={"csrf": csrf}, follow_redirects=False)
        assert (out.status_code, out.headers["location"]) == (303, "/me/login")
        assert client.get("/me", follow_redirects=False).status_code == 303


def test_every_page_sends_a_visitor_to_sign_in(home: Home) -> None:
    home.client.cookies.clear()
    for path in ("/me", f"/me/loans/{home.mine.loan_id}", "/me/methods", "/me/hardship",
                 "/me/receipts/R1-1"):  # fmt: skip
        away = home.client.get(path, follow_redirects=False)
        assert (away.status_code, away.headers["location"]) == (303, "/me/login"), path
    paying = home.post(f"/me/loans/{home.mine.loan_id}/pay", {"amount": "1"})
    assert paying.headers["location"] == "/me/login"


def test_her_plans_show_the_consented_apr_and_total_cost(home: Home) -> None:
    plans = home.page("/me")
    assert plans.status_code == 200
    text = plans.text
    for shown in ("华为商城", "华为 Mate 70", "JD-MINE", "现金分期", "年化利率（复利）", "12.68%",
                  "年化利率（单利）", "12.00%", "借款总成本", "¥661.86", "剩余本金",
                  "¥10,000.00", "已逾期", f"/me/loans/{home.mine.loan_id}"):  # fmt: skip
        assert shown in text, shown
    assert "TM-SECRET-OTHER" not in text
    plan = home.page(f"/me/loans/{home.mine.loan_id}").text
    assert "12.68%" in plan
    assert "¥661.86" in plan


def test_her_page_leads_with_her_limit_and_what_she_has_to_repay(home: Home) -> None:
    """Her limit and what of it is free (as the API's borrower says), then due now, within the
    week, this month and in all (as the API's overview says); the calendar lists every bill
    still owed by month, each month with its sum, and her plans only."""
    seen = present(servicing.overview(home.context, home.mine.borrower_id, today()))
    her = present(borrowers.show_borrower(home.context, home.mine.borrower_id))
    page = home.page("/me").text
    limit = re.search(r'<div class="card" id="limit">(.*?)</div>\s*</div>', page, re.S)
    assert limit is not None
    assert yuan(her["available_limit"]) in limit.group(1)
    assert yuan(her["credit_limit"]) in limit.group(1)
    for key, cell in (("due_within_week", "due-week"), ("due_this_month", "due-month"),
                      ("to_repay", "due-all")):  # fmt: skip
        assert f'id="{cell}">{yuan(seen[key])}<' in page, key
    assert Money.parse(seen["due_within_week"]) >= Money.parse(seen["amount_due"]) > 0
    calendar = home.page("/me/calendar").text
    rows = re.findall(r'<tr class="due (\w+)">(.*?)</tr>', calendar, re.S)
    assert len(rows) == len(seen["installments"]) == 12  # nothing of hers is paid yet
    for (status, row), owed in zip(rows, seen["installments"], strict=True):
        assert status == owed["status"]
        assert owed["due_date"] in row
        assert yuan(owed["amount"]) in row
        assert f"第{owed['period']}/12期" in row
    for month in seen["months"]:
        card = re.search(rf'id="month-{month["month"]}">(.*?)</table>', calendar, re.S)
        assert card is not None, month
        assert f"<strong>{yuan(month['amount'])}</strong>" in card.group(1)
    assert f'href="/me/loans/{home.other.loan_id}"' not in calendar
    english = home.page("/me/calendar?lang=en").text
    for words in ("Repayment calendar", "To repay this month", "Installment 1 of 12"):
        assert words in english, words


def test_her_plan_shows_bills_overdue_in_red_what_is_due_and_the_payoff(home: Home) -> None:
    loan = home.loan(home.mine)
    page = home.page(f"/me/loans/{home.mine.loan_id}")
    assert page.status_code == 200
    overdue = re.findall(r'<tr class="overdue">(.*?)</tr>', page.text, re.S)
    assert len(overdue) == 3
    first = loan["installments"][0]
    assert f"逾期{first['dpd']}天" in overdue[0]
    assert f"罚息¥{first['penalty']}" in overdue[0]
    assert page.text.count('<tr class="future">') == 9
    pay = Forms(page.text).forms["pay"]
    assert pay["amount"] == loan["amount_due"]
    assert pay["method"] == str(home.mine.method_id)
    assert MASKED_CARD in page.text
    quote = present(servicing.quote_payoff(home.context, home.mine.loan_id, today()))
    for part in ("amount", "principal", "interest", "penalty", "valid_through"):
        assert quote[part] in page.text.replace("¥", "").replace(",", ""), part
    assert quote["credit_applied"] == "0.00"
    assert "已抵扣余额" not in page.text  # no credit to apply: no "−¥0.00" line
    assert 'href="/me/hardship"' in page.text
    calm = home.page("/me/hardship").text
    for fact in ("60期", "停息挂账", "罚息", "征信", "400-800-0000"):
        assert fact in calm, fact


def test_each_bill_shows_what_it_still_owes_and_the_plan_is_their_sum(home: Home) -> None:
    """After a payment that clears the penalties, no bill still shows one: each row says what
    it was charged, what was paid and waived of it and what it still owes, part by part, and
    the plan's summary is the sum of its rows, as the API and ``loan show`` say."""
    path = f"/me/loans/{home.mine.loan_id}"
    before = home.loan(home.mine)["installments"]
    charged = [row["penalty"] for row in before if row["status"] == "overdue"]
    assert any(penalty != "0.00" for penalty in charged)
    paid = home.pay(path, {**home.form(path, "pay"), "amount": "500.00"})
    assert paid.status_code == 303
    loan = home.loan(home.mine)
    rows = loan["installments"]
    assert loan["outstanding_penalty"] == "0.00"  # the waterfall pays penalties first
    page = home.page(path).text
    shown = re.findall(r'<tr class="(overdue|due)">(.*?)</tr>\s*<tr class="detail">(.*?)</details>',
                       page, re.S)  # fmt: skip
    owing = [row for row in rows if row["status"] in ("overdue", "due")]
    assert len(shown) == len(owing) > 0
    for (status, bill, detail), row in zip(shown, owing, strict=True):
        if status == "overdue":
            assert f"罚息¥{row['outstanding_penalty']}" in bill
        cells = re.findall(r'<td class="num">¥([0-9,.]+)</td>', detail)
        amounts = [cell.replace(",", "") for cell in cells]
        assert amounts[-4:] == [row["penalty"], row["paid_penalty"], row["waived_penalty"],
                                row["outstanding_penalty"]]  # fmt: skip
        assert amounts[:4] == [row["principal"], row["paid_principal"], "0.00",
                               row["outstanding_principal"]]  # fmt: skip
    billed = [row for row in rows if row["status"] != "future"]
    for part in ("interest", "fee", "penalty"):
        owed = sum(Money.parse(row[f"outstanding_{part}"]) for row in billed)
        assert Money(owed) == Money.parse(loan[f"outstanding_{part}"]), part


def test_with_nothing_due_now_the_due_card_and_the_pay_form_speak_of_the_next_bill(
    home: Home,
) -> None:
    path = f"/me/loans/{home.mine.loan_id}"
    due = home.loan(home.mine)["amount_due"]
    assert home.pay(path, {**home.form(path, "pay"), "amount": due}).status_code == 303
    loan = home.loan(home.mine)
    assert loan["amount_due"] == "0.00"
    upcoming = next(row for row in loan["installments"] if row["status"] != "paid")
    page = home.page(path).text
    shown = page.split('id="due">')[1].split("<form")[0]  # the due card
    assert f"下期应还（{upcoming['due_date']}到期）" in shown
    assert f"¥{upcoming['outstanding']}" in shown.replace(",", "")
    assert "现在应还" not in shown
    assert home.form(path, "pay")["amount"] == upcoming["outstanding"]
    assert "已填入下期应还的金额" in page
    assert "已填入现在应还的金额" not in page


def test_a_written_off_plan_is_shown_to_her_as_still_owed_with_what_she_can_do(
    engine: Engine, database_url: str
) -> None:
    context = simulated_context(engine, actor="setup")
    seeding.seed(context, 60, 12, today(), 7)
    with Session(engine) as session:
        row = session.execute(
            select(LoanRow.id, BorrowerRow.phone)
            .join(BorrowerRow, BorrowerRow.id == LoanRow.borrower_id)
            .where(LoanRow.status == "written_off")
        ).first()
    assert row is not None, "the seeded portfolio has a plan written off"
    loan, phone = row
    with TestClient(create_app(database_url)) as client:
        sign_in(client, engine, phone)
        page = client.get(f"/me/loans/{loan}").text
        assert "逾期未还" in page
        assert "已核销" not in page  # the lender's bookkeeping, which reads as "cancelled"
        assert "仍需还款" in page
        assert 'href="/me/hardship"' in page
        assert 'id="pay"' in page  # she can still pay
        assert "逾期未还" in client.get("/me").text


def test_another_borrowers_plan_is_not_found_like_a_missing_one(home: Home) -> None:
    other, missing = f"/me/loans/{home.other.loan_id}", "/me/loans/999999"
    odd = ("/me/loans/abc", "/me/loans/²", "/me/loans/99999999999999999999")
    answers = [home.page(path) for path in (other, missing, *odd)]
    assert {answer.status_code for answer in answers} == {404}
    assert len({answer.text for answer in answers}) == 1
    assert "TM-SECRET-OTHER" not in answers[0].text
    held, events = money_held(home.engine), home.events(home.other)
    form = home.form(f"/me/loans/{home.mine.loan_id}", "pay")
    for action in ("pay", "payoff"):
        grab = home.post(f"{other}/{action}", {**form, "method": str(home.other.method_id)})
        assert grab.status_code == 404
        assert grab.text == answers[1].text
    theirs = present(servicing.pay(home.context, home.other.loan_id, Money.parse("100"), servicing.Source(),
                           today()))  # fmt: skip
    peek = home.page(f"/me/receipts/{theirs['receipt_id']}")
    assert peek.status_code == 404
    assert "TM-SECRET-OTHER" not in peek.text
    assert (money_held(home.engine), home.events(home.other)) == (held - 100_00, events + 1)
    csrf = {"csrf": form["csrf"]}
    for action in ("default", "unbind"):
        touch = home.post(f"/me/methods/{home.other.method_id}/{action}", csrf)
        assert touch.status_code == 404
    assert home.post(f"/me/loans/{home.mine.loan_id}/pay",
                     {**form, "method": str(home.other.method_id)}).status_code == 404  # fmt: skip
    assert money_held(home.engine) == held - 100_00


def test_a_form_without_her_csrf_token_is_refused_and_moves_no_money(home: Home) -> None:
    path = f"/me/loans/{home.mine.loan_id}"
    form = home.form(path, "pay")
    held, events = money_held(home.engine), home.events(home.mine)
    for forged in ({k: v for k, v in form.items() if k != "csrf"}, {**form, "csrf": "forged"}):
        for action in ("pay", "payoff"):
            refused = home.post(f"{path}/{action}", forged)
            assert refused.status_code == 403
            assert "表单已过期" in refused.text
        assert home.post("/me/methods", {**forged, "kind": "alipay",
                                         "account": "wang@example.com"}).status_code == 403  # fmt: skip
    assert (money_held(home.engine), home.events(home.mine)) == (held, events)


def test_she_pays_once_however_often_the_form_is_sent_and_gets_a_receipt(home: Home) -> None:
    path = f"/me/loans/{home.mine.loan_id}"
    form = {**home.form(path, "pay"), "amount": "888.49"}
    held, due = money_held(home.engine), Money.parse(home.loan(home.mine)["amount_due"])
    shown = home.post(f"{path}/pay", form)  # first where it would go: nothing moves yet
    assert shown.status_code == 200
    assert money_held(home.engine) == held
    would = present(servicing.preview_payment(home.context, home.mine.loan_id,
                                              Money.parse("888.49"),
                                              servicing.Source(method_id=home.mine.method_id),
                                              today()))  # fmt: skip
    card = re.search(r'id="confirm-pay"(.*?)</form>', shown.text, re.S)
    assert card is not None
    for part in ("principal", "interest", "fee", "penalty"):
        assert yuan(would[part]) in card[1], part
    assert f'id="due-after">{yuan(would["amount_due"])}<' in card[1]
    assert MASKED_CARD in card[1]
    confirmed = Forms(shown.text).forms["confirm-pay"]
    paid = home.post(f"{path}/pay", confirmed)
    again = home.post(f"{path}/pay", confirmed)  # the double click
    assert paid.status_code == again.status_code == 303
    assert paid.headers["location"] == again.headers["location"]
    assert money_held(home.engine) == held - 888_49
    receipt = home.page(paid.headers["location"])
    assert receipt.status_code == 200
    for shown in ("还款凭证", f"R{home.mine.loan_id}-", "¥888.49", "JD-MINE", "银行卡",
                  MASKED_CARD, "资金去向", "罚息", "还款后剩余本金", "打印"):  # fmt: skip
        assert shown in receipt.text, shown
    assert Money.parse(home.loan(home.mine)["amount_due"]) == due - 888_49
    assert paid.headers["location"] in home.page(path).text  # listed with the plan's receipts


def test_she_sees_what_a_prepayment_would_do_in_each_mode_then_confirms_one(home: Home) -> None:
    """The plan's page asks how much; the preview shows, for each mode, where the money goes
    and the plan after it (as the API's preview says), each with its own confirm form; nothing
    moves until she sends one, and what it then does is what the preview said."""
    path = f"/me/loans/{home.mine.loan_id}"
    assert 'action="/me/loans/' in home.page(path).text
    held, events = money_held(home.engine), home.events(home.mine)
    page = home.page(f"{path}/prepay?amount=3000")
    assert page.status_code == 200
    said = present(servicing.preview_prepayment(home.context, home.mine.loan_id,
                                                Money.parse("3000"), today()))  # fmt: skip
    forms = Forms(page.text).forms
    for outcome in said["outcomes"]:
        card = re.search(rf'id="{outcome["mode"]}"(.*?)</form>', page.text, re.S)
        assert card is not None, outcome["mode"]
        for key in ("principal", "next_payment", "to_repay", "saved", "outstanding_principal"):
            assert yuan(outcome[key]) in card.group(1), key
        assert forms[outcome["mode"]]["amount"] == "3000.00"
        assert forms[outcome["mode"]]["mode"] == outcome["mode"]
    assert (money_held(home.engine), home.events(home.mine)) == (held, events)  # a look only
    shorten = next(outcome for outcome in said["outcomes"] if outcome["mode"] == "shorten-term")
    form = forms["shorten-term"]
    paid = home.post(f"{path}/prepay", form)
    again = home.post(f"{path}/prepay", form)  # the double click
    assert paid.status_code == again.status_code == 303
    assert paid.headers["location"] == again.headers["location"]
    assert money_held(home.engine) == held - 3000_00
    left = [row for row in home.loan(home.mine)["installments"] if row["outstanding"] != "0.00"]
    assert (len(left), left[0]["outstanding"], left[-1]["due_date"]) == (
        shorten["installments_left"],
        shorten["next_payment"],
        shorten["last_due_date"],
    )
    receipt = home.page(paid.headers["location"]).text
    assert yuan(shorten["principal"]) in receipt


def test_a_prepayment_preview_refuses_what_no_prepayment_could_be(home: Home) -> None:
    path = f"/me/loans/{home.mine.loan_id}"
    held, events = money_held(home.engine), home.events(home.mine)
    over = home.page(f"{path}/prepay?amount=999999")
    assert over.status_code == 422
    payoff = present(servicing.quote_payoff(home.context, home.mine.loan_id, today()))["amount"]
    assert f"最多可付{grouped(payoff)}元" in alert_text(over.text)
    assert home.page(f"{path}/prepay?amount=abc").status_code == 422
    form = Forms(home.page(f"{path}/prepay?amount=100").text).forms["reduce-installment"]
    tampered = home.post(f"{path}/prepay", {**form, "mode": "skip-the-interest"})
    assert tampered.status_code == 422
    assert "请在预览页选择一种还款方式" in tampered.text
    assert home.page(f"/me/loans/{home.other.loan_id}/prepay?amount=100").status_code == 404
    assert (money_held(home.engine), home.events(home.mine)) == (held, events)


def test_each_plan_explains_its_cost_and_lateness_in_its_own_numbers(home: Home) -> None:
    """From the plan's page, its explanation: the cost and APR, how a monthly fee of 0.60%
    comes to about twice its 7.20% a year, and what its next bill would cost a month late, as
    the API says; in her language, and in English when asked."""
    path = f"/me/loans/{home.mine.loan_id}"
    assert f'href="{path}/explained"' in home.page(path).text
    plain = present(servicing.explain_plan(home.context, home.mine.loan_id, today()))
    page = home.page(f"{path}/explained").text
    assert f'id="apr">{apr(plain["apr"])}<' in page
    late = plain["late"]
    assert late is not None
    for shown in (yuan(late["payment"]), yuan(late["late_fee"]), yuan(late["penalty_per_day"]),
                  f'id="owed-late">{yuan(late["owed"])}<', "征信", "/me/hardship"):  # fmt: skip
        assert shown in page, shown
    order = servicing.Order(home.mine.borrower_id, "MALL-12", "小米商城", Money.parse("6000"),
                            "mall-12", 12, today())  # fmt: skip
    mall = present(servicing.checkout(home.context, order))["id"]
    fees = present(servicing.explain_plan(home.context, mall, today()))
    assert (fees["fee_rate"], fees["yearly_fee_rate"]) == ("0.006000", "0.072000")
    assert Decimal("0.12") < Decimal(fees["apr"]) < Decimal("0.14")  # about twice 7.20%
    said = home.page(f"/me/loans/{mall}/explained").text
    assert re.search(r"每期手续费是借款金额的0\.60%，一年12期加起来是7\.20%", said)
    assert apr(fees["apr"]) in said
    english = home.page(f"/me/loans/{mall}/explained?lang=en").text
    for words in ("Where the APR comes from", "If a payment is late", "twice 7.20%"):
        assert words in english, words
    assert home.page(f"/me/loans/{home.other.loan_id}/explained").status_code == 404


def test_her_message_centre_shows_what_she_was_sent_and_what_became_of_each_text(
    home: Home,
) -> None:
    """Every message the batch wrote to her, the latest first: one texted (with its time in
    Beijing), one that expired unsent (shown here all the same); never another borrower's.
    The console's borrower page lists the same."""
    sent_at = datetime(2026, 2, 19, 0, 30, tzinfo=UTC)  # 08:30 in Beijing
    with Session(home.engine) as session, session.begin():
        for plan, day, stage, status, text in (
            (home.mine, date(2026, 2, 19), "due", "sent", "您的分期今天到期"),
            (home.mine, date(2026, 2, 10), "reminder", "expired", "您的分期即将到期"),
            (home.other, date(2026, 2, 19), "due", "sent", "别人的短信"),
        ):
            session.add(SmsOutboxRow(loan_id=plan.loan_id, day=day, stage=stage,
                                     borrower_id=plan.borrower_id, phone="13900000000",
                                     text=text, status=status,
                                     sent_at=sent_at if status == "sent" else None))  # fmt: skip
    assert 'href="/me/messages"' in home.page("/me").text
    page = home.page("/me/messages").text
    assert page.index("您的分期今天到期") < page.index("您的分期即将到期")
    assert "短信已于2026-02-19 08:30:00发出" in page
    assert "当天未能以短信发出，只在这里显示" in page
    assert "别人的短信" not in page
    assert "Not texted in time; shown here only" in home.page("/me/messages?lang=en").text


def test_refusals_show_on_the_page_and_change_nothing(home: Home) -> None:
    path = f"/me/loans/{home.mine.loan_id}"
    form = home.form(path, "pay")
    borrowers.fund_method(home.context, home.mine.method_id, Money.parse("500"))
    held, events = money_held(home.engine), home.events(home.mine)
    bad = home.post(f"{path}/pay", {**form, "amount": "12.345"})
    assert bad.status_code == 422
    assert "请填写正确的金额" in bad.text
    zero = home.post(f"{path}/pay", {**form, "amount": "0"})
    assert zero.status_code == 422
    payoff = present(servicing.quote_payoff(home.context, home.mine.loan_id, today()))["amount"]
    beyond = home.post(f"{path}/pay", {**form, "amount": "30000"})
    assert beyond.status_code == 422  # more than pays the plan off: never hers to overpay
    assert f"最多可付{grouped(payoff)}元" in beyond.text
    declined = home.pay(path, {**form, "amount": "888.49"})
    assert declined.status_code == 402
    assert "扣款未成功" in declined.text
    assert "未能扣款，请检查余额或换一个支付方式" in declined.text
    no_method = home.post(f"{path}/pay", {**form, "method": ""})
    assert no_method.status_code == 422
    assert (money_held(home.engine), home.events(home.mine)) == (held, events)
    switched = home.client.get(f"{path}/pay?lang=en", follow_redirects=False)
    assert switched.headers["location"] == f"{path}?lang=en"


def test_she_pays_the_plan_off_and_it_is_settled(home: Home) -> None:
    path = f"/me/loans/{home.mine.loan_id}"
    quote = present(servicing.quote_payoff(home.context, home.mine.loan_id, today()))
    held = money_held(home.engine)
    done = home.post(f"{path}/payoff", home.form(path, "payoff"))
    assert done.status_code == 303
    receipt = home.page(done.headers["location"]).text
    assert f"¥{quote['amount']}" in receipt.replace(",", "")
    assert "提前还款" in receipt
    assert home.loan(home.mine)["status"] == "settled"
    assert money_held(home.engine) == held - int(quote["amount"].replace(".", ""))
    settled = home.page(path).text
    assert "已结清" in settled
    assert 'id="pay"' not in settled
    assert "已结清" in home.page("/me").text
    rows = home.loan(home.mine)["installments"]
    paid = sum(Money.parse(row[f"paid_{part}"]) for row in rows
               for part in ("principal", "interest", "fee", "penalty"))  # fmt: skip
    assert paid == Money.parse(quote["amount"])  # what she paid in all: the payoff, no more
    summary = settled.split('id="paid">')[1].split("</table>")[0].replace(",", "")
    for shown in ("结清日期", str(today()), "实际已还", f"¥{Money(paid)}", "其中罚息"):
        assert shown in summary, shown
    assert "签约时的年化利率与借款总成本" in settled
    ahead = [row for row in rows if row["due_date"] > str(today())]
    assert ahead  # paid off before these fell due: said so, not "paid" on a day to come
    assert settled.count("已提前还清") == len(ahead)


def test_she_binds_and_manages_only_her_own_methods(home: Home) -> None:
    form = home.form("/me/methods", "bind")
    bound = home.post("/me/methods", {**form, "kind": "alipay", "account": "wang@example.com",
                                      "default": "yes"})  # fmt: skip
    assert (bound.status_code, bound.headers["location"]) == (303, "/me/methods?done=bound")
    page = home.page(bound.headers["location"]).text
    assert "支付宝 w***@example.com" in page
    assert '<div class="notice" role="status" id="done">已绑定。</div>' in page  # said so
    assert "唯一的支付方式" not in page  # two methods: removing one stops nothing
    assert 'id="done"' not in home.page("/me/methods?done=%3Cscript%3E").text  # only its own
    wrong = home.post("/me/methods", {**form, "kind": "bank_card", "account": "12"})
    assert wrong.status_code == 422
    assert "银行卡号是12至19位数字" in wrong.text
    made_default = home.post(f"/me/methods/{home.mine.method_id}/default", form)
    assert made_default.status_code == 303
    assert Forms(home.page(f"/me/loans/{home.mine.loan_id}").text).forms["pay"]["method"] == str(
        home.mine.method_id
    )
    assert home.post(f"/me/methods/{home.mine.method_id}/unbind", form).status_code == 303
    page = home.page("/me/methods?done=unbound").text
    assert MASKED_CARD not in page
    assert "已解绑。" in page
    # The one method left, with her plan still open: removing it stops the auto-debit, and the
    # question before it says so.
    assert "w***@example.com 是您唯一的支付方式。解绑后，到期的账单将不能自动扣款" in page


def test_the_pages_speak_english_when_asked(home: Home) -> None:
    plans = home.page("/me?lang=en")
    assert '<html lang="en">' in plans.text
    for shown in ("My installment plans", "Principal still owed", "Bills and payments",
                  "Overdue"):  # fmt: skip
        assert shown in plans.text, shown
    plan = home.page(f"/me/loans/{home.mine.loan_id}").text  # the choice is remembered
    for shown in ("Make a payment", "Pay off early", "days late", "Finding it hard to pay?"):
        assert shown in plan, shown
    assert "If paying is hard right now" in home.page("/me/hardship").text
    assert "现在应还" in home.page("/me?lang=zh-CN").text


# -- paying what the payoff quote says settles the plan ------------------------------------------

PAYOFF_DAY = "2026-03-01"  # the pages' today in these tests (FENQI_TODAY)


@pytest.fixture
def paying_ahead(engine: Engine, database_url: str,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:  # fmt: skip
    """Her cash plan of 1,000.00 in 3 from 02-20, on 03-01; she is signed in."""
    monkeypatch.setenv("FENQI_TODAY", PAYOFF_DAY)
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    who = borrowers.create_borrower(context, "王芳", HER, Money.parse("50000"))
    card = borrowers.bind_method(context, who.id, "bank_card", "6222020000001234567",
                                 sim_balance=Money.parse("20000"))  # fmt: skip
    order = servicing.Order(who.id, "JD-AHEAD", "华为商城", Money.parse("1000"), "cash", 3,
                            date(2026, 2, 20))  # fmt: skip
    loan = present(servicing.checkout(context, order))
    mine = Plan(who.id, card.method.id, loan["id"], "JD-AHEAD", loan["consent"])
    with TestClient(create_app(database_url)) as client:
        sign_in(client, engine, HER)
        yield Home(client, engine, context, mine, mine)


def test_paying_the_payoff_amount_with_the_pay_form_settles_the_plan(paying_ahead: Home) -> None:
    """The amount the page quotes (1,000.00 and nine days' interest, 3.00), paid with the pay
    form rather than the payoff button, pays the plan off: nothing is left owed."""
    home, path = paying_ahead, f"/me/loans/{paying_ahead.mine.loan_id}"
    page = home.page(path).text
    assert "一键结清 ¥1,003.00" in page
    paid = home.pay(path, {**home.form(path, "pay"), "amount": "1003.00"})
    assert paid.status_code == 303
    assert "提前还款" in home.page(paid.headers["location"]).text
    shown = home.loan(home.mine)
    assert (shown["status"], shown["outstanding_principal"]) == ("settled", "0.00")
    assert "已结清" in home.page(path).text


def test_a_plan_paid_ahead_to_a_payoff_of_nothing_is_paid_off_for_nothing(
    paying_ahead: Home,
) -> None:
    """600.00 today and 403.00 recorded as paid on 02-25 cover the payoff: the page offers
    "一键结清 ¥0.00" while 17.07 of principal is still shown. Paying more is refused with how
    she gets out; the payoff button settles the plan and takes nothing from her card."""
    home, path = paying_ahead, f"/me/loans/{paying_ahead.mine.loan_id}"
    loan, day = home.mine.loan_id, date.fromisoformat(PAYOFF_DAY)
    servicing.pay(home.context, loan, Money.parse("600"), servicing.Source(), day)
    servicing.pay(home.context, loan, Money.parse("403"), servicing.Source(), date(2026, 2, 25))
    page = home.page(path).text
    assert "一键结清 ¥0.00" in page
    assert home.loan(home.mine)["outstanding_principal"] == "17.07"
    held, events = money_held(home.engine), home.events(home.mine)
    more = home.pay(path, {**home.form(path, "pay"), "amount": "17.07"})
    assert more.status_code == 422
    assert "请使用一键结清" in more.text  # what was paid covers it: the payoff settles it
    done = home.post(f"{path}/payoff", home.form(path, "payoff"))
    assert done.status_code == 303
    receipt = home.page(done.headers["location"]).text
    assert "提前还款" in receipt
    assert '<div class="big">¥0.00</div>' in receipt
    assert (money_held(home.engine), home.events(home.mine)) == (held, events + 1)
    assert home.loan(home.mine)["status"] == "settled"
    assert "已结清" in home.page(path).text


TYPED_PHONES = ["١٣٩٠٠٠٠٠٠٣٨", "１３９００００００３８", "139 0000 0038", "13900000038x", "1390", "",
                "13900000038", "+8613900000038"]  # fmt: skip


def test_the_sign_in_page_takes_a_phone_or_a_code_exactly_as_the_api_does(
    engine: Engine, database_url: str
) -> None:
    """One check for both doors: a phone in another script's digits (Arabic-Indic, full-width)
    or a code that is not 6 digits 0-9 is refused by the page as by the API, in her language,
    before anything is stored or a try is counted."""
    products.load_products(simulated_context(engine, actor="setup"))
    with TestClient(create_app(database_url)) as client:
        for phone in TYPED_PHONES:
            api = client.post("/api/auth/code", json={"phone": phone}).status_code
            page = client.post("/me/login/code", data={"phone": phone})
            assert (page.status_code, api) in ((200, 200), (422, 422)), phone
            if page.status_code == 422:
                assert "请输入正确的手机号" in page.text, phone
                assert 'name="code"' not in page.text  # the phone form again
        with Session(engine) as session:
            stored = session.scalars(select(SignInCodeRow.phone)).all()
        assert sorted(stored) == ["+8613900000038", "13900000038"]
        for code in ("１２３４５６", "12345", "1234567", "12345a"):
            api = client.post("/api/auth/session", json={"phone": "13900000038", "code": code})
            page = client.post("/me/login", data={"phone": "13900000038", "code": code})
            assert (page.status_code, api.status_code) == (422, 422), code
            assert "验证码是短信里的6位数字" in page.text
            assert 'name="code"' in page.text  # the code form again, for her phone
        with Session(engine) as session:
            tries = session.scalars(select(SignInCodeRow.attempts)).all()
        assert tries == [0, 0]  # no shape-refused code counted as a try
        english = client.post("/me/login/code?lang=en", data={"phone": TYPED_PHONES[0]})
        assert "Please give a mobile number" in english.text


ENGLISH_WORD = re.compile(r"\b[A-Za-z]{3,}\b")


def alert_text(page: str) -> str:
    """What the page's alert says, its tags taken out."""
    found = re.search(r'role="alert">(.*?)</div>\s*(</div>)?', page, re.S)
    assert found is not None, "no alert on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", found[0].partition(">")[2]).split())


def test_the_common_refusals_are_said_in_her_language(home: Home) -> None:
    """More than pays the plan off, a payment declined, nothing left to pay: each is said on
    her zh-CN page in Chinese, with the amounts, and in English on the English page; no English
    sentence of the service's shows on the Chinese page."""
    path = f"/me/loans/{home.mine.loan_id}"
    payoff = present(servicing.quote_payoff(home.context, home.mine.loan_id, today()))["amount"]
    form = home.form(path, "pay")
    borrowers.fund_method(home.context, home.mine.method_id, Money.parse("500"))
    said = {
        f"最多可付{grouped(payoff)}元": home.post(f"{path}/pay", {**form, "amount": "30000"}),
        "银行卡（622202*********4567）未能扣款": home.pay(path, {**form, "amount": "888.49"}),
    }  # fmt: skip
    borrowers.fund_method(home.context, home.mine.method_id, Money.parse("100000"))
    assert home.post(f"{path}/payoff", home.form(path, "payoff")).status_code == 303
    said["这笔分期已结清，没有需要还的款项"] = home.post(f"{path}/pay", {**form, "amount": "1"})
    for words, answer in said.items():
        shown = alert_text(answer.text)
        assert words in shown, shown
        assert not ENGLISH_WORD.search(shown), shown
    english = home.post(f"{path}/pay?lang=en", {**form, "amount": "1"})
    assert "This plan is settled; nothing is owed on it." in alert_text(english.text)


def _seconds(clock_time: str) -> int:
    hours, minutes, seconds = map(int, clock_time.split(":"))
    return hours * 3600 + minutes * 60 + seconds
