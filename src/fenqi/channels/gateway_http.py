"""The HTTP adapter of a withholding gateway (``WithholdingGateway``): signed requests, signed
answers verified, a timeout on every call, and a connection kept open between calls.

An answer that does not come in time, or cannot be verified, is ``Outcome.NO_ANSWER``: the
request may or may not have reached the gateway, so the lender neither books the money nor
tells the borrower it failed; the notification or the reconciler's query settles it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from fenqi.channels.signing import BadSignatureError, Signer
from fenqi.domain.money import Money
from fenqi.domain.withholding import Outcome
from fenqi.ports import GatewayAnswer, UnverifiedError

log = logging.getLogger("fenqi.gateway")
CONNECT_SECONDS = 1.0
ANSWER_SECONDS = 3.0  # a debit the gateway has not answered by then is left to be reconciled


class GatewayRefusedError(Exception):
    """The gateway refused a request as malformed or reused (a 4xx): a fault in fenqi, never a
    borrower's, and nothing moved."""


class SignedClient:
    """Requests to ``base_url`` signed with ``signer``, their answers verified."""

    def __init__(self, base_url: str, signer: Signer, *,
                 answer_seconds: float = ANSWER_SECONDS) -> None:  # fmt: skip
        self.signer = signer
        timeout = httpx.Timeout(answer_seconds, connect=CONNECT_SECONDS)
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The verified answer; ``httpx.HTTPError`` or ``BadSignatureError`` when there is none
        to trust, ``GatewayRefusedError`` when the gateway refused the request."""
        raw = b"" if body is None else json.dumps(body).encode()
        headers = self.signer.request_headers(method, path, raw)
        headers["Content-Type"] = "application/json"
        sent = self.http.build_request(method, path, content=raw, headers=headers)
        response = self.http.send(sent)
        if response.is_server_error:
            response.raise_for_status()
        self.signer.verify_message(response.headers, response.content, headers["Fenqi-Nonce"])
        said: dict[str, Any] = response.json()
        if response.is_client_error:
            raise GatewayRefusedError(f"{response.status_code}: {said.get('error')}")
        return said

    def close(self) -> None:
        self.http.close()


class HttpGateway:
    """A withholding gateway over HTTP (the simulator's API, shaped as the real ones are)."""

    def __init__(self, client: SignedClient) -> None:
        self.client = client

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # fmt: skip
        body = {"order_id": order_id, "token": token_ref, "amount": int(amount),
                "notify_url": notify_url}  # fmt: skip
        return self._ask(order_id, "POST", "/v1/debits", body)

    def query(self, order_id: str) -> GatewayAnswer:
        return self._ask(order_id, "GET", f"/v1/debits/{order_id}")

    def refund(self, refund_id: str, order_id: str, amount: Money) -> GatewayAnswer:
        body = {"refund_id": refund_id, "order_id": order_id, "amount": int(amount)}
        return self._ask(refund_id, "POST", "/v1/refunds", body)

    def query_refund(self, refund_id: str) -> GatewayAnswer:
        return self._ask(refund_id, "GET", f"/v1/refunds/{refund_id}")

    def read_notification(self, headers: Mapping[str, str], body: bytes) -> GatewayAnswer:
        try:
            self.client.signer.verify_message(headers, body)
            said = json.loads(body)
            return _answer(said["order_id"], said)
        except (BadSignatureError, ValueError, KeyError, TypeError) as error:
            raise UnverifiedError(str(error)) from None

    def _ask(self, order_id: str, method: str, path: str,
             body: dict[str, Any] | None = None) -> GatewayAnswer:  # fmt: skip
        try:
            return _answer(order_id, self.client.call(method, path, body))
        except (httpx.HTTPError, BadSignatureError, ValueError) as error:
            # Which one only: the message may quote the body, and with it a method's token.
            log.warning(json.dumps({"event": "gateway-no-answer", "order_id": order_id,
                                    "error": type(error).__name__}))  # fmt: skip
            return GatewayAnswer(order_id, Outcome.NO_ANSWER)


def _answer(order_id: str, said: Mapping[str, Any]) -> GatewayAnswer:
    """The gateway's words as an answer; an order id or outcome not its own is refused."""
    if said.get("order_id") != order_id or not isinstance(said.get("outcome"), str):
        raise ValueError("the answer is about another order")
    outcome = Outcome(said["outcome"])
    if outcome is Outcome.NO_ANSWER:
        raise ValueError("a gateway never says it gave no answer")
    reference, reason = said.get("reference"), said.get("reason")
    return GatewayAnswer(order_id, outcome, reference if isinstance(reference, str) else None,
                         reason if isinstance(reason, str) else None)  # fmt: skip


class SimulatorControls:
    """The simulator's own admin endpoints, for tests and demos: balances and switches. They
    exist on the simulator only, never on fenqi's API."""

    def __init__(self, client: SignedClient) -> None:
        self.client = client

    def set_balance(self, token_ref: str, balance: Money) -> None:
        self.client.call("PUT", f"/admin/accounts/{token_ref}", {"balance": int(balance)})

    def account(self, token_ref: str) -> dict[str, Any]:
        """``balance`` (fen), ``debits`` (how many debits it took) and ``refunds`` (how many
        refunds it paid back) of the method."""
        return self.client.call("GET", f"/admin/accounts/{token_ref}")

    def switch(self, scope: str = "*", **switches: bool | float) -> None:
        """Sets the switches for every token (``*``) or one; those not named are off."""
        self.client.call("PUT", f"/admin/switches/{scope}", dict(switches))
