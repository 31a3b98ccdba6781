"""The HTTP service: the JSON API, the borrower's page and the operator console, with health,
readiness, Prometheus metrics and a structured log line per request (with its request id)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

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
from sqlalchemy import text

from fenqi import settings, web
from fenqi.api import hardening, problems, routes
from fenqi.channels.simulator import SimulatedChannel
from fenqi.channels.sms_simulator import SimulatedSms
from fenqi.services import close_of_business as cob
from fenqi.services.context import Context
from fenqi.store.database import database_url, make_engine, schema_is_current

log = logging.getLogger("fenqi.http")
Handler = Callable[[Request], Awaitable[Response]]


COB_COUNTS = ("loans", "debits_tried", "debits_succeeded", "debits_failed", "sms_queued",
              "write_offs", "chunks", "chunks_done")  # fmt: skip
COB_AMOUNTS = ("debited", "failed_amount")  # yuan


class CobFigures(Collector):
    """The latest close-of-business run as the store has it, read at each scrape: the batch runs
    in another process, so the service cannot count its figures as they happen."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def collect(self) -> Iterator[Metric]:
        latest = cob.runs(self.context, limit=1)
        if not latest:
            return
        last = latest[0]
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
    """The service's Prometheus figures, in a registry of its own (one per app)."""

    def __init__(self, context: Context) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(CobFigures(context))
        self.requests = Counter("fenqi_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)  # fmt: skip
        self.latency = Histogram("fenqi_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry)  # fmt: skip
        self.payments = Counter("fenqi_payments_total", "Payments and prepayments taken",
                                ["status"], registry=self.registry)  # fmt: skip


def create_app(url: str | None = None, *, simulation: bool | None = None) -> FastAPI:
    """The app on the database at ``url`` (default: FENQI_DATABASE_URL or the SQLite file), in
    simulation mode if ``simulation`` (default: ``FENQI_SIMULATION``, else off): only then may
    staff set the payment simulator's balances."""
    engine = make_engine(database_url(url))
    app = FastAPI(
        title="fenqi",
        version="0.1.0",
        description="Consumer installment credit (分期): quotes, checkout, bills, payments, "
        "early repayment, refunds and the books. Money is a decimal string in yuan; dates are "
        "ISO 8601; errors are RFC 9457 problem details.",
    )
    app.state.context = Context(engine, SimulatedChannel, actor="http", sms=SimulatedSms)
    app.state.simulation = settings.simulation(False) if simulation is None else simulation
    app.state.metrics = metrics = Metrics(app.state.context)
    problems.install(app)
    app.include_router(routes.router)
    web.install(app)
    _operations(app, metrics)
    hardening.install(app)  # the security headers, the docs and metrics settings, the proxies
    return app


def _operations(app: FastAPI, metrics: Metrics) -> None:
    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        began = time.perf_counter()
        response = await call_next(request)
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
        log.info(json.dumps(line))
        return response

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(response: Response) -> dict[str, str]:
        """The database answers and its schema is current."""
        context: Context = app.state.context
        try:
            with context.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            ready = schema_is_current(context.engine)
        except Exception:  # any failure to reach the database means not ready
            ready = False
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not ready"}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus() -> Response:
        """Requests, latencies, payments and the latest close of business, for Prometheus."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
