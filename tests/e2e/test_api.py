"""The HTTP API end to end (the real app and database, over HTTP in-process), on SQLite and
PostgreSQL: credentials and roles, a borrower confined to her own plans, idempotency keys, problem
details, and the operations endpoints."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.api.app import create_app
from fenqi.channels.simulator import SimulatedChannel
from fenqi.clock import today
from fenqi.services import access, products
from fenqi.services.access import Role
from fenqi.services.context import Context
from fenqi.store.schema import SmsSentRow

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
    context = Context(engine, SimulatedChannel, actor="setup")
    products.load_products(context)
    keys = {}
    for role in Role:
        access.create_user(context, role.value, "a long password", role)
        keys[role.value] = access.create_api_key(context, role.value)["api_key"]
    with TestClient(create_app(database_url)) as client:
        yield Shop(client, keys, engine)


def open_loan(shop: Shop, phone: str = "13800000001", order: str = "API-1",
              on: str = "2026-01-15") -> tuple[int, int]:  # fmt: skip
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


def test_no_endpoint_answers_without_credentials(shop: Shop) -> None:
    open_doors = {"/api/auth/code", "/api/auth/session", "/api/auth/login"}
    for route in shop.client.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        if not path.startswith("/api/") or path in open_doors:
            continue
        concrete = path.replace("{loan_id}", "1").replace("{borrower_id}", "1").replace(
            "{method_id}", "1").replace("{run_id}", "1").replace("{payment_id}", "P1-1").replace(
            "{receipt_id}", "R1-1")  # fmt: skip
        for method in getattr(route, "methods", ()):
            answer = shop.client.request(method, concrete, json={}, headers=KEY)
            assert answer.status_code in (401, 422), (method, path, answer.status_code)
            if answer.status_code == 401:
                assert answer.headers["content-type"] == "application/problem+json"


def test_roles_limit_what_operators_may_do(shop: Shop) -> None:
    _, loan = open_loan(shop)
    payment = {"amount": "888.49", "date": "2026-02-15"}
    viewer = shop.post(f"/api/loans/{loan}/payments", "viewer", payment, key="v-1")
    assert viewer.status_code == 403
    assert viewer.json()["type"] == "urn:fenqi:problem:forbidden"
    assert shop.client.get(f"/api/loans/{loan}", headers=shop.as_("viewer")).status_code == 200
    late = {"what": "penalty", "amount": "150.00", "reason": "goodwill", "date": "2026-09-01"}
    assert shop.post(f"/api/loans/{loan}/waivers", "agent", late, key="w-1").status_code == 403
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


def test_an_idempotent_payment_is_taken_once(shop: Shop) -> None:
    _, loan = open_loan(shop)
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
    assert shop.client.post("/api/auth/code", json=ask).json() == {"sent": True,
                                                                  "expires_in_minutes": 5}  # fmt: skip
    again = shop.client.post("/api/auth/code", json=ask)
    assert again.json() == {"sent": True, "expires_in_minutes": 5}  # says nothing, sends nothing
    assert len(texts()) == 1
    clock = access.now()
    for minutes in range(1, 13):  # a new code a minute later, until ten in a day
        later = clock + timedelta(minutes=minutes)
        monkeypatch.setattr(access, "now", lambda moment=later: moment)
        shop.client.post("/api/auth/code", json=ask)
    assert len(texts()) == access.CODES_PER_DAY


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


def test_operations_endpoints(shop: Shop) -> None:
    assert shop.client.get("/healthz").json() == {"status": "ok"}
    assert shop.client.get("/readyz").status_code == 200
    shop.client.get("/api/products", headers=shop.as_("viewer"))
    assert "fenqi_cob_" not in shop.client.get("/metrics").text  # no batch has run yet
    _, loan = open_loan(shop)
    paid = shop.post(f"/api/loans/{loan}/payments", "agent", {"amount": "888.49",
                     "date": "2026-02-15", "channel": "manual"}, key="metrics-1")  # fmt: skip
    assert paid.status_code == 201, paid.text
    closed = shop.post("/api/cob", "admin", {"date": "2026-02-16"})
    assert closed.status_code == 201, closed.text
    metrics = shop.client.get("/metrics").text
    assert (
        'fenqi_http_requests_total{method="GET",route="/api/products",status="200"} 1.0' in metrics
    )
    assert 'fenqi_payments_total{status="201"} 1.0' in metrics
    latest = '{business_date="2026-02-16",status="done"}'
    assert f"fenqi_cob_loans{latest} {float(closed.json()['loans'])}" in metrics
    assert f"fenqi_cob_business_date_seconds{latest} 1.7712e+09" in metrics
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

    done = shop.post(path, "admin", {**body, "confirm": True}, key="rv-1")
    assert done.status_code == 201, done.text
    assert done.json()["consequences"] == effect
    shown = shop.client.get(f"/api/loans/{loan}", headers=shop.as_("viewer")).json()
    assert (shown["status"], shown["dpd"], shown["written_off_on"]) == ("overdue", 5, None)
    assert (shown["outstanding_penalty"], shown["amount_due"]) == (
        effect["penalty"], effect["amount_due"]
    )  # fmt: skip
