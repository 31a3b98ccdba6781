"""``fenqi gateway-sim`` in a process of its own on a free loopback port, as an operator runs it,
with a signed client of its API and of its admin endpoints."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fenqi.channels.gateway_http import HttpGateway, SignedClient, SimulatorControls
from fenqi.channels.signing import Signer
from fenqi.settings import DEV_GATEWAY_SECRET
from tests.e2e.cli import free_port
from tests.e2e.serving import wait_until_up

SIGNER = Signer(DEV_GATEWAY_SECRET.encode())


@dataclass
class Sim:
    url: str
    process: subprocess.Popen[bytes]
    gateway: HttpGateway
    controls: SimulatorControls


@contextmanager
def gateway_sim(where: Path, *, answer_seconds: float = 1.0) -> Iterator[Sim]:
    """The simulator with its state in ``where``; its adapter gives up on an answer after
    ``answer_seconds``."""
    port = free_port()
    log = where / "gateway-sim.log"
    environment = {key: value for key, value in os.environ.items()
                   if key != "FENQI_GATEWAY_SECRET"}  # fmt: skip
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "fenqi", "gateway-sim", "--port", str(port),
             "--state", str(where / "gateway-sim.sqlite3")],
            stdout=sink, stderr=sink, env=environment,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until_up(process, url, log, seconds=30)
    client = SignedClient(url, SIGNER, answer_seconds=answer_seconds)
    try:
        yield Sim(url, process, HttpGateway(client), SimulatorControls(client))
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
