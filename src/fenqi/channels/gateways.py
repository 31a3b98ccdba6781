"""The composition root of the withholding gateways: which gateway debits each channel (bank
card, Alipay, WeChat Pay). A channel whose address the settings name (``FENQI_GATEWAY_URL`` and
its per-channel overrides, ``FENQI_GATEWAY_SECRET``, ``FENQI_GATEWAY_NOTIFY_URL``) is debited
over HTTP, by a real gateway or ``fenqi gateway-sim``; any other by the in-process simulator
over the database's simulated balances (tests, the demo, simulation mode). Channels that share
an address share one client, and with it its open connections."""

from __future__ import annotations

from sqlalchemy import Engine

from fenqi import settings
from fenqi.channels.signing import Signer
from fenqi.channels.simulator import SimulatedGateway
from fenqi.domain.events import Channel
from fenqi.ports import Gateways, WithholdingGateway

DEBITED = (Channel.BANK_CARD, Channel.ALIPAY, Channel.WECHAT)  # every channel of a bound method


def from_settings(engine: Engine, simulating: bool) -> Gateways:
    """The gateways the settings name, the in-process simulator for the channels they leave
    unset. ``simulating`` lets the simulator's development secret stand in for an unset
    ``FENQI_GATEWAY_SECRET``."""
    urls = {channel: settings.gateway_url(channel.value) for channel in DEBITED}
    chosen = {channel: url for channel, url in urls.items() if url is not None}
    simulator = SimulatedGateway(engine)
    by_channel: dict[Channel, WithholdingGateway] = dict.fromkeys(DEBITED, simulator)
    if chosen:
        # The HTTP client loads only when a gateway is named: every command builds gateways.
        from fenqi.channels.gateway_http import HttpGateway, SignedClient  # noqa: PLC0415

        signer = Signer(settings.gateway_secret(simulating))
        clients = {url: HttpGateway(SignedClient(url, signer)) for url in set(chosen.values())}
        by_channel.update({channel: clients[url] for channel, url in chosen.items()})
    return Gateways(by_channel, settings.notify_url())


def simulated(engine: Engine) -> Gateways:
    """Every channel debited by the in-process simulator, whatever the settings say."""
    return Gateways(dict.fromkeys(DEBITED, SimulatedGateway(engine)), settings.NOTIFY_URL)
