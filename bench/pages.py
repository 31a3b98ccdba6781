"""How long a borrower with 20 plans waits for her page, over HTTP, on SQLite. Run by hand:

    .venv/bin/python bench/pages.py [--plans 20] [--requests 300] [--postgres URL]

A borrower with ``--plans`` plans, opened over the past year and each paid on time so far (so
every plan has its history of payments), is signed in on ``fenqi serve`` (a process of its own,
with the database in a temporary directory); one client then asks for her pages in turn, one
request at a time: ``/me`` (her limit, what she has to repay, every plan), ``/me/calendar``
(every installment still owed), and one plan's page. Each is printed with p50 and p99 beside
``/healthz`` on the same server in the same run: the HTTP stack and this client with no work,
the floor under any page.

Target (issue 11): the page with 20 plans in at most 100 ms at p99 on SQLite.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import free_port, serve  # the bench folder's own: a script's folder is on its path
from fenqi.channels.gateways import simulated
from fenqi.channels.simulator import SimulatedChannel
from fenqi.domain.money import Money
from fenqi.services import borrowers, products, servicing
from fenqi.services.context import Context
from fenqi.services.policy import operator
from fenqi.store.database import make_engine, upgrade
from fenqi.store.schema import SmsSentRow
from fenqi.wire import present
from schemas import fresh_schema  # the bench folder's own

PHONE = "13900000020"
TARGET_MS = 100.0


def prepare(url: str, plans: int) -> int:
    """A borrower with ``plans`` plans begun over the past year, every bill fallen due paid on
    its due date; returns the first plan's id."""
    engine = make_engine(url)
    upgrade(engine)
    context = Context(engine, SimulatedChannel, operator("bench"), gateways=simulated(engine))
    products.load_products(context)
    who = borrowers.create_borrower(context, "页面压测", PHONE, Money(10**10))
    borrowers.bind_method(context, who.id, "bank_card", "6222020000000000020",
                          sim_balance=Money(10**12))  # fmt: skip
    first, today = 0, date.today()
    for number in range(plans):
        start = today - timedelta(days=number * 365 // plans)
        order = servicing.Order(who.id, f"P-{number}", "华为商城", Money.parse("6000"), "cash",
                                12, start)  # fmt: skip
        plan = present(servicing.checkout(context, order))
        first = first or plan["id"]
        for bill in plan["installments"]:
            due = date.fromisoformat(bill["due_date"])
            if due < today:
                servicing.pay(context, plan["id"], Money.parse(bill["payment"]),
                              servicing.Source(manual=True), due)  # fmt: skip
    engine.dispose()
    return first


def signed_in(base: str, url: str) -> httpx.Client:
    """A client holding her page's session, signed in with the code texted to her."""
    client = httpx.Client(base_url=base, timeout=30.0)
    client.post("/me/login/code", data={"phone": PHONE}).raise_for_status()
    engine = make_engine(url)
    with Session(engine) as session:
        texts = session.scalars(select(SmsSentRow.text).where(SmsSentRow.phone == PHONE))
        code = "".join(char for char in list(texts)[-1] if char.isdigit())[:6]
    engine.dispose()
    answer = client.post("/me/login", data={"phone": PHONE, "code": code})
    if (answer.status_code, answer.headers.get("location")) != (303, "/me"):
        raise RuntimeError(f"sign-in failed: {answer.status_code}")
    return client


def timed(client: httpx.Client, path: str, requests: int) -> list[float]:
    """``requests`` answers to ``path`` in turn (after a few to warm up), each in ms."""
    for _ in range(5):
        client.get(path).raise_for_status()
    took = []
    for _ in range(requests):
        began = time.perf_counter()
        client.get(path).raise_for_status()
        took.append((time.perf_counter() - began) * 1000)
    return took


def report(label: str, took: list[float], floor: float | None) -> None:
    ordered = sorted(took)
    p50, p99 = statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    beside = "" if floor is None else f"   {p50 / floor:5.1f}× the /healthz p50"
    print(f"  {label:<26} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms{beside}")


def run(label: str, url: str, options: argparse.Namespace) -> None:
    plan = prepare(url, options.plans)
    port = free_port()
    server = serve(url, port, 1)
    try:
        with closing(signed_in(f"http://127.0.0.1:{port}", url)) as client:
            floor = timed(client, "/healthz", options.requests)
            print(f"{label}, {options.plans} plans, {options.requests} requests each, in turn:")
            report("/healthz (the floor)", floor, None)
            base = statistics.median(floor)
            for path in ("/me", "/me/calendar", f"/me/loans/{plan}"):
                report(path, timed(client, path, options.requests), base)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", default="", help="also on this server URL (a new schema)")
    options = parser.parse_args()
    print(f"target: the page with {options.plans} plans at p99 ≤ {TARGET_MS:.0f} ms on SQLite")
    with tempfile.TemporaryDirectory() as folder:
        run("SQLite", f"sqlite:///{Path(folder) / 'pages.sqlite3'}", options)
    if options.postgres:
        with fresh_schema(options.postgres, "pages") as url:
            run("PostgreSQL", url, options)


if __name__ == "__main__":
    main()
