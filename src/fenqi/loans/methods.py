"""A bound payment method as the services see it: the channel holds the account itself behind
``token_ref``; the borrower sees only the masked account."""

from __future__ import annotations

from dataclasses import dataclass

from fenqi.domain.events import Channel


@dataclass(frozen=True)
class PaymentMethod:
    id: int
    borrower_id: int
    kind: str  # bank_card | alipay | wechat
    masked_account: str
    token_ref: str
    is_default: bool
    status: str  # active | unbound

    @property
    def channel(self) -> Channel:
        return Channel(self.kind)
