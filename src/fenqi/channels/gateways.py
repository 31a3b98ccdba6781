"""The composition root of the withholding gateways: which gateway debits each channel, from the
settings (``FENQI_GATEWAY_URL`` and its per-channel overrides, ``FENQI_GATEWAY_SECRET``,
``FENQI_GATEWAY_NOTIFY_URL``). Channels that share an address share one client, and with it its
open connections."""

from __future__ import annotations

from fenqi import settings
from fenqi.channels.gateway_http import HttpGateway, SignedClient
from fenqi.channels.signing import Signer
from fenqi.domain.events import Channel
from fenqi.ports import Gateways


def from_settings(simulating: bool) -> Gateways | None:
    """The gateways the settings name, or None when none is set (bound methods are then debited
    by the built-in simulator in the database). ``simulating`` lets the simulator's
    development secret stand in for an unset ``FENQI_GATEWAY_SECRET``."""
    urls = {Channel(name): settings.gateway_url(name) for name in settings.GATEWAY_CHANNELS}
    chosen = {channel: url for channel, url in urls.items() if url is not None}
    if not chosen:
        return None
    signer = Signer(settings.gateway_secret(simulating))
    clients = {url: HttpGateway(SignedClient(url, signer)) for url in set(chosen.values())}
    return Gateways({channel: clients[url] for channel, url in chosen.items()},
                    settings.notify_url())  # fmt: skip
