"""The HTTP API end to end (the real app and database, over HTTP in-process), on SQLite and
PostgreSQL: credentials and roles, a borrower confined to her own plans, idempotency keys, problem
details, and the operations endpoints."""

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from fenqi.api.models import Body
from fenqi.clock import today
from fenqi.http.app import create_app
from fenqi.services import credentials, products
from fenqi.services.policy import Role
from fenqi.store.schema import SmsSentRow
from tests.batch_faults import MESSAGE, allow_closing, refuse_to_close
from tests.simulated import simulated_context

KEY = {"Idempotency-Key": "k-1"}


@dataclass
class Shop:
    client: TestClient
    keys: dict[str, str]
    engine: Engine

    def as_(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}

    def post(self, path: str, role: str, body: dict[str, Any], key: str | None = None) -> Any:
        headers = {**self.as_(role), **({"Idempotency-Key": key} if key else {})}
        return self.client.post(path, json=body, headers=headers)


@pytest.fixture
def shop(engine: Engine, database_url: str) -> Iterator[Shop]:
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    keys = {}
    for role in Role:
        credentials.create_user(context, role.value, "a long password", role)
        keys[role.value] = credentials.create_api_key(context, role.value).api_key
    with TestClient(create_app(database_url, simulation=True)) as client:
        yield Shop(client, keys, engine)


def open_loan(shop: Shop, phone: str = "13800000001", order: str = "API-1",
              on: str = "2026-01-15") -> tuple[int, int]:  # fmt: skip
    """A borrower with a funded card and a plan checked out ``on`` that day (it is today then:
    staff book no further back than 31 days)."""
    with pytest.MonkeyPatch.context() as day:
        day.setenv("FENQI_TODAY", on)
        return _open_loan(shop, phone, order, on)


def _open_loan(shop: Shop, phone: str, order: str, on: str) -> tuple[int, int]:
    who = shop.post(
        "/api/borrowers", "agent", {"name": "李雷", "phone": phone, "credit_limit": "50000"}
    )
    assert who.status_code == 201, who.text
    borrower = who.json()["id"]
    card = shop.post(f"/api/borrowers/{borrower}/methods", "agent",
                     {"kind": "bank_card", "account": "6222020000001234567", "sim_balance": "20000"})  # fmt: skip
    assert card.status_code == 201, card.text
    made = shop.post("/api/checkout", "agent", {"borrower_id": borrower, "order_id": order,
                     "merchant": "华为商城", "item": "华为 Mate 70", "amount": "10000",
                     "product": "cash", "periods": 12,
                     "date": on}, key=f"checkout-{order}")  # fmt: skip
    assert made.status_code == 201, made.text
    return borrower, made.json()["id"]


def borrower_token(shop: Shop, phone: str) -> str:
    """Signs a borrower in the way her phone does: asks for a code and reads it off the SMS."""
    assert shop.client.post("/api/auth/code", json={"phone": phone}).status_code == 200
    with Session(shop.engine) as session:
        text = session.scalars(select(SmsSentRow.text).where(SmsSentRow.phone == phone)).all()[-1]
    code = "".join(char for char in text if char.isdigit())[:6]
    signed_in = shop.client.post("/api/auth/session", json={"phone": phone, "code": code})
    assert signed_in.status_code == 200, signed_in.text
    return str(signed_in.json()["token"])


def operations(shop: Shop) -> list[tuple[str, str, bool]]:
    """Every API operation as (method, path with example ids, whether it takes a body), from
    the OpenAPI document: the app's own route list nests the API's router."""
    paths = shop.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    found = []
    for path, methods in paths.items():
        concrete = path.replace("{loan_id}", "1").replace("{borrower_id}", "1").replace(
            "{method_id}", "1").replace("{run_id}", "1").replace("{payment_id}", "P1-1").replace(
            "{receipt_id}", "R1-1")  # fmt: skip
        for method, operation in methods.items():
            found.append((method.upper(), concrete, "requestBody" in operation))
    return [(method, path, body) for method, path, body in found if path.startswith("/api/")]


def test_no_endpoint_answers_without_credentials(shop: Shop) -> None:
    # Signing in needs no credential; a gateway's notification proves who sent it by its
    # signature instead (tests/integration/test_gateway.py).
    open_doors = {"/api/auth/code", "/api/auth/session", "/api/auth/login",
                  "/api/gateway/notify/{channel}"}  # fmt: skip
    checked = [(method, path) for method, path, _ in operations(shop) if path not in open_doors]
    assert len(checked) > 30
    for method, path in checked:
        answer = shop.client.request(method, path, json={}, headers=KEY)
        assert answer.status_code in (401, 422), (method, path, answer.status_code)
        if answer.status_code == 401:
            assert answer.headers["content-type"] == "application/problem+json"


def test_roles_limit_what_operators_may_do(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    _, loan = open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-15")
    payment = {"amount": "888.49", "date": "2026-02-15"}
    viewer = shop.post(f"/api/loans/{loan}/payments", "viewer", payment, key="v-1")
    assert viewer.status_code == 403
    assert viewer.json()["type"] == "urn:fenqi:problem:forbidden"
    assert shop.client.get(f"/api/loans/{loan}", headers=shop.as_("viewer")).status_code == 200
    # Over an agent's limit: the service refuses before it looks for a penalty to forgive.
    over = {"what": "penalty", "amount": "150.00", "reason": "goodwill", "date": "2026-02-15"}
    assert shop.post(f"/api/loans/{loan}/waivers", "agent", over, key="w-1").status_code == 403
    paid = shop.post(f"/api/loans/{loan}/payments", "agent", payment, key="p-1")
    assert paid.status_code == 201, paid.text
    reversal = {"reason": "paid twice"}
    assert (
        shop.post(
            f"/api/payments/{paid.json()['id']}/reversal", "agent", reversal, key="r-1"
        ).status_code
        == 403
    )
    assert (
        shop.post(
            f"/api/payments/{paid.json()['id']}/reversal", "admin", reversal, key="r-1"
        ).status_code
        == 201
    )
    assert shop.client.get("/api/audit", headers=shop.as_("agent")).status_code == 403
    actions = [
        entry["action"] for entry in shop.client.get("/api/audit", headers=shop.as_("admin")).json()
    ]
    assert "payment.reverse" in actions


def test_an_idempotent_payment_is_taken_once(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    _, loan = open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-15")
    payment = {"amount": "888.49", "date": "2026-02-15"}
    first = shop.post(f"/api/loans/{loan}/payments", "agent", payment, key="same")
    again = shop.post(f"/api/loans/{loan}/payments", "agent", payment, key="same")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert (first.headers["Idempotent-Replayed"], again.headers["Idempotent-Replayed"]) == (
        "false",
        "true",
    )
    other = shop.post(
        f"/api/loans/{loan}/payments", "agent", {**payment, "amount": "1.00"}, key="same"
    )
    assert other.status_code == 422
    assert other.json()["type"] == "urn:fenqi:problem:idempotency-key-reused"
    missing = shop.post(f"/api/loans/{loan}/payments", "agent", payment)
    assert missing.status_code == 422
    assert missing.json()["field"] == "Idempotency-Key"
    shown = shop.client.get(
        f"/api/loans/{loan}?as_of=2026-02-15", headers=shop.as_("viewer")
    ).json()
    assert shown["outstanding_principal"] == "9211.51"


def test_a_borrower_signs_in_with_a_code_and_sees_only_her_own(shop: Shop) -> None:
    mine, loan = open_loan(shop, "13800000001", "API-1", on=today().isoformat())
    _, other = open_loan(shop, "13800000002", "API-2")
    wrong = shop.client.post("/api/auth/session", json={"phone": "13800000001", "code": "000000"})
    assert wrong.status_code == 401
    token = borrower_token(shop, "13800000001")
    her = {"Authorization": f"Bearer {token}"}
    assert shop.client.get(f"/api/loans/{loan}", headers=her).json()["item"] == "华为 Mate 70"
    assert [
        plan["id"] for plan in shop.client.get(f"/api/borrowers/{mine}/loans", headers=her).json()
    ] == [loan]
    peek = shop.client.get(f"/api/loans/{other}", headers=her)
    assert peek.status_code == 404
    assert "API-2" not in peek.text
    grab = shop.client.post(
        f"/api/loans/{other}/payments", json={"amount": "1"}, headers={**her, **KEY}
    )
    assert grab.status_code == 404
    back_dated = shop.client.post(f"/api/loans/{loan}/payments", headers={**her, **KEY},
                                  json={"amount": "888.49", "date": "2026-02-15"})  # fmt: skip
    assert back_dated.status_code == 422
    assert "date" in back_dated.text
    paid = shop.client.post(f"/api/loans/{loan}/payments", json={"amount": "888.49"},
                            headers={**her, "Idempotency-Key": "her-1"})  # fmt: skip
    assert paid.status_code == 201, paid.text
    receipt = shop.client.get(f"/api/receipts/{paid.json()['receipt_id']}", headers=her)
    assert receipt.json()["amount"] == "888.49"
    assert shop.client.get("/api/ledger/trial-balance", headers=her).status_code == 403

    def receipts(plan: int) -> Any:
        return shop.client.get(f"/api/loans/{plan}/receipts", headers=her)

    assert [(r["receipt_id"], r["reversed"]) for r in receipts(loan).json()] == [
        (paid.json()["receipt_id"], False)
    ]
    assert receipts(other).status_code == 404
    undone = shop.post(f"/api/payments/{paid.json()['id']}/reversal", "admin",
                       {"reason": "card charged twice"}, key="undo-1")  # fmt: skip
    assert undone.status_code == 201, undone.text
    assert [r["reversed"] for r in receipts(loan).json()] == [True]


def test_new_codes_are_limited_so_guessing_is_too(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_loan(shop, "13800000005", "API-5")

    def texts() -> list[str]:
        with Session(shop.engine) as session:
            sent = select(SmsSentRow.text).where(SmsSentRow.phone == "13800000005")
            return list(session.scalars(sent))

    ask = {"phone": "13800000005"}
    assert shop.client.post("/api/auth/code", json=ask).json() == {
        "sent": True, "expires_in_minutes": 5, "again_in_seconds": 60
    }  # fmt: skip
    again = shop.client.post("/api/auth/code", json=ask).json()  # says nothing, sends nothing,
    assert (again["sent"], again["expires_in_minutes"]) == (True, 5)
    assert 0 < again["again_in_seconds"] <= 60  # and says when a new code may be asked for
    assert len(texts()) == 1
    clock = credentials.now()
    for minutes in range(1, 13):  # a new code a minute later, until ten in a day
        later = clock + timedelta(minutes=minutes)
        monkeypatch.setattr(credentials, "now", lambda moment=later: moment)
        shop.client.post("/api/auth/code", json=ask)
    assert len(texts()) == credentials.CODES_PER_DAY.times


def test_an_operator_finds_a_borrower_by_phone_or_loan_id(shop: Shop) -> None:
    borrower, loan = open_loan(shop, "13800138000", "API-4")
    for text in ("13800138000", str(loan), "API-4", "99999999999999999999"):
        found = shop.client.get("/api/borrowers", params={"q": text}, headers=shop.as_("viewer"))
        assert found.status_code == 200, found.text
        expected = [] if text.startswith("9") else [borrower]
        assert [who["id"] for who in found.json()] == expected, text


def test_a_borrower_with_no_method_bound_cannot_pay_by_hand(shop: Shop) -> None:
    mine, loan = open_loan(shop, "13800000003", "API-3", on=today().isoformat())
    [card] = shop.client.get(f"/api/borrowers/{mine}", headers=shop.as_("viewer")).json()["methods"]
    assert shop.client.delete(f"/api/methods/{card['id']}", headers=shop.as_("agent")).is_success
    her = {"Authorization": f"Bearer {borrower_token(shop, '13800000003')}"}
    before = shop.client.get(f"/api/loans/{loan}", headers=her).json()
    for path, body in ((f"/api/loans/{loan}/payments", {"amount": "100"}),
                       (f"/api/loans/{loan}/prepayments", {"full": True})):  # fmt: skip
        tried = shop.client.post(path, json=body, headers={**her, "Idempotency-Key": path})
        assert tried.status_code == 422, tried.text
        assert "no payment method bound" in tried.json()["detail"]
    assert shop.client.get(f"/api/loans/{loan}", headers=her).json() == before
    by_hand = shop.post(f"/api/loans/{loan}/payments", "agent", {"amount": "100"}, key="counter-1")
    assert by_hand.status_code == 201, by_hand.text


def test_errors_are_problem_details_naming_the_field(shop: Shop) -> None:
    answer = shop.post("/api/quotes", "viewer", {"principal": "100", "periods": 12,
                       "method": "equal-installment", "annual_rate": "40%", "start": "2026-01-15"})  # fmt: skip
    assert answer.status_code == 422
    body = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert body["type"] == "urn:fenqi:problem:invalid-input"
    assert "over the cap" in body["detail"]
    bad = shop.post("/api/quotes", "viewer", {"principal": "12.345", "periods": 12})
    assert (bad.status_code, bad.json()["field"]) == (422, "principal")
    quoted = shop.post("/api/quotes", "viewer", {"principal": "10000", "periods": 12,
                       "method": "equal-installment", "annual_rate": "12%", "start": "2026-01-15"})  # fmt: skip
    assert quoted.json()["total_interest"] == "661.86"
    assert shop.client.get("/api/loans/999", headers=shop.as_("viewer")).status_code == 404


def test_operations_endpoints(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    assert shop.client.get("/healthz").json() == {"status": "ok"}
    assert shop.client.get("/readyz").status_code == 200
    shop.client.get("/api/products", headers=shop.as_("viewer"))
    assert "fenqi_cob_" not in shop.client.get("/metrics").text  # no batch has run yet
    _, loan = open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-15")
    paid = shop.post(f"/api/loans/{loan}/payments", "agent", {"amount": "888.49",
                     "date": "2026-02-15", "channel": "manual"}, key="metrics-1")  # fmt: skip
    assert paid.status_code == 201, paid.text
    monkeypatch.setenv("FENQI_TODAY", "2026-02-16")
    closed = shop.post("/api/cob", "admin", {"date": "2026-02-16"})
    assert closed.status_code == 201, closed.text
    metrics = shop.client.get("/metrics").text
    assert (
        'fenqi_http_requests_total{method="GET",route="/api/products",status="200"} 1.0' in metrics
    )
    assert 'fenqi_payments_total{status="201"} 1.0' in metrics
    latest = '{business_date="2026-02-12",status="done"}'  # the reminder, caught up; 02-16 idle
    assert f"fenqi_cob_loans{latest} {float(closed.json()['caught_up'][-1]['loans'])}" in metrics
    assert f"fenqi_cob_business_date_seconds{latest} 1.7708544e+09" in metrics
    assert f"fenqi_cob_duration_seconds{latest}" in metrics
    assert shop.client.get("/healthz").headers["X-Request-ID"]


def test_secrets_never_reach_the_log(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="fenqi.http")
    shop.client.get("/api/products", headers=shop.as_("admin"))
    shop.client.post("/api/auth/login", json={"username": "admin", "password": "a long password"})
    shop.client.get(
        "/api/products?token=query-secret", headers={"Authorization": "Bearer fq_x_secret"}
    )
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "fenqi.http" in {record.name for record in caplog.records}
    for secret in (shop.keys["admin"], "a long password", "query-secret", "fq_x_secret"):
        assert secret not in logged


# -- closing business days ------------------------------------------------------------------------


def test_closing_a_day_that_has_not_come_is_refused_and_records_nothing(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", "2026-01-15")
    open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-14")
    for day, says in (
        ("2026-02-15", "business day 2026-02-15 has not come yet (today is 2026-02-14"),
        ("2026-01-14", "before the first loan was opened (2026-01-15)"),
        ("9999-12-31", ""),
        ("0001-01-01", ""),
    ):
        refused = shop.post("/api/cob", "admin", {"date": day})
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["field"] == "date"
        assert says in refused.json()["detail"]
    assert shop.client.get("/api/cob/runs", headers=shop.as_("viewer")).json() == []


def test_closing_a_day_catches_up_and_a_rerun_records_no_run(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", "2026-01-15")
    open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-16")
    closed = shop.post("/api/cob", "admin", {"date": "2026-02-16"})
    assert closed.status_code == 201, closed.text
    assert closed.json()["caught_up_from"] == "2026-02-12"
    assert [day["business_date"] for day in closed.json()["caught_up"]] == [
        "2026-02-12", "2026-02-15"
    ]  # fmt: skip
    runs = shop.client.get("/api/cob/runs", headers=shop.as_("viewer")).json()
    again = shop.post("/api/cob", "admin", {"date": "2026-02-16"})
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["id"]) == ("nothing_to_do", None)
    assert shop.client.get("/api/cob/runs", headers=shop.as_("viewer")).json() == runs


def test_a_failed_run_is_a_problem_and_shows_in_the_runs_and_the_metrics(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", "2026-01-15")
    _, loan = open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-12")
    refuse_to_close(shop.engine, loan)
    failed = shop.post("/api/cob", "admin", {"date": "2026-02-12"})
    assert failed.status_code == 500, failed.text
    problem = failed.json()
    assert (problem["type"], problem["run"]) == ("urn:fenqi:problem:batch-failed", 1)
    assert problem["detail"].startswith("close of business 2026-02-12 failed (run 1): 1 of 1 ")
    assert MESSAGE in problem["detail"]
    listed = shop.client.get("/api/cob/runs", headers=shop.as_("viewer")).json()[0]
    assert (listed["status"], listed["chunks_failed"]) == ("failed", 1)
    assert MESSAGE in listed["error"]
    metrics = shop.client.get("/metrics").text
    assert 'fenqi_cob_chunks_failed{business_date="2026-02-12",status="failed"} 1.0' in metrics
    assert 'fenqi_cob_chunks_done{business_date="2026-02-12",status="failed"} 0.0' in metrics

    allow_closing(shop.engine)
    completed = shop.post("/api/cob", "admin", {"date": "2026-02-12"})
    assert completed.status_code == 201, completed.text
    assert (completed.json()["id"], completed.json()["status"]) == (1, "done")
    metrics = shop.client.get("/metrics").text
    assert 'fenqi_cob_chunks_failed{business_date="2026-02-12",status="done"} 0.0' in metrics


def test_a_payment_stops_at_the_payoff_unless_an_admin_approves_more(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    borrower, loan = open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-15")
    quoted = shop.client.get(f"/api/loans/{loan}/payoff-quote", headers=shop.as_("viewer"))
    payoff = quoted.json()["amount"]
    path = f"/api/loans/{loan}/payments"
    for amount in ("50000.00", "999999999999.99"):
        over = shop.post(path, "agent", {"amount": amount, "channel": "manual"}, key=amount)
        assert over.status_code == 422, over.text
        assert (over.json()["type"], over.json()["field"]) == (
            "urn:fenqi:problem:refused",
            "amount",
        )
        assert f"the most that can be taken is {payoff}" in over.json()["detail"]
    too_long = shop.post(path, "agent", {"amount": "1000000000000.00"}, key="13-digits")
    assert (too_long.status_code, too_long.json()["field"]) == (422, "amount")
    approved = {"amount": "50000.00", "channel": "manual", "allow_overpayment": True}
    for role in ("viewer", "agent"):
        assert shop.post(path, role, approved, key=f"{role}-over").status_code == 403
    her = {"Authorization": f"Bearer {borrower_token(shop, '13800000001')}"}
    mine = shop.client.post(path, json={"amount": "50000.00", "allow_overpayment": True},
                            headers={**her, "Idempotency-Key": "her-over"})  # fmt: skip
    assert mine.status_code == 403
    prepaid = shop.post(f"/api/loans/{loan}/prepayments", "agent",
                        {"amount": "50000.00", "channel": "manual"}, key="prepay-over")  # fmt: skip
    assert prepaid.status_code == 422
    taken = shop.post(path, "admin", approved, key="admin-over")
    assert taken.status_code == 201, taken.text
    assert taken.json()["loan"]["status"] == "settled"
    assert borrower == taken.json()["loan"]["borrower_id"]


def test_only_an_admin_pays_a_credit_balance_back_and_it_goes_where_it_came_from(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    borrower, loan = open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-15")
    shop.post(f"/api/borrowers/{borrower}/methods", "agent",
              {"kind": "alipay", "account": "li@example.com", "default": True})  # fmt: skip
    over = {"amount": "10200.00", "channel": "manual", "allow_overpayment": True}
    paid = shop.post(f"/api/loans/{loan}/prepayments", "admin", over, key="over-by-hand")
    assert paid.status_code == 201, paid.text
    credit = paid.json()["loan"]["credit_balance"]
    path = f"/api/loans/{loan}/credit-refunds"
    for role in ("viewer", "agent"):
        assert shop.post(path, role, {}, key=f"{role}-refund").status_code == 403
    back = shop.post(path, "admin", {}, key="admin-refund")
    assert back.status_code == 201, back.text
    assert back.json()["paid_to"] == [{"id": back.json()["id"], "channel": "manual",
                                       "method_id": None, "account": None, "amount": credit,
                                       "status": None, "reason": None}]  # fmt: skip


def test_simulated_balances_are_for_staff_in_simulation_mode_only(
    shop: Shop, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    borrower, _ = open_loan(shop, on=today().isoformat())
    [card] = shop.client.get(f"/api/borrowers/{borrower}", headers=shop.as_("viewer")).json()[
        "methods"
    ]
    fund, rich = f"/api/methods/{card['id']}/sim-balance", {"sim_balance": "999999999999.99"}
    bind = f"/api/borrowers/{borrower}/methods"
    alipay = {"kind": "alipay", "account": "wang@example.com", "sim_balance": "999999999999.99"}
    her = {"Authorization": f"Bearer {borrower_token(shop, '13800000001')}"}
    # In simulation mode (the fixture's): staff only, and a borrower never.
    assert shop.client.put(fund, json=rich, headers=her).status_code == 403
    assert shop.client.put(fund, json=rich, headers=shop.as_("viewer")).status_code == 403
    assert shop.client.put(fund, json={"sim_balance": "5"}, headers=shop.as_("agent")).is_success
    hers = shop.client.post(bind, json=alipay, headers=her)
    assert (hers.status_code, hers.json()["field"]) == (422, "sim_balance")
    # A service started without it has no simulator controls at all.
    monkeypatch.delenv("FENQI_SIMULATION", raising=False)
    with TestClient(create_app(database_url)) as production:
        missing = production.put(fund, json=rich, headers=shop.as_("admin"))
        assert missing.status_code == 404
        refused = production.post(bind, json=alipay, headers=shop.as_("admin"))
        assert (refused.status_code, refused.json()["field"]) == (422, "sim_balance")
        plain = production.post(bind, json={k: v for k, v in alipay.items() if k != "sim_balance"},
                                headers=shop.as_("agent"))  # fmt: skip
        assert plain.status_code == 201, plain.text
    monkeypatch.setenv("FENQI_SIMULATION", "1")
    with TestClient(create_app(database_url)) as simulating:
        assert simulating.put(fund, json=rich, headers=shop.as_("agent")).is_success


def test_ids_are_ascii_digits_and_filed_under_their_canonical_form(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, loan = open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-02-15")
    paid = shop.post(f"/api/loans/{loan}/payments", "agent", {"amount": "100"}, key="p-1").json()
    canonical = paid["id"]
    arabic = canonical.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    headers = shop.as_("admin")
    for odd in map(quote, (arabic, f"{canonical}x", canonical.replace("-", "_"))):
        undo = shop.post(f"/api/payments/{odd}/reversal", "admin", {"reason": "x"}, key=odd)
        assert undo.status_code in (404, 422), (odd, undo.status_code)
        assert shop.client.get(f"/api/receipts/{odd}", headers=headers).status_code in (404, 422)
    for odd in ("1.0", "%201", "+1", "1_0", quote("١"), "99999999999", "0"):
        seen = shop.client.get(f"/api/loans/{odd}", headers=headers)
        assert seen.status_code in (404, 422), (odd, seen.status_code)
    assert shop.client.get(f"/api/loans/{loan}", headers=headers).status_code == 200
    undone = shop.post(f"/api/payments/{canonical.lower()}/reversal", "admin",
                       {"reason": "debited twice"}, key="undo-1")  # fmt: skip
    assert undone.status_code == 201, undone.text
    entries = shop.client.get("/api/audit", params={"target": f"loan:{loan}"},
                              headers=headers).json()  # fmt: skip
    reversals = [entry for entry in entries if entry["action"] == "payment.reverse"]
    assert [entry["before"]["payment_id"] for entry in reversals] == [canonical]  # canonical


def test_dates_far_from_today_are_422_and_staff_book_within_the_window(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, loan = open_loan(shop)
    monkeypatch.setenv("FENQI_TODAY", "2026-03-20")
    viewer, path = shop.as_("viewer"), f"/api/loans/{loan}/payments"
    for far in ("9999-12-31", "0001-01-01"):
        for query in (f"/api/loans/{loan}?as_of={far}", f"/api/loans/{loan}/payoff-quote?date={far}",
                      f"/api/reports/aging?date={far}"):  # fmt: skip
            answer = shop.client.get(query, headers=viewer)
            assert answer.status_code == 422, (query, answer.status_code)
        paid = shop.post(path, "agent", {"amount": "1", "date": far}, key=f"far-{far}")
        assert (paid.status_code, paid.json()["field"]) == (422, "date")
    assert shop.client.get(f"/api/loans/{loan}/payoff-quote?date=2027-03-20",
                           headers=viewer).status_code == 200  # a quote may look ahead  # fmt: skip
    for day, says in (("2026-02-15", "31 days before today"), ("2026-03-21", "after today")):
        late = shop.post(path, "agent", {"amount": "888.49", "date": day}, key=day)
        assert (late.status_code, late.json()["field"]) == (422, "date"), late.text
        assert says in late.json()["detail"]
        waived = shop.post(f"/api/loans/{loan}/waivers", "agent", {"what": "penalty",
                           "amount": "1", "reason": "x", "date": day}, key=f"w-{day}")  # fmt: skip
        assert waived.status_code == 422
    in_window = shop.post(path, "agent", {"amount": "888.49", "date": "2026-02-17"}, key="ok")
    assert in_window.status_code == 201, in_window.text
    monkeypatch.setenv("FENQI_BACKDATE_DAYS", "60")
    wider = shop.post(path, "agent", {"amount": "888.49", "date": "2026-02-15"}, key="wider")
    assert wider.status_code == 201, wider.text


def test_every_json_route_refuses_duplicate_keys_nul_and_deep_nesting(shop: Shop) -> None:
    bodies = {
        '{"amount": "1", "amount": "50000"}': "given twice",
        '{"reason": "a\\u0000b"}': "NUL",
        "[" * 100_000 + "]" * 100_000: "too deeply",
        '{"a": ' * 40 + "1" + "}" * 40: "too deeply",
    }
    taking = [(method, path) for method, path, body in operations(shop) if body]
    assert len(taking) > 15
    for method, path in taking:
        for body, says in bodies.items():
            answer = shop.client.request(method, path, content=body, headers={
                **shop.as_("admin"), **KEY, "Content-Type": "application/json"})  # fmt: skip
            assert answer.status_code == 422, (method, path, body[:20], answer.text)
            problem = answer.json()
            assert problem["type"] == "urn:fenqi:problem:invalid-request"
            assert says in problem["detail"], problem


def test_small_ones_nul_wildcards_and_deep_toml(shop: Shop) -> None:
    admin, viewer = shop.as_("admin"), shop.as_("viewer")
    for name in ("王五", "百分%之_百"):
        made = shop.post("/api/borrowers", "agent",
                         {"name": name, "phone": f"1390000000{len(name)}", "credit_limit": "1"})  # fmt: skip
        assert made.status_code == 201, made.text
    for typed in ("%", "_"):
        found = shop.client.get("/api/borrowers", params={"q": typed}, headers=viewer).json()
        assert [who["name"] for who in found] == ["百分%之_百"], typed
    for params in ({"q": "王\x00"}, {"target": "loan:\x001"}):
        path = "/api/borrowers" if "q" in params else "/api/audit"
        assert shop.client.get(path, params=params, headers=admin).status_code == 422
    deep = "[[product]]\ncode = 'x'\nperiods = " + "[" * 100_000 + "]" * 100_000 + "\n"
    for toml in (deep, "[[product]]\ncode = 'x\x00'\n"):
        loaded = shop.client.post("/api/products", json={"toml": toml}, headers=admin)
        assert loaded.status_code == 422, loaded.text
    # A NUL written as TOML's escape: the JSON and the TOML text hold none, the catalog would.
    for line in ('name = "a\\u0000b"', '"na\\u0000me" = "a"', 'name = "a"\nx = ["\\u0000"]'):
        toml = f'[[product]]\ncode = "x3"\nperiods = [3]\n{line}\n'
        loaded = shop.client.post("/api/products", json={"toml": toml}, headers=admin)
        assert loaded.status_code == 422, loaded.text
        assert "NUL" in loaded.json()["detail"]
    assert "x3" not in [item["code"] for item in shop.client.get("/api/products",
                                                                  headers=admin).json()]  # fmt: skip


def test_a_reversal_that_reopens_a_settled_plan_is_a_409_with_its_consequences_until_confirmed(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    def on(day: str) -> str:
        monkeypatch.setenv("FENQI_TODAY", day)  # each step is done on its own day
        return day

    on("2026-01-15")
    _, loan = open_loan(shop, "13800000009", "API-9")
    for month in (2, 3, 4):
        paid = shop.post(f"/api/loans/{loan}/payments", "agent",
                         {"amount": "888.49", "date": on(f"2026-0{month}-15")}, key=f"p-{month}")  # fmt: skip
        assert paid.status_code == 201, paid.text
    payoff = shop.post(f"/api/loans/{loan}/prepayments", "agent",
                       {"full": True, "date": on("2026-04-30")}, key="payoff")  # fmt: skip
    assert payoff.json()["loan"]["status"] == "settled"
    on("2026-05-20")  # installment 4 was due on 15 May: 5 days ago
    path, body = f"/api/payments/{payoff.json()['id']}/reversal", {"reason": "recalled"}
    asked = shop.post(path, "admin", body, key="rv-1")
    assert asked.status_code == 409, asked.text
    assert asked.headers["content-type"] == "application/problem+json"
    problem = asked.json()
    assert problem["type"] == "urn:fenqi:problem:confirmation-needed"
    assert '"confirm": true' in problem["detail"]
    effect = problem["consequences"]
    assert (effect["as_of"], effect["status_before"], effect["status_after"], effect["dpd"]) == (
        "2026-05-20", "settled", "overdue", 5
    )  # fmt: skip
    shown = shop.client.get(f"/api/loans/{loan}", headers=shop.as_("viewer")).json()
    assert shown["status"] == "settled"  # nothing changed
    for loose in ("yes", "true", 1, "on"):  # a confirmation is a JSON true, nothing like one
        sent = shop.post(path, "admin", {**body, "confirm": loose}, key=f"rv-{loose}")
        assert (sent.status_code, sent.json()["field"]) == (422, "confirm"), sent.text
    shown = shop.client.get(f"/api/loans/{loan}", headers=shop.as_("viewer")).json()
    assert shown["status"] == "settled"

    done = shop.post(path, "admin", {**body, "confirm": True}, key="rv-1")
    assert done.status_code == 201, done.text
    assert done.json()["consequences"] == effect
    shown = shop.client.get(f"/api/loans/{loan}", headers=shop.as_("viewer")).json()
    assert (shown["status"], shown["dpd"], shown["written_off_on"]) == ("overdue", 5, None)
    assert (shown["outstanding_penalty"], shown["amount_due"]) == (
        effect["penalty"], effect["amount_due"]
    )  # fmt: skip


def test_every_yes_or_no_in_a_body_is_a_json_boolean() -> None:
    """Every bool field of every request body, present and future: pydantic's lax bool would
    take "yes", "on", "1" or 1 for true."""
    flags = [(model, name) for model in _bodies(Body) for name, field in
             model.model_fields.items() if field.annotation is bool]  # fmt: skip
    assert {name for _, name in flags} >= {"confirm", "allow_overpayment", "default", "full"}
    for model, name in flags:
        for loose in ("yes", "true", "on", "1", 1, 0):
            with pytest.raises(ValidationError, match="valid boolean"):
                model.model_validate({name: loose})


def _bodies(model: type[Body]) -> list[type[Body]]:
    found = []
    for kind in model.__subclasses__():
        found += [kind, *_bodies(kind)]
    return found


def test_a_bill_kept_for_repeat_views_is_what_fastapi_would_write_and_never_a_stale_one(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FENQI_TODAY", "2026-01-15")
    _, loan = open_loan(shop, "13800000011", "API-11")
    viewer = shop.as_("viewer")

    def bill() -> Any:
        answer = shop.client.get(f"/api/loans/{loan}", headers=viewer)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert answer.content == JSONResponse(answer.json()).body  # as FastAPI writes a dict
        return answer.json()

    first = bill()
    assert bill() == first
    assert first["as_of"] == "2026-01-15"
    token = borrower_token(shop, "13800000011")
    her = {"Authorization": f"Bearer {token}"}
    assert shop.client.get(f"/api/loans/{loan}", headers=her).json() == first
    _, other = open_loan(shop, "13800000012", "API-12")
    shop.client.get(f"/api/loans/{other}", headers=viewer)  # kept for the viewer's eyes
    assert shop.client.get(f"/api/loans/{other}", headers=her).status_code == 404
    paid = shop.post(f"/api/loans/{loan}/payments", "agent", {"amount": "100"}, key="kept-1")
    assert paid.status_code == 201, paid.text
    assert bill()["installments"][0]["paid"] == "100.00"
    monkeypatch.setenv("FENQI_TODAY", "2026-03-01")  # a new day: installment 1 fell due unpaid
    later = bill()
    assert (later["as_of"], later["status"], later["dpd"]) == ("2026-03-01", "overdue", 14)
    served: Engine = shop.client.app.state.context.engine  # type: ignore[attr-defined]
    said: list[str] = []
    event.listen(served, "before_cursor_execute", lambda *args: said.append(args[2]))
    assert bill() == later
    assert said == []  # asked from the event loop (``QuickReads``), past the units of work
    key_id = shop.keys["viewer"].split("_")[1]
    credentials.revoke_api_key(simulated_context(shop.engine, actor="setup"), key_id)
    assert shop.client.get(f"/api/loans/{loan}", headers=viewer).status_code == 401


def test_the_service_keeps_what_it_loaded_at_start_out_of_the_collectors_full_passes(
    engine: Engine, database_url: str
) -> None:
    """A full collection that walked the whole web stack stopped every request for 60-80 ms
    (the paced payments' p99): once started, the app freezes what it has loaded, and lets it go
    again when it stops, so an app made in a longer-lived process leaks nothing."""
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(database_url)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000  # the web stack, the ORM, the catalogs
    assert gc.get_freeze_count() == 0
