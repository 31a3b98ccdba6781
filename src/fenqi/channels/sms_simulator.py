"""The built-in SMS gateway: nothing leaves the machine.

It is built per transaction, as every adapter is (``Context.sms``), and answers each message with
a reference of its own, as a real gateway does. It writes nothing itself: what was sent, to whom
and when is the dispatcher's record in ``sms_sent``, kept the same whichever gateway carries the
message, so that the daily cap never depends on the gateway plugged in.
"""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy.orm import Session


class SimulatedSms:
    def __init__(self, _session: Session) -> None:
        """Takes the transaction's session, as a gateway factory is given one; it keeps nothing
        there."""

    def send(self, phone: str, text: str) -> str:  # noqa: ARG002 - it delivers nowhere
        return f"sim-sms:{uuid4().hex}"
