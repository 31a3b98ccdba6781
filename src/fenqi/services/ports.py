"""The interfaces services own and adapters implement (docs/design.md#layers)."""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from fenqi.domain.money import Money


class Debit(NamedTuple):
    """A channel's answer to a debit: ``reference`` identifies it; ``declined`` says why not."""

    reference: str
    declined: str | None = None


class PaymentChannel(Protocol):
    """Moves money between a borrower's bound method and the lender."""

    def debit(self, token_ref: str, amount: Money, idempotency_key: str) -> Debit:
        """Takes ``amount``; the same key never takes it twice."""
        ...

    def pay_back(self, token_ref: str, amount: Money, idempotency_key: str) -> str:
        """Returns ``amount`` to the method (a refund or a reversed payment)."""
        ...


@runtime_checkable
class SimulatedBalances(Protocol):
    """A channel that keeps balances itself (the simulator), so tests can fund a method."""

    def set_balance(self, token_ref: str, balance: Money) -> None: ...

    def balance(self, token_ref: str) -> Money: ...


class SmsGateway(Protocol):
    """Delivers a text message to a mobile phone. It knows only the number and the text, as a
    real gateway does: what was sent to whom and when is the dispatcher's own record."""

    def send(self, phone: str, text: str) -> str:
        """Hands the message over for delivery; returns the gateway's reference for it."""
        ...
