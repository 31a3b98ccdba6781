"""``/openapi.json`` describes every answer of the API: each success of each ``/api`` route has
a body schema with its properties named, and the real answers of a plan's life, from checkout
to the books and the batch, validate against those very schemas (``additionalProperties`` false:
a key the presenter adds and the schema does not name fails here)."""

from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from fenqi.http.app import create_app
from fenqi.services import credentials, products
from fenqi.services.policy import Role
from tests.simulated import simulated_context

OpenApi = dict[str, Any]


@pytest.fixture
def client(engine: Engine, database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    context = simulated_context(engine, actor="setup")
    products.load_products(context)
    credentials.create_user(context, "admin", "a long password", Role.ADMIN)
    key = credentials.create_api_key(context, "admin").api_key
    with TestClient(create_app(database_url, simulation=True)) as served:
        yield served, {"X-API-Key": key}


def _resolved(document: OpenApi, schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a ``$ref`` names, and for a list the schema of its items."""
    while True:
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif schema.get("type") == "array":
            schema = schema["items"]
        else:
            return schema


def _successes(document: OpenApi) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in methods.items():
            for status, answer in operation["responses"].items():
                if status.startswith("2"):
                    yield path, method, status, answer


def test_every_success_of_every_api_route_has_a_body_with_named_properties(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    document = client[0].get("/openapi.json").json()
    checked = []
    for path, method, status, answer in _successes(document):
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        properties = _resolved(document, schema).get("properties")
        assert properties, f"{method.upper()} {path} {status} has no described body"
        checked.append(path)
    assert len(set(checked)) >= 30  # every route the API has, not a few


def _validator(document: OpenApi, path: str, method: str, status: int) -> Any:
    answer = document["paths"][path][method]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    root = {**schema, "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def test_real_answers_validate_against_the_schemas_the_document_gives(  # noqa: PLR0915 - one walk through every route, as a plan lives
    client: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, admin = client
    document = served.get("/openapi.json").json()
    seen: list[str] = []

    def call(verb: str, template: str, body: dict[str, Any] | None = None, key: str | None = None,
             **ids: object) -> Any:  # fmt: skip
        headers = {**admin, **({"Idempotency-Key": key} if key else {})}
        answer = served.request(verb, template.format(**ids), json=body, headers=headers)
        assert answer.status_code < 300, answer.text
        errors = [
            error.message
            for error in _validator(
                document, template.split("?", maxsplit=1)[0], verb.lower(), answer.status_code
            ).iter_errors(answer.json())
        ]
        assert errors == [], f"{verb} {template}: {errors}"  # fmt: skip
        seen.append(template)
        return answer.json()

    monkeypatch.setenv("FENQI_TODAY", "2026-01-15")
    who = call("POST", "/api/borrowers", {"name": "李雷", "phone": "13800000001",
                                          "credit_limit": "50000"})  # fmt: skip
    borrower = who["id"]
    card = call("POST", "/api/borrowers/{borrower_id}/methods", {"kind": "bank_card",
                "account": "6222020000001234567", "sim_balance": "20000"},
                borrower_id=borrower)  # fmt: skip
    call("POST", "/api/methods/{method_id}/default", method_id=card["id"])
    order = {"borrower_id": borrower, "order_id": "R-1", "merchant": "华为商城",
             "item": "华为 Mate 70", "amount": "10000", "product": "cash", "periods": 12}  # fmt: skip
    call("POST", "/api/checkout/quote", order)
    loan = call("POST", "/api/checkout", order, key="checkout-1")["id"]
    call(
        "POST",
        "/api/quotes",
        {"principal": "10000", "periods": 12, "method": "equal-installment", "annual_rate": "12%"},
    )
    call("GET", "/api/products")
    call("GET", "/api/me")
    call("GET", "/api/borrowers?q={q}", q="13800000001")
    monkeypatch.setenv("FENQI_TODAY", "2026-02-20")
    call("PUT", "/api/methods/{method_id}/sim-balance", {"sim_balance": "0"},
         method_id=card["id"])  # fmt: skip
    call("POST", "/api/cob", {"date": "2026-02-20"})  # the debit fails: penalty runs
    call("PUT", "/api/methods/{method_id}/sim-balance", {"sim_balance": "30000"},
         method_id=card["id"])  # fmt: skip
    call("POST", "/api/loans/{loan_id}/waivers", {"what": "penalty", "amount": "0.01",
         "reason": "goodwill"}, key="waive-1", loan_id=loan)  # fmt: skip
    paid = call("POST", "/api/loans/{loan_id}/payments", {"amount": "500"}, key="pay-1",
                loan_id=loan)  # fmt: skip
    call("POST", "/api/loans/{loan_id}/payments", {"amount": "500"}, key="pay-1", loan_id=loan)
    call("POST", "/api/loans/{loan_id}/prepayments", {"amount": "3000", "channel": "manual"},
         key="prepay-1", loan_id=loan)  # fmt: skip
    call("GET", "/api/loans/{loan_id}/prepayment-preview?amount=1000.00", loan_id=loan)
    call("GET", "/api/loans/{loan_id}/payment-preview?amount=100.00&channel=manual", loan_id=loan)
    assert call("GET", "/api/loans/{loan_id}/explained", loan_id=loan)["late"] is not None
    owed = call("GET", "/api/borrowers/{borrower_id}/overview", borrower_id=borrower)
    assert owed["installments"]  # a plan still owed: every part of the document is checked
    call("POST", "/api/payments/{payment_id}/reversal", {"reason": "paid twice",
         "confirm": True}, key="reverse-1", payment_id=paid["payment_id"])  # fmt: skip
    call("POST", "/api/loans/{loan_id}/refunds", {"amount": "10000"}, key="refund-1",
         loan_id=loan)  # fmt: skip
    call("GET", "/api/loans/{loan_id}", loan_id=loan)
    call("GET", "/api/borrowers/{borrower_id}", borrower_id=borrower)
    call("GET", "/api/borrowers/{borrower_id}/loans", borrower_id=borrower)
    call("GET", "/api/loans/{loan_id}/history", loan_id=loan)
    call("GET", "/api/loans/{loan_id}/receipts", loan_id=loan)
    call("GET", "/api/receipts/{receipt_id}", receipt_id=paid["receipt_id"])
    call("GET", "/api/ledger/trial-balance")
    call("GET", "/api/ledger/check")
    runs = call("GET", "/api/cob/runs")
    call("GET", "/api/cob/runs/{run_id}", run_id=runs[0]["id"])
    call("GET", "/api/reports/aging")
    call("GET", "/api/sms/outbox")
    call("GET", "/api/audit")
    call("DELETE", "/api/methods/{method_id}", method_id=card["id"])
    assert len(set(seen)) >= 32
