"""``fenqi serve`` as an operator starts it: one process or several on one port, each writing its
request log, and a clear refusal when the port is taken."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fenqi.cli.serve import listening_socket
from tests.e2e.cli import fenqi, free_port, refused


def started(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60  # generous: a loaded machine starts two processes slowly
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()[1]
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


@contextmanager
def serving(db: str, *options: str) -> Iterator[tuple[httpx.Client, list[str]]]:
    """``fenqi serve`` with two worker processes and these options, on a free port, until the
    block ends: a client of it, and the lines it wrote to stderr (filled in once it stopped)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fenqi", "serve", "--port", str(port), "--workers", "2", *options,
         "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    written: list[str] = []
    try:
        started(port, server)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            yield http, written
    finally:
        server.terminate()
        written.extend(server.communicate(timeout=30)[1].splitlines())


def test_two_worker_processes_serve_one_port_and_log_each_request(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fenqi.sqlite3'}"
    assert fenqi("db", "upgrade", "--db", db).code == 0
    with serving(db) as (http, err):
        answers = [http.get("/readyz", headers={"X-Request-ID": f"r-{n}"}) for n in range(4)]
        assert [answer.status_code for answer in answers] == [200] * 4
        assert http.get("/api/loans/1").status_code == 401
    logged = [json.loads(line) for line in err if line.startswith("{")]
    ready = [line["request_id"] for line in logged if line["route"] == "/readyz"]
    assert ready == ["r-0", "r-1", "r-2", "r-3"]  # written by the worker processes
    assert any(line["status"] == 401 for line in logged)


def test_the_security_options_reach_every_worker(tmp_path: Path) -> None:
    """Behind TLS (Secure cookies), metrics and docs off, and X-Forwarded-For believed only from
    the proxy named: as the worker processes, which build their own app, have it."""
    db = f"sqlite:///{tmp_path / 'fenqi.sqlite3'}"
    assert fenqi("db", "upgrade", "--db", db).code == 0
    made = fenqi("user", "create", "--username", "agent", "--role", "agent", "--password-stdin",
                 "--db", db, stdin="a long password\n")  # fmt: skip
    assert made.code == 0, made.err
    options = ("--behind-tls", "--metrics", "off", "--docs", "off", "--trusted-proxy", "10.0.0.0/8")
    with serving(db, *options) as (http, _):
        assert http.get("/metrics").status_code == 404
        assert http.get("/openapi.json").status_code == 404
        signed = http.post("/console/login",
                           data={"username": "agent", "password": "a long password"})  # fmt: skip
        assert signed.status_code == 303, signed.text
        assert "secure" in signed.headers["set-cookie"].lower().split("; ")
        assert signed.headers["Strict-Transport-Security"]
        # 127.0.0.1 is no trusted proxy: what it forwards is not believed, so all thirty wrong
        # codes count against 127.0.0.1, and the next is refused whatever it says.
        for n in range(30):
            guess = {"phone": f"1370000{n:04d}", "code": "123456"}
            forged = {"X-Forwarded-For": f"203.0.113.{n}"}
            assert http.post("/api/auth/session", json=guess, headers=forged).status_code == 401
        last = http.post("/api/auth/session", json={"phone": "13800000000", "code": "123456"},
                         headers={"X-Forwarded-For": "203.0.113.99"})  # fmt: skip
        assert last.status_code == 429


def test_a_security_option_that_cannot_be_used_is_refused_in_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fenqi.sqlite3'}"
    refused(fenqi("serve", "--metrics", "maybe", "--db", db), "open, staff, off")
    refused(fenqi("serve", "--trusted-proxy", "proxy.example", "--db", db), "not an IP address")


def test_a_taken_port_is_refused_in_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fenqi.sqlite3'}"
    assert fenqi("db", "upgrade", "--db", db).code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = fenqi("serve", "--port", str(port), "--db", db)
    refused(run, "cannot listen on")
    assert "--port" in run.err


@pytest.mark.parametrize("host", ["999.1.1.1", "no such host", "192.0.2.1"])
def test_a_host_that_cannot_be_listened_on_is_blamed_on_host(tmp_path: Path, host: str) -> None:
    """Not an address, no name, or an address of no interface here (192.0.2.1 is for
    documentation only): the refusal names --host, not --port."""
    db = f"sqlite:///{tmp_path / 'fenqi.sqlite3'}"
    assert fenqi("db", "upgrade", "--db", db).code == 0
    run = fenqi("serve", "--host", host, "--port", str(free_port()), "--db", db)
    refused(run, "--host")
    assert "--port" not in run.err


def test_answers_on_the_shared_socket_are_not_held_back_by_nagle() -> None:
    """asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it every answer
    after a connection's first waits for the client's delayed ACK."""

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = listening_socket("127.0.0.1", 0)
        server = await asyncio.start_server(accepted, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0
