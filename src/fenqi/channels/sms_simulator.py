"""The built-in SMS gateway: nothing leaves the machine.

The dispatcher hands it each message outside any transaction (``Context.sms``), and it
answers with a reference of its own, as a real gateway does. It writes nothing itself: what was
sent, to whom and when is the dispatcher's record in ``sms_sent``, kept the same whichever
gateway carries the message, so that the daily cap never depends on the gateway plugged in.
"""

from __future__ import annotations

from uuid import uuid4


class SimulatedSms:
    def send(self, phone: str, text: str) -> str:  # noqa: ARG002 - it delivers nowhere
        return f"sim-sms:{uuid4().hex}"
