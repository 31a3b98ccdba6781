"""Where withholding gateways call back: ``POST /api/gateway/notify/{channel}``. A notification
proves who sent it by its signature, not by a credential of fenqi's, so this route asks for
none; a signature that does not verify is a 401 and changes nothing. The same notification
again, a late one or a stale one is acknowledged and changes nothing either, so the gateway
stops sending it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from fenqi.api import responses
from fenqi.api.responses import answers
from fenqi.http import problems
from fenqi.http.security import base_context
from fenqi.services import withholding
from fenqi.services.context import Document
from fenqi.wire import document

router = APIRouter(prefix="/api/gateway", tags=["gateway"], responses=problems.RESPONSES)


@router.post("/notify/{channel}", **answers(responses.NotificationRecorded))
async def notify(request: Request, channel: str) -> Document:
    """A gateway's notification of a debit's or refund's outcome, signed with the secret it
    shares with fenqi (``Fenqi-Timestamp``, ``Fenqi-Nonce``, ``Fenqi-Signature``)."""
    body = await request.body()  # verified as sent, byte for byte: never re-encoded
    recorded = await run_in_threadpool(withholding.notified, base_context(request), channel,
                                       request.headers, body)  # fmt: skip
    return document(recorded)
