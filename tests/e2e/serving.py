"""The app served by a real uvicorn, in a thread of the test's process (for the browser tests),
or by ``fenqi serve`` in a process of its own, as an operator runs it."""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from fenqi.cli.serve import listening_socket
from fenqi.http.app import create_app
from tests.e2e.cli import free_port


@contextmanager
def serving(url: str) -> Iterator[str]:
    """The app on ``url``'s database, served on a free port until the block ends; yields its
    base address."""
    listening = listening_socket("127.0.0.1", 0)  # TCP_NODELAY, as `fenqi serve` has it
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(url), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the server stopped before it started"
        assert time.monotonic() < deadline, "the server did not start in 20 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()


def wait_until_up(
    process: subprocess.Popen[bytes], base: str, log: Path, *, seconds: float
) -> None:
    """Waits for a server process started on ``base`` to answer ``/healthz``; its log tells
    why when it stopped instead."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, log.read_text()
        try:
            httpx.get(f"{base}/healthz", timeout=1.0)
            return
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"{base} did not start in {seconds:g} s"
            time.sleep(0.1)


@contextmanager
def fenqi_serve(url: str, log: Path, **environment: str) -> Iterator[str]:
    """``fenqi serve`` on ``url``'s database on a free port, its log (stderr) written to ``log``
    (a file: no pipe to fill), with ``environment`` added to its own; yields its base address."""
    port = free_port()
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "fenqi", "serve", "--port", str(port), "--db", url],
            stdout=sink, stderr=sink, env={**os.environ, **environment},
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, base, log, seconds=60)  # a loaded machine starts a server slowly
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
