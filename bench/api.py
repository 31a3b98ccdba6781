"""Requests per second and latency of the running HTTP service, driven from another process:
payments with idempotency keys, and bill views, on SQLite and on PostgreSQL. Run by hand:

    .venv/bin/python bench/api.py [--seconds 10] [--clients 8] [--loans 200] [--workers 1]
                                  [--postgres URL] [--no-sqlite]

Contention: ``--loans 4 --clients 16`` puts sixteen clients on four loans, so that writers of one
loan queue behind its row lock; the answers are counted by status, 5xx apart.

The server is ``fenqi serve --workers N`` in processes of its own; this process is the load:
``--clients`` threads, each with its own HTTP connection, sending a payment (a new idempotency
key each time) or a bill view, half and half, for ``--seconds``. The baseline, measured in the
same run against the same server, is ``/healthz``: what the HTTP stack and this load generator
manage with no work behind them, the ceiling any endpoint could reach here. Target (issue 5): on
PostgreSQL at least 800 payments/s with p99 at most 50 ms on this 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.money import Money
from fenqi.services import access, borrowers, products, servicing
from fenqi.services.access import Role
from fenqi.services.context import Context
from fenqi.store.database import make_engine, upgrade

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def prepare(url: str, loans: int) -> tuple[str, list[int]]:
    """An agent's API key and ``loans`` cash loans started a month ago, on cards that pay."""
    engine = make_engine(url)
    upgrade(engine)
    context = Context(engine, SimulatedChannel, actor="bench")
    products.load_products(context)
    access.create_user(context, "bench", "bench password", Role.AGENT)
    key = access.create_api_key(context, "bench")["api_key"]
    start = date.today() - timedelta(days=30)
    made = []
    for number in range(loans):
        who = borrowers.create_borrower(
            context, f"压测{number}", f"1300000{number:04d}", Money(10**10)
        )
        borrowers.bind_method(context, who["id"], "bank_card", f"62220200{number:011d}",
                              sim_balance=Money(10**12))  # fmt: skip
        order = servicing.Order(
            who["id"], f"B-{number}", "m", Money.parse("10000"), "cash", 12, start
        )
        made.append(servicing.checkout(context, order)["id"])
    engine.dispose()
    return str(key), made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(url: str, port: int, workers: int, log: str | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "fenqi", "serve", "--port", str(port), "--db", url,
               "--workers", str(workers)]  # fmt: skip
    with open(log or os.devnull, "ab") as sink:  # the server keeps its own copy of the file
        server = subprocess.Popen(command, stdout=sink, stderr=sink)
    deadline = time.monotonic() + 60  # a loaded machine starts a server slowly
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start")


def drive(port: int, key: str, loans: list[int], seconds: float, clients: int, *,
          baseline: bool = False) -> tuple[dict[str, list[float]], Counter[int]]:  # fmt: skip
    """Each client's requests and how long each took, by kind, and the answers by status;
    ``baseline`` asks /healthz."""
    timings: dict[str, list[float]] = {"payment": [], "bill": [], "healthz": [], "error": []}
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(number: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key},
                          timeout=30.0) as http:  # fmt: skip
            turn = number
            while time.perf_counter() < stop:
                loan = loans[turn % len(loans)]
                began = time.perf_counter()
                try:
                    status, kind = ask(http, loan, turn)
                except httpx.TransportError:  # the server dropped the connection
                    status, kind = 0, "error"
                with lock:
                    timings[kind].append(time.perf_counter() - began)
                    statuses[status] += 1
                turn += clients

    def ask(http: httpx.Client, loan: int, turn: int) -> tuple[int, str]:
        if baseline:
            answer = http.get("/healthz")
            return answer.status_code, "healthz" if answer.status_code == 200 else "error"
        if turn % 2:
            answer = http.post(f"/api/loans/{loan}/payments", json={"amount": "1.00"},
                               headers={"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
            return answer.status_code, "payment" if answer.status_code == 201 else "error"
        answer = http.get(f"/api/loans/{loan}")
        return answer.status_code, "bill" if answer.status_code == 200 else "error"

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return timings, statuses


def report(label: str, timings: dict[str, list[float]], seconds: float, ceiling: float,
           statuses: Counter[int] | None = None) -> None:  # fmt: skip
    for kind in ("healthz", "payment", "bill"):
        values = sorted(timings[kind])
        if not values:
            continue
        rate = len(values) / seconds
        p50 = statistics.median(values) * 1000
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
        print(f"{label:<11} {kind:<8} {rate:8,.0f}/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
              f"{rate / ceiling:6.1%} of the /healthz ceiling")  # fmt: skip
    if statuses is not None:
        total = sum(statuses.values())
        every = sorted(timings["payment"] + timings["bill"] + timings["error"])
        p99 = every[min(len(every) - 1, int(len(every) * 0.99))] * 1000 if every else 0.0
        failed = sum(count for status, count in statuses.items() if status >= 500)
        counts = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        print(f"{label:<11} all      {total / seconds:8,.0f}/s   p99 {p99:6.1f} ms   "
              f"{total} requests ({counts}), 5xx: {failed}")  # fmt: skip


def run(label: str, url: str, options: argparse.Namespace) -> None:
    key, loans = prepare(url, options.loans)
    port = free_port()
    server = serve(url, port, options.workers, options.server_log)
    try:
        label = f"{label} ×{options.workers}"
        seconds = min(options.seconds, 5.0)
        floor, _ = drive(port, key, loans, seconds, options.clients, baseline=True)
        ceiling = len(floor["healthz"]) / seconds
        report(label, floor, seconds, ceiling)
        timings, statuses = drive(port, key, loans, options.seconds, options.clients)
        report(label, timings, options.seconds, ceiling, statuses)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--loans", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--postgres", default=POSTGRES, help="server URL ('' to skip)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--server-log", metavar="FILE", help="append the servers' log to FILE")
    options = parser.parse_args()
    print(f"{options.clients} clients on {options.loans} loans for {options.seconds:.0f} s each; "
          "payments and bill views half and half; target on PostgreSQL: ≥ 800 payments/s at "
          "p99 ≤ 50 ms")  # fmt: skip
    if not options.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            run("SQLite", f"sqlite:///{Path(folder) / 'api.sqlite3'}", options)
    if options.postgres:
        schema = f"fenqi_api_bench_{os.getpid()}"
        server = make_engine(options.postgres)
        with server.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            run("PostgreSQL", f"{options.postgres}?options=-csearch_path%3D{schema}", options)
        finally:
            with server.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            server.dispose()


if __name__ == "__main__":
    main()
