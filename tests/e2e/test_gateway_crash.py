"""The crash windows of a debit, end to end: a process is killed after the gateway took the money
and before the answer was recorded (or before the gateway was asked at all); ``fenqi gateway
reconcile``, run afterwards as an operator runs it, settles the request by asking the gateway,
and no money moves twice."""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.e2e.cli import fenqi
from tests.gateway_sim import Sim, gateway_sim

# A payment's first two phases in a process that is killed (SIGKILL: no cleanup, no answer
# recorded) right after the gateway was asked, or before it was.
_DIES = """
import os, signal, sys
from datetime import date
from fenqi.cli.context import database
from fenqi.domain.events import Channel
from fenqi.domain.money import Money
from fenqi.domain.withholding import DebitRequest, Kind
from fenqi.services import withholding

url, token, key, when = sys.argv[1:]
with database(url) as context:
    request = DebitRequest(5, withholding.order_id(5, key), Kind.PAY, Money(25_000),
                           Channel.BANK_CARD, 1, token, key, date(2026, 3, 1))
    request = withholding.open_request(context, request)
    if when == "after-the-request":
        withholding.ask(context, request)
    print(request.order_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    with gateway_sim(tmp_path_factory.mktemp("sim")) as running:
        yield running


@pytest.mark.parametrize("crash", [
    ("after-the-request", "succeeded", 1),
    ("before-the-request", "failed", 0),
])  # fmt: skip
def test_a_debit_killed_between_its_phases_is_settled_by_the_reconciler_once(
        database_url: str, engine: Engine, sim: Sim, crash: tuple[str, str, int]):  # fmt: skip
    when, outcome, debits = crash
    token = f"tok-{uuid.uuid4().hex[:12]}"  # a method of its own: the simulator outlives a test
    sim.controls.set_balance(token, 100_000)
    environment = {**os.environ, "FENQI_GATEWAY_URL": sim.url, "FENQI_SIMULATION": "1"}
    environment.pop("FENQI_GATEWAY_SECRET", None)
    killed = subprocess.run([sys.executable, "-c", _DIES, database_url, token, f"k-{token}", when],
                            capture_output=True, text=True, env=environment, timeout=60,
                            check=False)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    gateway = {"FENQI_GATEWAY_URL": sim.url, "FENQI_SIMULATION": "1"}
    report = fenqi("gateway", "reconcile", "--older-than", "0", "--db", database_url, "--json",
                   env=gateway).json()  # fmt: skip
    assert report["examined"] == 1
    assert report[outcome] == 1
    again = fenqi("gateway", "reconcile", "--older-than", "0", "--db", database_url, "--json",
                  env=gateway).json()  # fmt: skip
    assert again["examined"] == 0
    account = sim.controls.account(token)
    assert (account["balance"], account["debits"]) == (100_000 - 25_000 * debits, debits)
