"""``fenqi gateway-sim``: a withholding (代扣) gateway simulator, an HTTP server in a process of its
own, with its own state (a SQLite file), that fenqi's HTTP adapter talks to as to a real one.

It keeps a balance per method token, takes a debit when the balance covers it and declines it
otherwise, de-duplicates by order id (the same order id asked again gets the first answer, and
no money moves twice), answers queries by order id, refunds, and sends signed notifications to
the ``notify_url`` of each debit (retried until they are acknowledged, as gateways do).

Switches, for every token or one, set on its own admin endpoints (never on fenqi's API):
``decline`` refuses every debit and refund; ``timeout`` takes the money (or pays the refund)
and then answers only after ``timeout_seconds`` (past the client's patience); ``processing``
answers "processing" and leaves the outcome to the notification and the query;
``duplicate_notify`` sends each notification twice; ``late_notify_seconds`` holds it back;
``out_of_order`` sends a stale "processing" notification after the final one; ``no_notify``
sends none.

Every request, the admin ones included, must be signed with the shared secret, and every answer
and notification is (``fenqi.channels.signing``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from fenqi.channels.signing import BadSignatureError, Signer
from fenqi.domain.withholding import Outcome

log = logging.getLogger("fenqi.gateway_sim")
ALL = "*"  # the switches' scope that holds for every token
NOTIFY_TRIES = 3
NOTIFY_PAUSE_SECONDS = 0.5
BODY_AT_MOST = 64 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (token TEXT PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, token TEXT NOT NULL, amount INTEGER NOT NULL,
    outcome TEXT NOT NULL, reference TEXT NOT NULL, reason TEXT, refunded INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    refund_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, amount INTEGER NOT NULL,
    outcome TEXT NOT NULL, reference TEXT NOT NULL, reason TEXT
);
CREATE TABLE IF NOT EXISTS switches (scope TEXT PRIMARY KEY, settings TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Switches:
    """How the simulator misbehaves, for every token (scope ``*``) or one."""

    decline: bool = False
    timeout: bool = False
    timeout_seconds: float = 10.0
    processing: bool = False
    duplicate_notify: bool = False
    late_notify_seconds: float = 0.0
    out_of_order: bool = False
    no_notify: bool = False

    @classmethod
    def parse(cls, given: dict[str, Any]) -> Switches:
        known = {field.name: field.type for field in fields(cls)}
        unknown = set(given) - set(known)
        if unknown:
            raise ValueError(f"no such switch: {', '.join(sorted(unknown))}")
        for name, value in given.items():
            if known[name] == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number of seconds")
            elif not 0 <= value <= 3600:
                raise ValueError(f"{name} must be from 0 to 3600 seconds")
        return cls(**given)


class Ledger:
    """The simulator's state, in one SQLite connection used by one thread at a time."""

    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def switches(self, token: str) -> Switches:
        with self.transaction() as db:
            rows = dict(db.execute("SELECT scope, settings FROM switches WHERE scope IN (?, ?)",
                                   (ALL, token)).fetchall())  # fmt: skip
        chosen = rows.get(token) or rows.get(ALL)
        return Switches(**json.loads(chosen)) if chosen else Switches()

    def set_switches(self, scope: str, switches: Switches) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO switches VALUES (?, ?)",
                       (scope, json.dumps(asdict(switches))))  # fmt: skip

    def set_balance(self, token: str, balance: int) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?)", (token, balance))

    def account(self, token: str) -> dict[str, Any]:
        with self.transaction() as db:
            balance = db.execute("SELECT balance FROM accounts WHERE token = ?", (token,))
            found = balance.fetchone()
            taken = db.execute("SELECT count(*) FROM orders WHERE token = ? AND outcome = ?",
                               (token, Outcome.SUCCEEDED.value)).fetchone()  # fmt: skip
            paid = db.execute("SELECT count(*) FROM refunds JOIN orders USING (order_id) "
                              "WHERE orders.token = ? AND refunds.outcome = ?",
                              (token, Outcome.SUCCEEDED.value)).fetchone()  # fmt: skip
        return {"token": token, "balance": found[0] if found else 0, "debits": taken[0],
                "refunds": paid[0]}  # fmt: skip

    def debit(self, order_id: str, token: str, amount: int,
              decline: bool) -> tuple[dict[str, Any], bool]:  # fmt: skip
        """The order's answer, and whether it is new (a repeated order id moves nothing)."""
        with self.transaction() as db:
            known = _order(db, order_id)
            if known is not None:
                if (known["token"], known["amount"]) != (token, amount):
                    raise ReusedError(f"order {order_id} was for another debit")
                return known, False
            balance = db.execute("SELECT balance FROM accounts WHERE token = ?", (token,))
            held = (balance.fetchone() or (0,))[0]
            outcome, reason = Outcome.SUCCEEDED, None
            if decline:
                outcome, reason = Outcome.FAILED, "declined by the issuer"
            elif held < amount:
                outcome, reason = Outcome.FAILED, "insufficient funds"
            else:
                db.execute("UPDATE accounts SET balance = balance - ? WHERE token = ?",
                           (amount, token))  # fmt: skip
            db.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, 0)",
                       (order_id, token, amount, outcome.value, _reference(), reason))  # fmt: skip
            return _order(db, order_id) or {}, True

    def query(self, order_id: str) -> dict[str, Any]:
        with self.transaction() as db:
            known = _order(db, order_id)
        return known or {"order_id": order_id, "outcome": Outcome.NOT_FOUND.value}

    def refund_of(self, refund_id: str) -> dict[str, Any]:
        with self.transaction() as db:
            known = _refund(db, refund_id)
        if known is None:
            return {"order_id": refund_id, "outcome": Outcome.NOT_FOUND.value}
        return _refund_answer(known)

    def token_of(self, order_id: str) -> str:
        """The token a debit order took money from ("" for an order it never had)."""
        with self.transaction() as db:
            known = _order(db, order_id)
        return "" if known is None else str(known["token"])

    def refund(self, refund_id: str, order_id: str, amount: int,
               decline: bool = False) -> dict[str, Any]:  # fmt: skip
        with self.transaction() as db:
            known = _refund(db, refund_id)
            if known is not None:
                if (known[1], known[2]) != (order_id, amount):
                    raise ReusedError(f"refund {refund_id} was for another refund")
                return _refund_answer(known)
            order = _order(db, order_id)
            outcome, reason = Outcome.SUCCEEDED, None
            if decline:
                outcome, reason = Outcome.FAILED, "declined by the issuer"
            elif order is None or order["outcome"] != Outcome.SUCCEEDED.value:
                outcome, reason = Outcome.FAILED, "no debit taken by that order id"
            elif order["refunded"] + amount > order["amount"]:
                outcome, reason = Outcome.FAILED, "more than is left of the debit to refund"
            else:
                db.execute("UPDATE orders SET refunded = refunded + ? WHERE order_id = ?",
                           (amount, order_id))  # fmt: skip
                db.execute("UPDATE accounts SET balance = balance + ? WHERE token = ?",
                           (amount, order["token"]))  # fmt: skip
            row = (refund_id, order_id, amount, outcome.value, _reference(), reason)
            db.execute("INSERT INTO refunds VALUES (?, ?, ?, ?, ?, ?)", row)
            return _refund_answer(row)


class ReusedError(Exception):
    """An order id (or refund id) sent again for a different amount or method."""


def _order(db: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    found = db.execute("SELECT order_id, token, amount, outcome, reference, reason, refunded "
                       "FROM orders WHERE order_id = ?", (order_id,)).fetchone()  # fmt: skip
    if found is None:
        return None
    names = ("order_id", "token", "amount", "outcome", "reference", "reason", "refunded")
    return dict(zip(names, found, strict=True))


def _refund(db: sqlite3.Connection, refund_id: str) -> tuple[Any, ...] | None:
    found: tuple[Any, ...] | None = db.execute(
        "SELECT refund_id, order_id, amount, outcome, reference, reason FROM refunds "
        "WHERE refund_id = ?", (refund_id,)).fetchone()  # fmt: skip
    return found


def _refund_answer(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"order_id": row[0], "outcome": row[3], "reference": row[4], "reason": row[5]}


def _reference() -> str:
    return f"SIM{uuid.uuid4().hex[:20].upper()}"


def answer(order: dict[str, Any]) -> dict[str, Any]:
    """What the gateway tells the merchant about an order: never the method's token."""
    return {key: order.get(key) for key in ("order_id", "outcome", "reference", "reason")}


class Simulator:
    """The gateway's behaviour over its ``Ledger``, signing with ``signer``."""

    def __init__(self, ledger: Ledger, signer: Signer) -> None:
        self.ledger, self.signer = ledger, signer
        self.notifier = httpx.Client(timeout=5.0)

    def debit(self, body: dict[str, Any]) -> dict[str, Any]:
        order_id, token = _text(body, "order_id"), _text(body, "token")
        amount, notify_url = _amount(body), _text(body, "notify_url")
        switches = self.ledger.switches(token)
        order, new = self.ledger.debit(order_id, token, amount, switches.decline)
        if new and not switches.no_notify:
            threading.Thread(target=self.notify, args=(notify_url, answer(order), switches),
                             daemon=True).start()  # fmt: skip
        if switches.timeout:
            time.sleep(switches.timeout_seconds)
        if switches.processing:
            return {**answer(order), "outcome": Outcome.PROCESSING.value, "reason": None}
        return answer(order)

    def refund(self, body: dict[str, Any]) -> dict[str, Any]:
        refund_id, order_id = _text(body, "refund_id"), _text(body, "order_id")
        amount = _amount(body)
        switches = self.ledger.switches(self.ledger.token_of(order_id))
        said = self.ledger.refund(refund_id, order_id, amount, switches.decline)
        if switches.timeout:
            time.sleep(switches.timeout_seconds)
        return said

    def notify(self, url: str, said: dict[str, Any], switches: Switches) -> None:
        """Sends the order's outcome to ``url``: held back, twice, or followed by a stale
        "processing" as the switches say."""
        time.sleep(switches.late_notify_seconds)
        self._send(url, said)
        if switches.duplicate_notify:
            self._send(url, said)
        if switches.out_of_order:
            self._send(url, {**said, "outcome": Outcome.PROCESSING.value, "reason": None})

    def _send(self, url: str, said: dict[str, Any]) -> None:
        body = json.dumps(said).encode()
        for attempt in range(1, NOTIFY_TRIES + 1):
            headers = {"Content-Type": "application/json", **self.signer.message_headers(body)}
            try:
                if self.notifier.post(url, content=body, headers=headers).is_success:
                    return
            except httpx.HTTPError:
                pass  # the merchant is down or slow: try again, as a gateway does
            time.sleep(NOTIFY_PAUSE_SECONDS * attempt)
        log.warning(json.dumps({"event": "notify-undelivered", "order_id": said["order_id"]}))


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"{name} must be a string of 1 to 200 characters")
    return value


def _amount(body: dict[str, Any]) -> int:
    value = body.get("amount")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError("amount must be a positive whole number of fen")
    return value


class Handler(BaseHTTPRequestHandler):
    """One request to the simulator: verified, routed, answered signed."""

    protocol_version = "HTTP/1.1"  # keeps connections open, as the adapter's client expects
    # Headers and body go out in two writes; with Nagle's algorithm on, the body waits for the
    # client's delayed ACK of the headers (about 40 ms on Linux loopback) on every answer.
    disable_nagle_algorithm = True
    server: SimServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the simulator logs what it does, not every request."""

    def _serve(self, method: str) -> None:
        if self.path == "/healthz":
            self._reply(HTTPStatus.OK, {"status": "ok"}, None)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > BODY_AT_MOST:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "too large"}, None)
            self.close_connection = True
            return
        raw = self.rfile.read(length)
        simulator = self.server.simulator
        try:
            nonce = simulator.signer.verify_request(method, self.path, dict(self.headers), raw)
        except BadSignatureError as error:
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": str(error)}, None)
            return
        try:
            status, said = self._route(method, json.loads(raw) if raw else {})
        except (ValueError, AttributeError) as error:
            status, said = HTTPStatus.BAD_REQUEST, {"error": str(error)}
        except ReusedError as error:
            status, said = HTTPStatus.CONFLICT, {"error": str(error)}
        self._reply(status, said, nonce)

    def _route(self, method: str, body: Any) -> tuple[HTTPStatus, dict[str, Any]]:
        simulator, ledger = self.server.simulator, self.server.simulator.ledger
        route = (method, *self.path.strip("/").split("/"))
        match route:
            case ("POST", "v1", "debits"):
                return HTTPStatus.OK, simulator.debit(body)
            case ("GET", "v1", "debits", order_id):
                return HTTPStatus.OK, answer(ledger.query(order_id))
            case ("POST", "v1", "refunds"):
                return HTTPStatus.OK, simulator.refund(body)
            case ("GET", "v1", "refunds", refund_id):
                return HTTPStatus.OK, ledger.refund_of(refund_id)
        return self._admin(route, body)

    def _admin(self, route: tuple[str, ...], body: Any) -> tuple[HTTPStatus, dict[str, Any]]:
        ledger = self.server.simulator.ledger
        match route:
            case ("PUT", "admin", "accounts", token):
                balance = body.get("balance")
                if not isinstance(balance, int) or isinstance(balance, bool) or balance < 0:
                    raise ValueError("balance must be a whole number of fen, 0 or more")
                ledger.set_balance(token, balance)
                return HTTPStatus.OK, ledger.account(token)
            case ("GET", "admin", "accounts", token):
                return HTTPStatus.OK, ledger.account(token)
            case ("PUT", "admin", "switches", scope):
                ledger.set_switches(scope, Switches.parse(body))
                return HTTPStatus.OK, asdict(ledger.switches(scope))
        return HTTPStatus.NOT_FOUND, {"error": f"no {route[0]} {self.path}"}

    def _reply(self, status: HTTPStatus, said: dict[str, Any], nonce: str | None) -> None:
        body = json.dumps(said).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if nonce is not None:
            for name, value in self.server.simulator.signer.message_headers(body, nonce).items():
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class SimServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        super().__init__(address, Handler)
        self.simulator = simulator


def serve(host: str, port: int, state: Path, signer: Signer) -> SimServer:
    """The simulator's server on ``host``:``port`` with its state in ``state`` (not started:
    call ``serve_forever``)."""
    return SimServer((host, port), Simulator(Ledger(str(state)), signer))
