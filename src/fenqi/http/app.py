"""The HTTP service: the JSON API, the borrower's page and the operator console, with health,
readiness, Prometheus metrics and a structured log line per request (with its request id).

No error escapes a request: whatever no handler answered is answered here (a problem document,
or an error page on the pages), counted, and logged once, by its class and where it was raised,
never its text; the connection stays open for the client's next request."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

from fenqi import settings, web
from fenqi.api import gateway, routes
from fenqi.channels import gateways
from fenqi.channels.simulator import SimulatedChannel
from fenqi.channels.sms_simulator import SimulatedSms
from fenqi.http import hardening, problems
from fenqi.services import close_of_business as cob
from fenqi.services import credentials
from fenqi.services.bills import KeptBills
from fenqi.services.context import Context
from fenqi.services.policy import Principal, Role
from fenqi.settings import SettingError
from fenqi.store.database import Limits, database_url, make_engine, schema_is_current
from fenqi.store.quick import PostgresQuickReads, SqliteQuickReads
from fenqi.wire import documents

log = logging.getLogger("fenqi.http")
Handler = Callable[[Request], Awaitable[Response]]
READY_SECONDS = 0.8  # /readyz answers within a second, whatever the database does
COB_READ_SECONDS = 0.8  # and /metrics too: the latest run is left out if not read by then
# The service itself, reading the latest close of business for its metrics.
OBSERVER = Principal("metrics", Role.VIEWER)
T = TypeVar("T")
FENQI = str(Path(__file__).parents[1])  # where fenqi's own frames are, in a traceback


COB_COUNTS = ("loans", "debits_tried", "debits_succeeded", "debits_failed", "sms_queued",
              "write_offs", "chunks", "chunks_done", "chunks_failed")  # fmt: skip
COB_AMOUNTS = ("debited", "failed_amount")  # yuan


class CobFigures(Collector):
    """The latest close-of-business run as the store had it when a scrape asked (``run``, None
    when there is none or the store did not answer in time): the batch runs in another process,
    so the service cannot count its figures as they happen."""

    def __init__(self, run: dict[str, Any] | None) -> None:
        self.run = run

    def collect(self) -> Iterator[Metric]:
        if self.run is None:
            return
        last = self.run
        day = date.fromisoformat(last["business_date"])
        labels = {"business_date": day.isoformat(), "status": last["status"]}
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        yield _gauge("fenqi_cob_business_date_seconds",
                     "The business date of the latest run (midnight UTC, Unix time)",
                     labels, midnight)  # fmt: skip
        if last["finished_at"] is not None:
            took = datetime.fromisoformat(last["finished_at"]) - datetime.fromisoformat(
                last["started_at"]
            )
            yield _gauge("fenqi_cob_duration_seconds", "How long the latest run took", labels,
                         took.total_seconds())  # fmt: skip
        for name in COB_COUNTS:
            yield _gauge(f"fenqi_cob_{name}", f"The latest run's {name.replace('_', ' ')}",
                         labels, float(last.get(name, 0)))  # fmt: skip
        for name in COB_AMOUNTS:
            yield _gauge(f"fenqi_cob_{name}_yuan", f"The latest run's {name.replace('_', ' ')}",
                         labels, float(Decimal(last.get(name, "0"))))  # fmt: skip


def _gauge(name: str, documentation: str, labels: dict[str, str], value: float) -> Metric:
    gauge = GaugeMetricFamily(name, documentation, labels=list(labels))
    gauge.add_metric(list(labels.values()), value)
    return gauge


class Metrics:
    """The service's Prometheus figures, in a registry of its own (one per app), and the latest
    close-of-business run, read at each scrape without waiting behind the requests' threads."""

    def __init__(self, context: Context) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("fenqi_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)  # fmt: skip
        self.latency = Histogram("fenqi_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry)  # fmt: skip
        self.payments = Counter("fenqi_payments_total", "Payments and prepayments taken",
                                ["status"], registry=self.registry)  # fmt: skip
        self.errors = Counter("fenqi_http_errors_total",
                              "Requests that ended in an error no handler answered, by its class",
                              ["status", "error"], registry=self.registry)  # fmt: skip
        self.latest_run = OneAtATime(lambda: documents(cob.runs(context, limit=1)),
                                     "fenqi-metrics")  # fmt: skip

    async def exposition(self) -> bytes:
        """The text Prometheus scrapes: the service's own figures, which are in memory, and the
        latest run if the store gives it within ``COB_READ_SECONDS`` (a store that is down or
        frozen leaves it out; the service's own figures count all the more then)."""
        runs = await self.latest_run.answer(COB_READ_SECONDS)
        batch = CollectorRegistry()
        batch.register(CobFigures(runs[0] if runs else None))
        return generate_latest(self.registry) + generate_latest(batch)


class OneAtATime(Generic[T]):
    """A question to the store asked in a thread of its own, one at a time: a caller waits at
    most the seconds it gives, even while the database hangs, and callers arriving meanwhile
    share the question in flight instead of piling up threads behind it. Neither the event
    loop nor the requests' thread pool ever waits on it."""

    def __init__(self, ask: Callable[[], T], name: str) -> None:
        self.ask, self.name = ask, name
        self.lock = threading.Lock()
        self.pending: Future[T] | None = None

    async def answer(self, seconds: float) -> T | None:
        """The answer, or None when it failed or did not come within ``seconds``."""
        with self.lock:
            if self.pending is None or self.pending.done():
                self.pending = Future()
                asking = threading.Thread(target=self._ask, args=(self.pending,), daemon=True,
                                          name=self.name)  # fmt: skip
                asking.start()
            pending = asyncio.wrap_future(self.pending)
        try:
            return await asyncio.wait_for(asyncio.shield(pending), seconds)
        except Exception:  # no answer in time, or a store that failed: no answer
            return None

    def _ask(self, answer: Future[T]) -> None:
        try:
            answer.set_result(self.ask())
        except Exception as error:  # any failure is the answer, so no caller waits for ever
            answer.set_exception(error)


def _is_ready(engine: Engine) -> bool:
    """/readyz's question: does the database answer, with the current schema?"""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return schema_is_current(engine)


def _quick_reads(engine: Engine, limits: Limits) -> PostgresQuickReads | SqliteQuickReads | None:
    """Where bill views check their caller and the plan's stamp from the event loop."""
    if engine.dialect.name == "postgresql":
        return PostgresQuickReads(engine, limits)
    if engine.dialect.name == "sqlite":
        return SqliteQuickReads(engine)
    return None


def create_app(url: str | None = None, *, simulation: bool | None = None) -> FastAPI:
    """The app on the database at ``url`` (default: FENQI_DATABASE_URL or the SQLite file), in
    simulation mode if ``simulation`` (default: ``FENQI_SIMULATION``, else off): only then may
    staff set the payment simulator's balances. A setting that cannot be used (``FENQI_TODAY``,
    …) is refused here, before anything starts: a ``SettingError`` naming it."""
    settings.check()
    limits = Limits.for_service()
    engine = make_engine(database_url(url), limits)
    quick = _quick_reads(engine, limits)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if quick is not None:
            await quick.open()
        # What is loaded by now (the web stack, the ORM, the catalog, the templates) lives as
        # long as the process: kept out of the collector's full passes, which otherwise walked
        # it all and stopped every request for 60-80 ms every few seconds (p99 three times p50).
        gc.freeze()
        yield
        gc.unfreeze()  # an app made and stopped in a longer-lived process (a test) leaks nothing
        if quick is not None:
            await quick.close()
        credentials.texts_handed_over()  # a code asked for just before shutdown still goes
        engine.dispose()  # the app's connections close with it, not whenever it is collected

    app = FastAPI(
        lifespan=lifespan,
        title="fenqi",
        version="0.1.0",
        description="Consumer installment credit (分期): quotes, checkout, bills, payments, "
        "early repayment, refunds and the books. Money is a decimal string in yuan; dates are "
        "ISO 8601; errors are RFC 9457 problem details.",
    )
    app.state.simulation = settings.simulation(False) if simulation is None else simulation
    # Nobody yet: each request's context carries its caller's credential (http/security.py).
    chosen = gateways.from_settings(engine, app.state.simulation)
    app.state.context = Context(engine, SimulatedChannel, sms=SimulatedSms(), gateways=chosen,
                                bills=KeptBills(), quick=quick)  # fmt: skip
    app.state.metrics = metrics = Metrics(replace(app.state.context, principal=OBSERVER))
    problems.install(app)
    app.include_router(routes.router)
    app.include_router(gateway.router)
    web.install(app)
    _operations(app, metrics, OneAtATime(lambda: _is_ready(engine), "fenqi-readyz"))
    hardening.install(app)  # the security headers, the docs and metrics settings, the proxies
    return app


def _operations(app: FastAPI, metrics: Metrics, readiness: OneAtATime[bool]) -> None:
    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        began = time.perf_counter()
        failure: Exception | None = None
        try:
            response = await call_next(request)
        except Exception as error:  # answered here, so that no error drops the connection
            failure = error
            response = _answer(request, error, request_id)
        elapsed = time.perf_counter() - began
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.latency.labels(request.method, route).observe(elapsed)
        if route.endswith(("/payments", "/prepayments")) and request.method == "POST":
            metrics.payments.labels(str(response.status_code)).inc()
        response.headers["X-Request-ID"] = request_id
        # Paths and figures only: never a header, a body, a query or a credential.
        line = {"request_id": request_id, "method": request.method, "route": route,
                "status": response.status_code, "ms": round(elapsed * 1000, 2)}  # fmt: skip
        if failure is None:
            log.info(json.dumps(line))
            return response
        metrics.errors.labels(str(response.status_code), type(failure).__name__).inc()
        # The error's class and where it was raised; its text may quote a borrower's data.
        line |= {"error": type(failure).__name__, "where": _where(failure)}
        if isinstance(failure, SettingError):  # names a setting and its value, no one's data
            line["setting"] = str(failure)
        log.log(logging.ERROR if response.status_code == 500 else logging.WARNING, json.dumps(line))
        return response

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process answers: from the event loop, so no request waiting on the database
        (each holding one of the thread pool's threads) can hold it up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"],
             responses={503: {"description": "The database does not answer, or its schema is "
                              "behind"}})  # fmt: skip
    async def readyz(response: Response) -> dict[str, str]:
        """The database answers and its schema is current (answered within a second)."""
        ready = await readiness.answer(READY_SECONDS) or False
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not ready"}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus() -> Response:
        """Requests, latencies, errors, payments and the latest close of business, for
        Prometheus (answered within a second, whatever the database does)."""
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _answer(request: Request, error: Exception, request_id: str) -> Response:
    """An error page for a page, a problem document for anything else."""
    if web.is_page(request.url.path):
        status = problems.classify(error)[0]
        return web.error_page(request, status, request_id)
    return problems.unexpected(error, request_id)


def _where(error: Exception, ours: int = 3) -> str:
    """Where ``error`` was raised, innermost first, as file:line function: the frame that raised
    it and the innermost ``ours`` of fenqi's own, without any of the values involved."""
    stack = traceback.extract_tb(error.__traceback__)
    fenqi = [frame for frame in stack if f"{FENQI}{os.sep}" in frame.filename][-ours:]
    frames = [*fenqi, stack[-1]] if stack and stack[-1] not in fenqi else fenqi
    return " < ".join(
        f"{Path(frame.filename).name}:{frame.lineno} {frame.name}" for frame in reversed(frames)
    )
