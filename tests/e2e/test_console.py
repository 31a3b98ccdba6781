"""The operator console end to end (the real app and database, in-process), on SQLite and
PostgreSQL: signing in, finding a borrower, a plan with its events and books, and the forms that
move money, each refused (with nothing changed) for a role the JSON API would refuse, or without
the session's CSRF token.

The plan is the README's story: 10,000.00 on 12 installments from 2026-01-15, the first paid on
2026-02-15, the second unpaid, so on 2026-03-25 it is 10 days past due (M1) with a penalty of
3.98 and a late fee of 44.42."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.domain.events import PrepayMode
from fenqi.domain.money import Money
from fenqi.http.app import create_app
from fenqi.services import audit, borrowers, credentials, products, servicing, sms
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context
from fenqi.services.policy import Role
from fenqi.shown import beijing, grouped
from fenqi.store.schema import DebitRequestRow, SmsSentRow
from fenqi.web.words import WORDS
from fenqi.wire import document, present
from tests.batch_faults import MESSAGE, allow_closing, refuse_to_close
from tests.simulated import simulated_context

PASSWORD = "a long password"
PHONE = "13800138000"
ORDER = "JD-0001"
OVERDUE = "2026-03-25"


@dataclass
class Desk:
    app: FastAPI
    context: Context
    engine: Engine
    borrower: int
    loan: int

    def client(self, role: str | None = None) -> TestClient:
        """A browser of its own (its own cookies), signed in as ``role`` if given."""
        client = TestClient(self.app)
        if role is not None:
            signed = client.post("/console/login", data={"username": role, "password": PASSWORD})
            assert signed.status_code == 200, signed.text
        return client

    def loan_page(self, client: TestClient) -> str:
        page = client.get(f"/console/loans/{self.loan}?as_of={OVERDUE}")
        assert page.status_code == 200, page.text
        return page.text

    def books(self) -> tuple[Any, ...]:
        """Everything a form could move: the plan's events and journal, and the audit log."""
        history = present(servicing.loan_history(self.context, self.loan))
        return history["events"], history["entries"], present(audit.audit_log(self.context))


@pytest.fixture
def desk(engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    """The README's story on 2026-03-25, the day the forms book on (staff book no further
    back than 31 days)."""
    monkeypatch.setenv("FENQI_TODAY", OVERDUE)
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    for role in Role:
        credentials.create_user(context, role.value, PASSWORD, role)
    who = borrowers.create_borrower(context, "张三", PHONE, Money.parse("20000"))
    borrowers.bind_method(context, who.id, "bank_card", "6222020000001234567",
                          sim_balance=Money.parse("1000"))  # fmt: skip
    order = servicing.Order(who.id, ORDER, "华为商城", Money.parse("10000"), "cash", 12,
                            date(2026, 1, 15))  # fmt: skip
    loan = present(servicing.checkout(context, order))["id"]
    servicing.pay(context, loan, Money.parse("888.49"), servicing.Source(), date(2026, 2, 15))
    app = create_app(database_url)
    with TestClient(app):  # runs the app's startup once
        yield Desk(app, context, engine, who.id, loan)


def form(page: str, name: str) -> dict[str, str]:
    """The fields of the form with id ``name`` as the page drew them, each select's first option
    with a value (what someone choosing picks first; a picker may have no default)."""
    found = re.search(rf'<form[^>]*id="{name}".*?</form>', page, re.S)
    assert found is not None, f"no form {name}"
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', found[0]))
    for select_name, options in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>',
                                           found[0], re.S):  # fmt: skip
        fields[select_name] = next(value for value in re.findall(r'value="([^"]*)"', options)
                               if value)  # fmt: skip
    return fields


def section(page: str, name: str) -> str:
    """The card with id ``name`` as the page drew it."""
    found = re.search(rf'<div[^>]*id="{name}".*?</div>', page, re.S)
    assert found is not None, f"no card {name}"
    return found[0]


def alert(page: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', page)
    return found[1] if found else ""


def test_a_visitor_is_sent_to_sign_in_and_an_operator_signs_in_and_out(desk: Desk) -> None:
    client = desk.client()
    away = client.get("/console", follow_redirects=False)
    assert (away.status_code, away.headers["location"]) == (303, "/console/login")
    assert client.get("/console/login").status_code == 200
    wrong = client.post("/console/login", data={"username": "agent", "password": "not it"})
    assert wrong.status_code == 401
    assert "用户名或密码错误" in wrong.text
    elsewhere = {"Origin": "https://evil.example"}
    forged = client.post("/console/login", data={"username": "agent", "password": PASSWORD},
                         headers=elsewhere, follow_redirects=False)  # fmt: skip
    assert forged.status_code == 403  # another site cannot sign a visitor in
    assert "set-cookie" not in forged.headers
    here = {"Origin": "http://testserver"}
    signed = client.post("/console/login", data={"username": "agent", "password": PASSWORD},
                         headers=here)  # fmt: skip
    assert signed.url.path == "/console"
    assert "agent · 客服" in signed.text
    assert client.post("/console/logout", data={"csrf": "forged"}).status_code == 403
    token = form(signed.text, "logout")["csrf"]
    out = client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/console/login")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_the_login_form_takes_a_user_name_exactly_as_the_api_does(desk: Desk) -> None:
    """A name no operator can have (another script, too long, empty) or no password is refused
    by the page as by the API, before a try is counted; a well-formed wrong one is a 401."""
    client = desk.client()
    for username, password in [("ａｇｅｎｔ", PASSWORD), ("王经理", PASSWORD), ("a" * 65, PASSWORD),
                               ("", PASSWORD), ("-agent", PASSWORD), ("agent", "")]:  # fmt: skip
        api = client.post("/api/auth/login", json={"username": username, "password": password})
        page = client.post("/console/login", data={"username": username, "password": password})
        assert (page.status_code, api.status_code) == (422, 422), username
        assert WORDS["console.login.malformed"]["zh-CN"] in page.text
    well_formed = client.post("/console/login", data={"username": "nobody", "password": "x"})
    assert well_formed.status_code == 401


@pytest.mark.parametrize("typed", ["phone", "last 4", "name", "order"])
def test_a_borrower_is_found_by_phone_name_or_order(desk: Desk, typed: str) -> None:
    text = {"phone": PHONE, "last 4": PHONE[-4:], "name": "张", "order": ORDER}[typed]
    found = desk.client("viewer").get("/console", params={"q": text})
    assert found.status_code == 200
    assert f'href="/console/borrowers/{desk.borrower}"' in found.text
    # A list shows a phone masked, its last 4 digits enough to tell callers apart.
    assert f"<td>{PHONE[:3]}****{PHONE[-4:]}</td>" in found.text
    assert PHONE not in found.text.replace(f'value="{PHONE}"', "")  # only what was typed


def test_a_loan_id_opens_the_loan(desk: Desk) -> None:
    viewer = desk.client("viewer")
    opened = viewer.get("/console", params={"q": f" {desk.loan} "}, follow_redirects=False)
    assert (opened.status_code, opened.headers["location"]) == (303, f"/console/loans/{desk.loan}")
    nothing = viewer.get("/console", params={"q": "987654"})  # no such loan: a search, empty
    assert (nothing.status_code, "<table>" in nothing.text) == (200, False)


def test_a_search_that_finds_nobody_says_so(desk: Desk) -> None:
    client = desk.client("viewer")
    nobody = client.get("/console", params={"q": "王五"})
    assert "没有找到“王五”" in nobody.text
    assert "<script>" not in client.get("/console", params={"q": "<script>"}).text


def test_the_borrower_page_shows_her_limit_methods_and_plans(desk: Desk) -> None:
    page = desk.client("viewer").get(f"/console/borrowers/{desk.borrower}?as_of={OVERDUE}").text
    assert "20,000.00" in page  # her limit, grouped by thousands
    assert "10,788.49" in page  # available: the limit less the 9,211.51 her plan still holds
    assert "622202*********4567" in page
    row = re.search(rf'<tr class="overdue">.*?/console/loans/{desk.loan}.*?</tr>', page, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row[0], re.S)
    assert [cell for cell in cells if cell in ("逾期", "10", "M1", "9,211.51")] == [
        "逾期", "10", "M1", "9,211.51"
    ]  # fmt: skip


def test_the_loan_page_shows_installments_events_and_journal_lines(desk: Desk) -> None:
    page = desk.loan_page(desk.client("viewer"))
    assert page.count('<tr class="overdue">') == 1  # the second installment, highlighted
    assert page.count('<tr class="paid">') == 1
    assert "3.98" in page
    assert "44.42" in page
    assert re.search(r"<td>还款</td>\s*<td>2026-02-15</td>", page)
    history = present(servicing.loan_history(desk.context, desk.loan))
    kinds = [entry["what"] for entry in history["entries"]]
    assert kinds[0] == "disbursement"
    assert {"accrual", "payment"} <= set(kinds)
    said = {
        "disbursement": "放款",
        "accrual": "计提",
        "payment": "还款",
        "debit_failed": "代扣失败",
    }
    for entry in history["entries"]:
        assert f">{said[entry['what']]}</td>" in page  # what it books, in words
        for line in entry["lines"]:
            account = WORDS[f"account.{line['account']}"]["zh-CN"]  # the chart, in Chinese
            named = f'<td title="{line["account"]}">{account}</td>'
            cells = f'{named}<td class="num">{grouped(line["debit"])}</td>'
            assert f'{cells}<td class="num">{grouped(line["credit"])}</td>' in page
    names = {line["account_name"] for entry in history["entries"] for line in entry["lines"]}
    assert "Loan principal receivable 贷款本金应收" in names  # the chart's name, not the code
    assert '<td title="principal_receivable">贷款本金应收</td>' in page
    assert 'id="pay"' not in page
    assert 'id="waive"' not in page
    assert 'id="reverse"' not in page


def test_a_payoff_quote_is_for_anyone(desk: Desk) -> None:
    client = desk.client("viewer")
    page = client.get(f"/console/loans/{desk.loan}?as_of={OVERDUE}&payoff=2026-04-30").text
    quoted = present(servicing.quote_payoff(desk.context, desk.loan, date(2026, 4, 30)))
    assert f"2026-04-30 结清需还 {grouped(quoted['amount'])} 元" in page


def test_a_viewer_cannot_take_a_payment(desk: Desk) -> None:
    viewer, agent = desk.client("viewer"), desk.client("agent")
    fields = {**form(desk.loan_page(agent), "pay"), "amount": "936.89", "on": OVERDUE}
    fields["csrf"] = form(desk.loan_page(viewer), "logout")["csrf"]
    before = desk.books()
    refused = viewer.post(f"/console/loans/{desk.loan}/payments", data=fields)
    assert refused.status_code == 403
    assert "这项操作需要客服角色（收款权限）" in alert(refused.text)
    assert desk.books() == before


def test_an_agent_takes_a_payment_once_however_often_the_form_is_sent(desk: Desk) -> None:
    agent = desk.client("agent")
    page = desk.loan_page(agent)
    card = re.search(r'<option value="(\d+)">银行卡 622202', page)
    assert card is not None
    fields = {**form(page, "pay"), "amount": "936.89", "on": OVERDUE}
    before = desk.books()
    asked = agent.post(f"/console/loans/{desk.loan}/payments", data={**fields, "source": card[1]})
    assert asked.status_code == 200  # first what it would do: nothing moves yet
    assert desk.books() == before
    declined = agent.post(f"/console/loans/{desk.loan}/payments",
                          data=form(asked.text, "confirm-pay"))  # fmt: skip
    assert declined.status_code == 402
    assert "银行卡（622202*********4567）未能扣款" in alert(declined.text)
    assert desk.books() == before
    by_hand = {**form(declined.text, "pay"), "amount": "936.89", "on": OVERDUE, "source": "manual"}
    shown = agent.post(f"/console/loans/{desk.loan}/payments", data=by_hand)
    card = re.search(r'id="confirm-pay"(.*?)</form>', shown.text, re.S)
    assert card is not None
    would = present(servicing.preview_payment(desk.context, desk.loan, Money.parse("936.89"),
                                              servicing.Source(manual=True), date(2026, 3, 25)))  # fmt: skip
    for part in ("principal", "interest", "fee", "penalty", "amount_due", "outstanding_principal"):
        assert f'<dd class="num">{grouped(would[part])}</dd>' in card[1], part
    assert desk.books() == before
    confirmed = form(shown.text, "confirm-pay")
    paid = agent.post(f"/console/loans/{desk.loan}/payments", data=confirmed)
    assert paid.status_code == 200, alert(paid.text)
    assert "已收款 936.89 元" in paid.text
    again = agent.post(f"/console/loans/{desk.loan}/payments", data=confirmed)
    assert "此表单已提交过" in again.text
    taken = present(servicing.loan_history(desk.context, desk.loan))["events"][-1]["payload"]
    assert Money.parse(taken["amount"]) == Money.parse("936.89")
    events = present(servicing.loan_history(desk.context, desk.loan))["events"]
    assert [(event["kind"], event["payload"]["channel"]) for event in events] == [
        ("payment", "bank_card"), ("payment", "manual")
    ]  # fmt: skip


def test_an_agent_waives_within_the_limit_but_not_beyond_it(desk: Desk) -> None:
    agent = desk.client("agent")
    page = desk.loan_page(agent)
    assert "客服每次最多减免 100.00 元" in page
    fields = {**form(page, "waive"), "what": "penalty", "reason": "首次逾期", "on": OVERDUE}
    before = desk.books()
    beyond = agent.post(f"/console/loans/{desk.loan}/waivers", data={**fields, "amount": "150"})
    assert beyond.status_code == 403
    assert "客服每次最多减免100.00元" in alert(beyond.text)
    assert desk.books() == before
    asked = agent.post(f"/console/loans/{desk.loan}/waivers", data={**fields, "amount": "3.98"})
    card = re.search(r'id="confirm-waive"(.*?)</form>', asked.text, re.S)
    assert card is not None  # first what it would do: nothing moves yet
    assert "3.98 → 0.00" in card[1]
    assert desk.books() == before
    within = agent.post(f"/console/loans/{desk.loan}/waivers", data=form(asked.text,
                                                                           "confirm-waive"))  # fmt: skip
    assert within.status_code == 200, alert(within.text)
    assert "已减免 3.98 元" in within.text
    shown = present(servicing.show_loan(desk.context, desk.loan, date(2026, 3, 25)))
    assert shown["outstanding_penalty"] == "0.00"
    entry = present(audit.audit_log(desk.context, f"loan:{desk.loan}"))[0]
    assert (entry["actor"], entry["action"], entry["reason"]) == (
        "agent",
        "waive.penalty",
        "首次逾期",
    )


def test_only_an_admin_sees_and_can_use_reversal(desk: Desk) -> None:
    agent, admin = desk.client("agent"), desk.client("admin")
    assert 'id="reverse"' not in desk.loan_page(agent)
    page = desk.loan_page(admin)
    fields = {**form(page, "reverse"), "reason": "debited twice"}
    assert fields["seq"] == "1"
    # The picker chooses no payment for her: its first option says to choose, and sent as it
    # is drawn the form is refused with nothing taken back.
    assert re.search(r'<select id="reverse-seq" name="seq" required>\s*<option value="" '
                     r'selected disabled>请选择要冲正的收款</option>', page)  # fmt: skip
    before = desk.books()
    unchosen = admin.post(f"/console/loans/{desk.loan}/reversals", data={**fields, "seq": ""})
    assert unchosen.status_code == 422
    assert desk.books() == before
    fields["csrf"] = form(desk.loan_page(agent), "logout")["csrf"]
    before = desk.books()
    refused = agent.post(f"/console/loans/{desk.loan}/reversals", data=fields)
    assert refused.status_code == 403
    assert desk.books() == before
    fields["csrf"] = form(desk.loan_page(admin), "logout")["csrf"]
    done = admin.post(f"/console/loans/{desk.loan}/reversals", data=fields)
    assert done.status_code == 200, alert(done.text)
    assert f"已冲正 P{desk.loan}-1" in done.text
    assert "没有可冲正的还款" in done.text  # the one payment is taken back: nothing left to offer
    payouts = section(done.text, "payouts")  # its money went back to the card it came from
    assert all(shown in payouts for shown in (f"V{desk.loan}-", "888.49", "4567", "已退回", "sim:"))
    [reversal, *_] = present(audit.audit_log(desk.context, f"loan:{desk.loan}"))
    assert (reversal["action"], reversal["before"]["payment_id"]) == ("payment.reverse",
                                                                       f"P{desk.loan}-1")  # fmt: skip


@pytest.mark.parametrize("token", [None, "", "not-the-session-token"])
def test_a_form_without_the_sessions_csrf_token_changes_nothing(desk: Desk,
                                                                token: str | None) -> None:  # fmt: skip
    admin = desk.client("admin")
    page = desk.loan_page(admin)
    before = desk.books()
    for name, path, extra in (
        ("pay", "payments", {"amount": "100"}),
        ("waive", "waivers", {"amount": "1", "reason": "x"}),
        ("reverse", "reversals", {"reason": "x"}),
    ):
        fields = {**form(page, name), **extra}
        del fields["csrf"]
        if token is not None:
            fields["csrf"] = token
        forged = admin.post(f"/console/loans/{desk.loan}/{path}", data=fields)
        assert forged.status_code == 403, (name, forged.status_code)
        assert "表单已过期" in forged.text
    assert desk.books() == before


def test_the_cob_page_charts_the_aging_report(desk: Desk) -> None:
    cob.close(desk.context, date(2026, 3, 25))
    page = desk.client("viewer").get("/console/cob?date=2026-03-25").text
    assert "<svg" in page
    assert "账龄分布（2026-03-25）" in page
    bars = dict(re.findall(r'data-bucket="(\w+)" data-loans="(\d+)"', page))
    assert bars == {**{f"M{n}": "0" for n in range(8)}, "written_off": "0", "M1": "1"}
    m1 = re.search(r'data-bucket="M1".*?<rect class="bar"[^>]*width="([\d.]+)"', page, re.S)
    assert m1 is not None
    assert m1[1] == "300.0"
    assert "9,211.51" in page
    assert re.search(r'2026-03-25</td>\s*<td data-status="done">完成</td>', page)  # listed first


def test_the_borrower_page_lists_what_she_was_texted(desk: Desk) -> None:
    """The close of business writes her the day's notice; the borrower page lists it with its
    stage and status, in the operator's language."""
    page = desk.client("viewer").get(f"/console/borrowers/{desk.borrower}").text
    assert "没有发给她的短信" in page
    cob.close(desk.context, date(2026, 3, 25))
    page = desk.client("viewer").get(f"/console/borrowers/{desk.borrower}").text
    listed = section(page, "messages")
    written = present(sms.messages_to(desk.context, desk.borrower, date(2026, 3, 25)))
    assert written
    for message in written:
        assert message["text"] in listed
        assert f"<code>{message['stage']}</code>" in listed
    assert "待发送" in listed  # the dispatcher has not run
    english = desk.client("viewer").get(f"/console/borrowers/{desk.borrower}?lang=en").text
    assert "Text messages" in english


def test_a_receipt_opens_from_the_plan_or_from_its_id_typed_into_the_search(desk: Desk) -> None:
    """The plan lists its receipts; one opens as the borrower has it (as the API gives it); a
    receipt's or payment's id typed into the search opens it too; one there is not is a 404."""
    viewer = desk.client("viewer")
    page = desk.loan_page(viewer)
    link = f'href="/console/receipts/R{desk.loan}-1"'
    assert link in section(page, "receipts")
    shown = present(servicing.show_receipt(desk.context, f"R{desk.loan}-1"))
    opened = viewer.get(f"/console/receipts/R{desk.loan}-1")
    assert opened.status_code == 200
    card = section(opened.text, "receipt")
    for part in ("amount", "principal", "interest", "outstanding_principal"):
        assert grouped(shown[part]) in card, part
    assert f"<code>P{desk.loan}-1</code>" in card
    for typed in (f"P{desk.loan}-1", f"R{desk.loan}-1"):
        found = viewer.get("/console", params={"q": typed}, follow_redirects=False)
        assert (found.status_code, found.headers["location"]) == (
            303, f"/console/receipts/R{desk.loan}-1")  # fmt: skip
    assert viewer.get(f"/console/receipts/R{desk.loan}-99").status_code == 404
    assert "Receipt" in viewer.get(f"/console/receipts/R{desk.loan}-1?lang=en").text


def test_the_cob_page_shows_a_failed_run_with_its_error(desk: Desk) -> None:
    refuse_to_close(desk.engine, desk.loan)
    assert document(cob.close(desk.context, date(2026, 2, 12)))["status"] == "failed"
    page = desk.client("viewer").get("/console/cob").text
    assert '<td data-status="failed">失败</td>' in page
    failed = re.search(r'data-failed-run="1"><td colspan="10">(.*?)</td>', page, re.S)
    assert failed is not None
    assert failed[1].startswith("批次 1（营业日 2026-02-12）失败：1 of 1 chunks failed; chunk 1 ")
    assert MESSAGE in failed[1]
    assert "排除原因后" in failed[1]
    english = desk.client("viewer").get("/console/cob?lang=en").text
    assert '<td data-status="failed">failed</td>' in english
    assert "Run 1 (2026-02-12) failed: 1 of 1 chunks failed" in english
    assert "closing that day again takes up its failed chunks" in english

    allow_closing(desk.engine)
    assert document(cob.close(desk.context, date(2026, 2, 12)))["status"] == "done"
    page = desk.client("viewer").get("/console/cob").text
    assert '<td data-status="done">完成</td>' in page
    assert "data-failed-run" not in page


def test_the_audit_log_is_for_admins_and_filters_by_target(desk: Desk) -> None:
    for role in ("viewer", "agent"):
        refused = desk.client(role).get("/console/audit")
        assert refused.status_code == 403
        assert "这项操作需要管理员角色（系统管理权限）" in alert(refused.text)
    admin = desk.client("admin")
    everything = admin.get("/console/audit").text
    assert "<td>新建借款人</td>" in everything  # borrower.create, in words
    assert "<td>新建操作员</td>" in everything  # user.create
    about = admin.get("/console/audit", params={"target": f"borrower:{desk.borrower}"}).text
    assert "<td>新建借款人</td>" in about
    assert "<td>新建操作员</td>" not in about
    english = admin.get("/console/audit", params={"lang": "en"}).text
    assert "<td>borrower created</td>" in english


def test_a_borrowers_session_opens_nothing_on_the_console(desk: Desk) -> None:
    credentials.send_sign_in_code(desk.context, PHONE)
    with Session(desk.engine) as session:
        text = session.scalars(select(SmsSentRow.text).where(SmsSentRow.phone == PHONE)).all()[-1]
    code = re.findall(r"\d{6}", text)[0]
    token, _ = credentials.sign_in_borrower(desk.context, PHONE, code)
    client = desk.client()
    client.cookies.set("fenqi_session", token)
    for path in ("/console", f"/console/loans/{desk.loan}", "/console/cob"):
        refused = client.get(path)
        assert refused.status_code == 403, path
        assert "<html" in refused.text  # a page, not a JSON problem


def test_every_console_word_is_in_both_languages_and_pages_show_no_raw_key(desk: Desk) -> None:
    mine = {key: text for key, text in WORDS.items() if key.startswith("console.")}
    assert all(set(text) == {"zh-CN", "en"} for text in mine.values())
    admin = desk.client("admin")
    for lang in ("zh-CN", "en"):
        for path in ("/console", f"/console?q={PHONE}", f"/console/borrowers/{desk.borrower}",
                     f"/console/loans/{desk.loan}?payoff=2026-04-30", "/console/cob",
                     "/console/audit", "/console/loans/999"):  # fmt: skip
            page = admin.get(path, params={"lang": lang}).text
            assert "console." not in page.replace("/console", ""), (lang, path)
    assert "Take the payment" in admin.get(f"/console/loans/{desk.loan}?lang=en").text


def test_moments_are_shown_in_beijing_time() -> None:
    assert beijing("2026-11-23T17:00:00+00:00") == "2026-11-24 01:00:00"
    assert beijing("2026-11-23T17:00:00") == "2026-11-24 01:00:00"  # stored without a zone: UTC
    assert beijing(None) == ""


def test_a_payment_beyond_the_payoff_needs_an_admins_approval(desk: Desk) -> None:
    agent, admin = desk.client("agent"), desk.client("admin")
    assert 'name="allow_overpayment"' not in desk.loan_page(agent)
    assert 'name="allow_overpayment"' in desk.loan_page(admin)
    payoff = present(servicing.quote_payoff(desk.context, desk.loan, date(2026, 3, 25)))["amount"]
    fields = {**form(desk.loan_page(agent), "pay"), "amount": "50000", "on": OVERDUE,
              "source": "manual"}  # fmt: skip
    before = desk.books()
    over = agent.post(f"/console/loans/{desk.loan}/payments", data=fields)
    assert over.status_code == 422
    assert f"最多可付{grouped(payoff)}元" in alert(over.text)
    asked = agent.post(f"/console/loans/{desk.loan}/payments",
                       data={**fields, "allow_overpayment": "on"})  # fmt: skip
    assert asked.status_code == 403
    assert "这项操作需要管理员角色（退款与冲正权限）" in alert(asked.text)
    assert desk.books() == before
    fields = {**form(desk.loan_page(admin), "pay"), "amount": "50000", "on": OVERDUE,
              "source": "manual", "allow_overpayment": "on"}  # fmt: skip
    shown = admin.post(f"/console/loans/{desk.loan}/payments", data=fields)
    assert "这笔款项结清本分期" in shown.text
    taken = admin.post(f"/console/loans/{desk.loan}/payments",
                       data=form(shown.text, "confirm-pay"))  # fmt: skip
    assert taken.status_code == 200, alert(taken.text)
    assert "已收款 50,000.00 元" in taken.text
    entry = present(audit.audit_log(desk.context, f"loan:{desk.loan}"))
    assert ("admin", "payment.overpayment") in [(e["actor"], e["action"]) for e in entry]


def test_forms_book_within_the_window_and_far_dates_are_refused(desk: Desk) -> None:
    agent = desk.client("agent")
    path = f"/console/loans/{desk.loan}/payments"
    before = desk.books()
    for day, status in (("2026-02-15", 422), ("2026-03-26", 422), ("9999-12-31", 422),
                        ("0001-01-01", 422)):  # fmt: skip
        fields = {**form(desk.loan_page(agent), "pay"), "amount": "10", "on": day}
        answer = agent.post(path, data=fields)
        assert answer.status_code == status, (day, answer.status_code)
    for query in ("as_of=9999-12-31", "payoff=0001-01-01", "as_of=0001-01-01"):
        assert agent.get(f"/console/loans/{desk.loan}?{query}").status_code == 422, query
    assert agent.get("/console/cob?date=9999-12-31").status_code == 422
    assert desk.books() == before


def test_a_method_or_a_reason_is_read_as_typed(desk: Desk) -> None:
    """ "١" is not method 1, and a NUL in a reason is refused before anything moves."""
    admin = desk.client("admin")
    before = desk.books()
    page = desk.loan_page(admin)
    foreign = admin.post(f"/console/loans/{desk.loan}/payments",
                         data={**form(page, "pay"), "amount": "10", "source": "١"})  # fmt: skip
    assert foreign.status_code == 404
    nul = admin.post(f"/console/loans/{desk.loan}/waivers",
                     data={**form(page, "waive"), "amount": "1", "reason": "a\x00b"})  # fmt: skip
    assert nul.status_code == 422
    assert desk.books() == before


def test_a_reversal_that_makes_the_plan_overdue_is_shown_with_its_consequences_to_confirm(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", "2026-02-20")  # 5 days after the one payment, on time
    admin = desk.client("admin")
    page = admin.get(f"/console/loans/{desk.loan}").text
    fields = {**form(page, "reverse"), "reason": "debited twice"}
    before = desk.books()
    asked = admin.post(f"/console/loans/{desk.loan}/reversals", data=fields)
    assert asked.status_code == 409, alert(asked.text)
    assert desk.books() == before  # nothing moved until it is confirmed
    shown = re.search(r'<form[^>]*id="confirm-reverse".*?</form>', asked.text, re.S)
    assert shown is not None
    assert "正常 → 逾期" in shown[0]  # active, now overdue: 5 days, with penalty
    assert re.search(r"<dd>5</dd>", shown[0])
    assert "console." not in asked.text.replace("/console", "")
    confirm = form(asked.text, "confirm-reverse")
    assert (confirm["seq"], confirm["reason"], confirm["confirm"]) == ("1", "debited twice", "true")
    done = admin.post(f"/console/loans/{desk.loan}/reversals", data=confirm)
    assert done.status_code == 200, alert(done.text)
    assert f"已冲正 P{desk.loan}-1" in done.text
    assert present(servicing.show_loan(desk.context, desk.loan, date(2026, 2, 20)))["dpd"] == 5


# English a zh-CN page may show: ids, account masks and dates are not sentences.
ENGLISH_WORD = re.compile(r"\b[A-Za-z]{3,}\b")


def events_shown(page: str) -> str:
    found = re.search(r'id="events".*?</table>', page, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", " ", found[0])


def test_an_events_details_are_words_and_absent_ones_are_left_out(desk: Desk) -> None:
    """A credit refund taken by hand has no method: the page says the channel in words (人工)
    and leaves the method out, never "manual" or Python's None; yes or no and a prepayment's
    mode are words too."""
    day = date(2026, 3, 25)
    payoff = Money.parse(present(servicing.quote_payoff(desk.context, desk.loan, day))["amount"])
    servicing.prepay(desk.context, desk.loan, payoff + Money.parse("300"),
                     mode=PrepayMode.REDUCE_INSTALLMENT, source=servicing.Source(manual=True),
                     day=day, allow_overpayment=True)  # fmt: skip
    back = present(servicing.refund_credit(desk.context, desk.loan, None, day))
    assert [(to["channel"], to["method_id"]) for to in back["paid_to"]] == [("manual", None)]
    for lang in ("zh-CN", "en"):
        client = desk.client("viewer")
        shown = events_shown(
            client.get(f"/console/loans/{desk.loan}?as_of={OVERDUE}&lang={lang}").text
        )
        for raw in ("None", "manual", "bank_card", "True", "False", "console.", "_"):
            assert raw not in shown, (lang, raw, shown)
    assert f"{WORDS['console.field.channel']['zh-CN']}: {WORDS['channel.manual']['zh-CN']}" in (
        events_shown(desk.loan_page(desk.client("viewer"))))  # fmt: skip
    assert WORDS["channel.bank_card"]["zh-CN"] in events_shown(
        desk.loan_page(desk.client("viewer"))
    )


def test_the_common_refusals_are_said_in_chinese_on_the_console(desk: Desk) -> None:
    """Permission needed, an amount over the payoff, a day outside the booking window (by the
    form's check or the service's), a payment declined, nothing to pay, a confirmation needed:
    each is said on the zh-CN page in Chinese, numbers and dates filled in, no English sentence;
    the API keeps its English detail."""
    agent, admin = desk.client("agent"), desk.client("admin")
    page = desk.loan_page(agent)
    pay = {**form(page, "pay"), "on": OVERDUE}
    sent = {
        "permission": {"amount": "1", "allow_overpayment": "on"},
        "over payoff": {"amount": "50000", "source": "manual"},
        "before the window": {"amount": "1", "on": "2026-01-01"},
        "after today": {"amount": "1", "on": "2026-03-26"},
        "far off": {"amount": "1", "on": "9999-12-31"},
        "not a date": {"amount": "1", "on": "2026-02-30"},
        "declined": {"amount": "936.89", "confirm": "true"},  # declined when it is taken
    }
    said = {case: agent.post(f"/console/loans/{desk.loan}/payments", data={**pay, **changed})
            for case, changed in sent.items()}  # fmt: skip
    expected = {
        "permission": "这项操作需要管理员角色（退款与冲正权限）",
        "over payoff": "金额：50,000.00元超过了2026-03-25结清全部欠款所需的",
        "before the window": "日期：2026-01-01早于今天31天以前，请选2026-02-22至2026-03-25之间的日期",
        "after today": "日期：2026-03-26晚于今天（2026-03-25）",
        "far off": "日期：9999-12-31离今天（2026-03-25）太远",
        "not a date": "日期：不是日期，请按 YYYY-MM-DD 填写",
        "declined": "银行卡（622202*********4567）未能扣款，请检查余额或换一个支付方式",
    }
    for case, answer in said.items():
        shown = alert(answer.text)
        assert expected[case] in shown, (case, shown)
        assert not ENGLISH_WORD.search(shown.replace("YYYY-MM-DD", "")), (case, shown)
    servicing.prepay(desk.context, desk.loan, None, mode=PrepayMode.REDUCE_INSTALLMENT,
                     source=servicing.Source(manual=True), day=date(2026, 3, 25))  # fmt: skip
    again = {**form(desk.loan_page(admin), "pay"), "amount": "1", "on": OVERDUE, "source": "manual"}
    nothing = alert(admin.post(f"/console/loans/{desk.loan}/payments", data=again).text)
    assert "这笔分期已结清，没有需要还的款项" in nothing
    assert not ENGLISH_WORD.search(nothing), nothing
    reverse = {**form(desk.loan_page(admin), "reverse"), "reason": "退回"}
    confirming = admin.post(f"/console/loans/{desk.loan}/reversals", data=reverse)
    assert confirming.status_code == 409
    card = re.search(r'id="confirm-reverse"[^>]*>(.*?)</dl>', confirming.text, re.S)
    assert card is not None
    assert "已结清 → 正常" in card[1]
    assert not ENGLISH_WORD.search(re.sub(r"<[^>]+>", " ", card[1]).replace("P1-", ""))
    api = desk.client().post(f"/api/loans/{desk.loan}/payments",
                             json={"amount": "1", "date": "2026-01-01"},
                             headers={"X-API-Key": credentials.create_api_key(desk.context, "agent").api_key,
                                      "Idempotency-Key": "en"})  # fmt: skip
    assert "is over 31 days before today" in api.json()["detail"]


def test_a_payout_that_cannot_go_through_the_gateway_says_why_in_the_pages_language(
    desk: Desk,
) -> None:
    """Money that came in through no debit order cannot be refunded by the gateway: the
    plan's payouts say so in the page's words, not in fenqi's English."""
    with Session(desk.engine) as session, session.begin():  # as if paid before debit requests
        session.execute(DebitRequestRow.__table__.delete())
    servicing.reverse(desk.context, f"P{desk.loan}-1", "debited twice", today=date(2026, 3, 25))
    admin = desk.client("admin")
    chinese = section(desk.loan_page(admin), "payouts")
    assert "退回失败" in chinese
    assert "请人工转账退回" in chinese
    assert "by hand" not in chinese
    english = section(admin.get(f"/console/loans/{desk.loan}?lang=en").text, "payouts")
    assert "pay it back by hand" in english
