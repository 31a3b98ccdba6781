"""Reading a JSON body strictly, for every route of the API: a key given twice, a NUL character
in any string and nesting too deep to be a request are refused (422 ``invalid-request``) before
a route sees the body. Python's ``json`` keeps the last of two equal keys, so ``{"amount": "1",
"amount": "50000"}`` would mean whatever the last one says, while a proxy or a log that reads
the first sees another request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

DEPTH_AT_MOST = 32  # no fenqi body nests deeper than 3


class StrictJsonRequest(Request):
    """A request whose ``json()`` refuses what ``json.loads`` lets through. FastAPI reads every
    JSON body through ``json()`` and answers its ``JSONDecodeError`` as an invalid request."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json((await self.body()).decode())
        return self._json


class StrictJsonRoute(APIRoute):
    """An API route that reads its body as a ``StrictJsonRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            return await handle(StrictJsonRequest(request.scope, request.receive))

        return handler


def strict_json(text: str) -> Any:
    """``text`` parsed as JSON, or a ``JSONDecodeError`` saying why it is refused."""
    try:
        value = json.loads(text, object_pairs_hook=lambda pairs: _object(pairs, text))
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to be a request", text, 0) from None
    _check(value, text)
    return value


def _object(pairs: list[tuple[str, Any]], text: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise json.JSONDecodeError(f'the key "{key}" is given twice', text, 0)
        found[key] = value
    return found


def _check(value: Any, text: str) -> None:
    """Every string and key free of NUL, and no nesting deeper than ``DEPTH_AT_MOST``; walked
    without recursion."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > DEPTH_AT_MOST:
            raise json.JSONDecodeError("nested too deeply to be a request", text, 0)
        if isinstance(item, str):
            if "\x00" in item:
                raise json.JSONDecodeError("a string holds a NUL character", text, 0)
        elif isinstance(item, dict):
            pending.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list):
            pending.extend((part, depth + 1) for part in item)
