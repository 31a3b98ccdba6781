"""Schemathesis against ``/openapi.json``: generated requests to every operation, as an admin,
find no server error and no response that breaks the document."""

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, checks

from fenqi.http.app import create_app
from fenqi.services import credentials, products
from fenqi.services.policy import Role
from fenqi.store.database import make_engine, upgrade
from tests.simulated import simulated_context

_folder = tempfile.mkdtemp(prefix="fenqi-schema-")
URL = f"sqlite:///{Path(_folder) / 'schema.sqlite3'}"


def _admin_key() -> str:
    engine = make_engine(URL)
    upgrade(engine)
    context = simulated_context(engine, actor="schemathesis")
    products.load_products(context)
    credentials.create_user(context, "fuzz", "a long password", Role.ADMIN)
    key = credentials.create_api_key(context, "fuzz").api_key
    engine.dispose()
    return str(key)


ADMIN = {"X-API-Key": _admin_key()}
# What the document promises: no server error, only documented status codes, content types,
# bodies and headers. (Business refusals of schema-valid requests are fine: 4xx by design.)
PROMISES = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(URL))


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.filterwarnings("ignore")
def test_the_api_keeps_its_openapi_promises(case: Case) -> None:
    case.call_and_validate(headers={**ADMIN, **(case.headers or {})}, checks=PROMISES)
