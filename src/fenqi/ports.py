"""The interfaces services own and adapters implement (docs/design.md#layers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from fenqi.domain.events import Channel
from fenqi.domain.money import Money
from fenqi.domain.withholding import Outcome


class Debit(NamedTuple):
    """A channel's answer to a debit: ``reference`` identifies it; ``declined`` says why not."""

    reference: str
    declined: str | None = None


class PaymentChannel(Protocol):
    """The payment channel as a transaction sees it. It moves no money: money taken from a
    bound method, and money paid back to it, goes through a ``WithholdingGateway``, outside any
    transaction (``fenqi.services.withholding``, ``fenqi.services.payouts``); the simulator's
    keeps the balances of simulation mode (``SimulatedBalances``)."""


@runtime_checkable
class SimulatedBalances(Protocol):
    """A channel that keeps balances itself (the simulator), so tests can fund a method."""

    def set_balance(self, token_ref: str, balance: Money) -> None: ...

    def balance(self, token_ref: str) -> Money: ...


class SmsGateway(Protocol):
    """Delivers a text message to a mobile phone. It knows only the number and the text, as a
    real gateway does: what was sent to whom and when is the dispatcher's own record."""

    def send(self, phone: str, text: str) -> str:
        """Hands the message over for delivery; returns the gateway's reference for it. Raises
        ``SmsRefusedError`` when the gateway answers that it will not carry it (the message may
        be sent again later); any other failure (no answer in time, the connection lost) leaves
        it unknown whether the message went."""
        ...


class SmsRefusedError(Exception):
    """The SMS gateway answered that it did not take the message: nothing was sent."""


@dataclass(frozen=True)
class GatewayAnswer:
    """What a withholding gateway said about one order (a debit or a refund), or that it said
    nothing (``Outcome.NO_ANSWER``): ``reference`` is its own id for the order, ``reason`` why it
    failed."""

    order_id: str
    outcome: Outcome
    reference: str | None = None
    reason: str | None = None


class UnverifiedError(Exception):
    """A notification that does not prove it comes from the gateway (its signature is missing,
    wrong or stale): nothing it says is acted on."""


class WithholdingGateway(Protocol):
    """A withholding (代扣) gateway, as the real ones are shaped: every debit and refund is named
    by the merchant's order id, so asking again with the same id never moves money twice; the
    answer may come at once, later in a notification to ``notify_url``, or only when asked."""

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # fmt: skip
        """Asks the gateway to take ``amount`` from the method ``token_ref`` names."""
        ...

    def query(self, order_id: str) -> GatewayAnswer:
        """What became of an order (``Outcome.NOT_FOUND`` if the gateway never had it)."""
        ...

    def refund(self, refund_id: str, order_id: str, amount: Money) -> GatewayAnswer:
        """Returns ``amount`` of the debit ``order_id`` to where it came from."""
        ...

    def query_refund(self, refund_id: str) -> GatewayAnswer:
        """What became of a refund (``Outcome.NOT_FOUND`` if the gateway never had it)."""
        ...

    def read_notification(self, headers: Mapping[str, str], body: bytes) -> GatewayAnswer:
        """The answer a notification carries, once its signature is verified
        (``UnverifiedError`` otherwise)."""
        ...


@dataclass(frozen=True)
class Gateways:
    """The gateway each channel's debits go through (the composition root chooses them), and
    where the gateways send their notifications: ``notify_base``/<channel>."""

    by_channel: Mapping[Channel, WithholdingGateway]
    notify_base: str

    def for_channel(self, channel: Channel) -> WithholdingGateway:
        return self.by_channel[channel]

    def notify_url(self, channel: Channel) -> str:
        return f"{self.notify_base.rstrip('/')}/{channel.value}"
