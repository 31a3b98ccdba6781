"""Requests per second and latency of the running HTTP service, driven from another process:
payments with idempotency keys, and bill views, on SQLite and on PostgreSQL. Run by hand:

    .venv/bin/python bench/api.py [--seconds 10] [--clients 8] [--loans 200] [--workers 1]
                                  [--age 30] [--postgres URL] [--no-sqlite] [--mixed]

The server is ``fenqi serve --workers N`` in processes of its own; this process is the load:
``--clients`` threads, each with its own HTTP connection, for ``--seconds`` each phase: payments
only (a new idempotency key each time), then bill views only (``GET /api/loans/{id}``, the plan
on today: what a borrower opening her bills asks). Each figure is set beside a floor measured in
the same run against the same database:

- ``/healthz`` on the same server: what the HTTP stack and this load generator manage with no
  work behind them, the ceiling any endpoint could reach here (bill views are set beside it);
- the service layer: the same payments (``servicing.pay``, from each borrower's bank card)
  called in ``--workers`` processes of this machine with no HTTP at all, on loans of their own
  (HTTP payments are set beside it).

``--mixed`` sends payments and bill views half and half instead, from every client at once;
with ``--loans 4 --clients 16`` it measures contention: writers of one loan queue behind its row
lock; the answers are counted by status, 5xx apart.

Last, unless ``--mixed``, payments are sent at a steady rate, half the service layer's (an open
loop: each at its time, whether or not the ones before were answered), and their latency is
measured from the time each was due: the latency at that load. The closed loop's latency is the
queue its clients build (with 8 clients and a server taking 60 a second, about 130 ms by
Little's law whatever the server does), so the latency target is read at the paced load.

Targets (issue 10): HTTP payments at 50% of the service layer's rate or better (the closed
loop), and at that rate (the paced phase) p99 at most 50 ms; bill views at 50% of the
``/healthz`` ceiling or better.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from fenqi.channels.gateways import simulated
from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.money import Money
from fenqi.services import borrowers, credentials, products, servicing
from fenqi.services.context import Context
from fenqi.services.policy import Role, operator
from fenqi.store.database import make_engine, upgrade
from fenqi.wire import present
from schemas import fresh_schema  # the bench folder's own

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The paced phase: payments sent at this share of the service layer's rate, by enough clients
# that none is sent late for want of one.
PACED_SHARE, PACED_CLIENTS = 0.5, 32


def prepare(url: str, loans: int, service_loans: int, age: int) -> tuple[str, list[int], list[int]]:
    """An agent's API key, ``loans`` 12-period cash loans started ``age`` days ago on cards that
    pay, each installment fallen due paid on its due date, and ``service_loans`` more of them
    for the service layer's own payments."""
    engine = make_engine(url)
    upgrade(engine)
    context = Context(engine, SimulatedChannel, operator("bench"), gateways=simulated(engine))
    products.load_products(context)
    credentials.create_user(context, "bench", "bench password", Role.AGENT)
    key = credentials.create_api_key(context, "bench").api_key
    start = date.today() - timedelta(days=age)
    made = []
    for number in range(loans + service_loans):
        who = borrowers.create_borrower(
            context, f"压测{number}", f"1300000{number:04d}", Money(10**10)
        )
        borrowers.bind_method(context, who.id, "bank_card", f"62220200{number:011d}",
                              sim_balance=Money(10**12))  # fmt: skip
        order = servicing.Order(who.id, f"B-{number}", "m", Money.parse("10000"), "cash", 12, start)
        plan = present(servicing.checkout(context, order))
        for bill in plan["installments"]:
            due = date.fromisoformat(bill["due_date"])
            if due < date.today():
                servicing.pay(context, plan["id"], Money.parse(bill["payment"]),
                              servicing.Source(manual=True), due)  # fmt: skip
        made.append(plan["id"])
    engine.dispose()
    return str(key), made[:loans], made[loans:]


def pay_for(url: str, loans: list[int], seconds: float, worker: int, results: Any) -> None:
    """Pays round ``loans`` through the service layer for ``seconds``, as the HTTP route does
    (from the borrower's default method, on today, with an idempotency key); puts how many."""
    engine = make_engine(url)
    context = Context(engine, SimulatedChannel, operator("bench"), gateways=simulated(engine))
    source, today = servicing.Source(), date.today()
    servicing.pay(context, loans[0], Money(100), source, today)  # opens the connection
    paid, stop, began = 0, time.perf_counter() + seconds, time.process_time()
    while time.perf_counter() < stop:
        servicing.pay(context, loans[paid % len(loans)], Money(100), source, today,
                      idempotency_key=f"service-{worker}-{paid}")  # fmt: skip
        paid += 1
    used = time.process_time() - began
    engine.dispose()
    results.put((paid, used))


def service_rate(url: str, loans: list[int], seconds: float,
                 processes: int) -> tuple[float, float]:  # fmt: skip
    """Payments/s through the service layer from ``processes`` processes, each on loans of its
    own (what the HTTP payments are set beside), and the CPU seconds a payment cost its process
    (the gateway simulator's transaction included; the database's own work not)."""
    results: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=pay_for, args=(url, loans[k::processes], seconds, k, results)
        )
        for k in range(processes)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    paid = sum(count for count, _ in answers)
    return paid / seconds, sum(used for _, used in answers) / max(paid, 1)


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
          asking: str) -> tuple[dict[str, list[float]], Counter[int]]:  # fmt: skip
    """Each client's requests and how long each took, by kind, and the answers by status;
    ``asking`` is healthz, payment, bill or mixed (payments and bills half and half)."""
    timings: dict[str, list[float]] = {"payment": [], "bill": [], "healthz": [], "error": []}
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    connections = _connected(port, key, clients)
    stop = time.perf_counter() + seconds

    def client(number: int) -> None:
        with closing(connections[number]) as http:
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
        if asking == "healthz":
            answer = http.get("/healthz")
            return answer.status_code, "healthz" if answer.status_code == 200 else "error"
        if asking == "payment" or (asking == "mixed" and turn % 2):
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


def _connected(port: int, key: str, clients: int) -> list[httpx.Client]:
    """``clients`` HTTP clients, each connected, made before a phase's clock starts: making one
    costs this process about 25 ms of CPU (its TLS context), which 32 at once took from the
    server on the same two cores while the first requests were due."""
    connections = [httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key},
                                timeout=30.0) for _ in range(clients)]  # fmt: skip
    for http in connections:
        http.get("/healthz")
    return connections


def paced(port: int, key: str, loans: list[int], seconds: float,
          rate: float) -> tuple[list[float], Counter[int]]:  # fmt: skip
    """Payments sent at a steady ``rate`` a second for ``seconds`` (an open loop: each is sent
    at its time whether or not the ones before it were answered), and how long each took from
    its time to its answer, so that a request kept waiting for a free client counts its wait.
    The latency a borrower sees at that load, where the closed loop of ``drive`` measures the
    most the server can take (and its latency is the queue that load builds)."""
    count = int(seconds * rate)
    due: queue.Queue[tuple[int, float] | None] = queue.Queue()
    timings: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    connections = _connected(port, key, PACED_CLIENTS)

    def client(connection: httpx.Client) -> None:
        with closing(connection) as http:
            while (job := due.get()) is not None:
                turn, at = job
                time.sleep(max(0.0, at - time.perf_counter()))
                try:
                    answer = http.post(f"/api/loans/{loans[turn % len(loans)]}/payments",
                                       json={"amount": "1.00"},
                                       headers={"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
                    status = answer.status_code
                except httpx.TransportError:
                    status = 0
                with lock:
                    timings.append(time.perf_counter() - at)
                    statuses[status] += 1

    threads = [threading.Thread(target=client, args=(http,)) for http in connections]
    for thread in threads:
        thread.start()
    start = time.perf_counter() + 0.5
    for turn in range(count):
        due.put((turn, start + turn / rate))
    for _ in threads:
        due.put(None)
    for thread in threads:
        thread.join()
    return timings, statuses


def report_paced(label: str, timings: list[float], statuses: Counter[int], seconds: float,
                 service: float) -> None:  # fmt: skip
    values = sorted(timings)
    if not values:
        return
    rate = len(values) / seconds
    p50 = statistics.median(values) * 1000
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
    failed = sum(count for status, count in statuses.items() if status != 201)
    print(f"{label:<13} paced    {rate:8,.0f}/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
          f"{rate / service:6.1%} of the service layer, sent at a steady rate; not 201: "
          f"{failed}")  # fmt: skip


def report(label: str, timings: dict[str, list[float]], seconds: float,
           floors: dict[str, tuple[float, str]],
           statuses: Counter[int] | None = None) -> None:  # fmt: skip
    """Each kind's rate and latency, as a share of its floor in ``floors`` (rate, name)."""
    for kind in ("healthz", "payment", "bill"):
        values = sorted(timings[kind])
        if not values:
            continue
        rate = len(values) / seconds
        p50 = statistics.median(values) * 1000
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
        floor, name = floors[kind]
        print(f"{label:<13} {kind:<8} {rate:8,.0f}/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
              f"{rate / floor:6.1%} of {name}")  # fmt: skip
    if statuses is not None:
        total = sum(statuses.values())
        every = sorted(timings["payment"] + timings["bill"] + timings["error"])
        p99 = every[min(len(every) - 1, int(len(every) * 0.99))] * 1000 if every else 0.0
        failed = sum(count for status, count in statuses.items() if status >= 500)
        counts = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        print(f"{label:<13} all      {total / seconds:8,.0f}/s   p99 {p99:6.1f} ms   "
              f"{total} requests ({counts}), 5xx: {failed}")  # fmt: skip


def run(label: str, url: str, options: argparse.Namespace) -> None:
    key, loans, own = prepare(url, options.loans, 20 * options.workers, options.age)
    label = f"{label} ×{options.workers}"
    paid, cpu = service_rate(url, own, min(options.seconds, 5.0), options.workers)
    print(f"{label:<13} service  {paid:8,.0f}/s   payments through the service layer, no HTTP "
          f"({cpu * 1000:.1f} ms of CPU each in its process)")  # fmt: skip
    port = free_port()
    server = serve(url, port, options.workers, options.server_log)
    try:
        seconds = min(options.seconds, 5.0)
        floor, _ = drive(port, key, loans, seconds, options.clients, asking="healthz")
        ceiling = len(floor["healthz"]) / seconds
        floors = {"healthz": (ceiling, "the /healthz ceiling"),
                  "payment": (paid, "the service layer"),
                  "bill": (ceiling, "the /healthz ceiling")}  # fmt: skip
        report(label, floor, seconds, floors)
        for asking in ("mixed",) if options.mixed else ("payment", "bill"):
            timings, statuses = drive(port, key, loans, options.seconds, options.clients,
                                      asking=asking)  # fmt: skip
            report(label, timings, options.seconds, floors, statuses)
        if not options.mixed:
            steady, answered = paced(port, key, loans, options.seconds, PACED_SHARE * paid)
            report_paced(label, steady, answered, options.seconds, paid)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--loans", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--age", type=int, default=30, metavar="DAYS",
                        help="how long ago the loans began (each bill since paid)")  # fmt: skip
    parser.add_argument("--postgres", default=POSTGRES, help="server URL ('' to skip)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--server-log", metavar="FILE", help="append the servers' log to FILE")
    parser.add_argument("--mixed", action="store_true",
                        help="payments and bill views half and half, in one phase")  # fmt: skip
    options = parser.parse_args()
    phases = "payments and bill views half and half" if options.mixed else "payments, then bills"
    print(f"{options.clients} clients on {options.loans} loans begun {options.age} days ago, "
          f"for {options.seconds:.0f} s each "
          f"phase ({phases}); targets: HTTP payments ≥ 50% of the service layer at p99 ≤ 50 ms, "
          "bill views ≥ 50% of /healthz")  # fmt: skip
    if not options.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            run("SQLite", f"sqlite:///{Path(folder) / 'api.sqlite3'}", options)
    if options.postgres:
        with fresh_schema(options.postgres, "api") as url:
            run("PostgreSQL", url, options)


if __name__ == "__main__":
    main()
