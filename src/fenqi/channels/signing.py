"""Signatures between fenqi and a withholding gateway: HMAC-SHA256 with a shared secret, in the
shape of WeChat Pay's v3 API. Both sides sign every message:

- a request: ``METHOD\\npath\\ntimestamp\\nnonce\\nbody\\n``, the path with its query;
- a response: ``timestamp\\nnonce\\nbody\\n``, with the nonce of the request it answers, so an
  answer recorded once cannot be passed off as the answer to another request;
- a notification (the gateway calling fenqi back): ``timestamp\\nnonce\\nbody\\n``.

The signature, the timestamp (Unix seconds) and the nonce travel in headers. A message older or
newer than ``WINDOW_SECONDS`` is refused, so a captured notification cannot be replayed for ever;
within the window, sending one again is harmless, as every message is idempotent by its order id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

TIMESTAMP = "Fenqi-Timestamp"
NONCE = "Fenqi-Nonce"
SIGNATURE = "Fenqi-Signature"
WINDOW_SECONDS = 300
SECRET_BYTES_AT_LEAST = 32


class BadSignatureError(Exception):
    """A message whose signature is missing, wrong or out of its time window: not from whoever
    holds the secret, so nothing it says is acted on."""


@dataclass(frozen=True)
class Signer:
    """Signs and verifies with one shared secret."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < SECRET_BYTES_AT_LEAST:
            raise ValueError(f"a gateway secret needs at least {SECRET_BYTES_AT_LEAST} bytes")

    def request_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The headers that sign a request of ``method`` to ``path`` with ``body``."""
        stamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signed = _request_message(method, path, stamp, nonce, body)
        return {TIMESTAMP: stamp, NONCE: nonce, SIGNATURE: self._sign(signed)}

    def verify_request(self, method: str, path: str, headers: Mapping[str, str],
                       body: bytes) -> str:  # fmt: skip
        """The request's nonce (to sign the answer with), if ``headers`` sign it."""
        stamp, nonce = self._fresh(headers)
        self._check(_request_message(method, path, stamp, nonce, body), headers)
        return nonce

    def message_headers(self, body: bytes, nonce: str | None = None) -> dict[str, str]:
        """The headers that sign a response (``nonce``: the request's) or a notification."""
        stamp, nonce = str(int(time.time())), nonce or secrets.token_hex(16)
        return {TIMESTAMP: stamp, NONCE: nonce, SIGNATURE: self._sign(_message(stamp, nonce, body))}

    def verify_message(self, headers: Mapping[str, str], body: bytes,
                       nonce: str | None = None) -> None:  # fmt: skip
        """Refuses a response or notification that ``headers`` do not sign; a response must
        carry ``nonce``, the nonce of the request it answers."""
        stamp, given = self._fresh(headers)
        if nonce is not None and not hmac.compare_digest(given, nonce):
            raise BadSignatureError("the answer is to another request")
        self._check(_message(stamp, given, body), headers)

    def _sign(self, message: bytes) -> str:
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def _check(self, message: bytes, headers: Mapping[str, str]) -> None:
        given = headers.get(SIGNATURE, "")
        if not hmac.compare_digest(given.encode("ascii", "replace"),
                                   self._sign(message).encode("ascii")):  # fmt: skip
            raise BadSignatureError("the signature does not match")

    @staticmethod
    def _fresh(headers: Mapping[str, str]) -> tuple[str, str]:
        stamp, nonce = headers.get(TIMESTAMP, ""), headers.get(NONCE, "")
        if not (stamp.isascii() and stamp.isdigit() and nonce):
            raise BadSignatureError("no timestamp or nonce")
        if abs(time.time() - int(stamp)) > WINDOW_SECONDS:
            raise BadSignatureError("the timestamp is outside the window")
        return stamp, nonce


def _request_message(method: str, path: str, stamp: str, nonce: str, body: bytes) -> bytes:
    return f"{method}\n{path}\n{stamp}\n{nonce}\n".encode() + body + b"\n"


def _message(stamp: str, nonce: str, body: bytes) -> bytes:
    return f"{stamp}\n{nonce}\n".encode() + body + b"\n"
