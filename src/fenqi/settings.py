"""What an operator sets in the environment beside the database and today: whether the payment
simulator's controls are on, and how far back staff may book money and corrections.

- ``FENQI_SIMULATION=1`` (or ``0``): simulation mode. The payment channel fenqi ships is a
  simulator that keeps a balance per bound method; in simulation mode staff may set those
  balances (``--sim-balance``, ``fenqi method fund``, ``PUT /api/methods/{id}/sim-balance``).
  Unset, the command line is in simulation mode (it is the operator's own tool, and the demo and
  the README's story run on the simulator) and ``fenqi serve`` is not (``fenqi serve
  --simulate`` turns it on).
- ``FENQI_BACKDATE_DAYS=N`` (default 31): staff book a payment, checkout, reversal, refund or
  waiver on a day at most N days before today, never after it.

- ``FENQI_GATEWAY_URL``: the withholding gateway that debits bound methods (``fenqi
  gateway-sim``'s address, or a real gateway's); ``FENQI_GATEWAY_URL_BANK_CARD``,
  ``..._ALIPAY`` and ``..._WECHAT`` choose another one for that channel. Unset, bound methods
  are debited by the built-in simulator in the database.
- ``FENQI_GATEWAY_SECRET``: the secret shared with the gateway, at least 32 bytes, that signs
  every request, answer and notification. Needed with a gateway URL; in simulation mode a
  development secret stands in when it is unset (``fenqi gateway-sim`` uses the same one).
- ``FENQI_GATEWAY_NOTIFY_URL``: where the gateway sends its notifications, the service's
  ``/api/gateway/notify`` as the gateway reaches it (default ``http://127.0.0.1:8000/api/
  gateway/notify``).

``check()`` reads every one of them, and ``FENQI_TODAY`` (``fenqi.clock``), at once: each
command and the service run it before anything else.
"""

from __future__ import annotations

import os

SIMULATION_VARIABLE = "FENQI_SIMULATION"
BACKDATE_VARIABLE = "FENQI_BACKDATE_DAYS"
BACKDATE_DAYS = 31
BACKDATE_DAYS_AT_MOST = 3660  # ten years: further back is not a booking day but a mistake
_SWITCH = {"1": True, "0": False}
GATEWAY_URL_VARIABLE = "FENQI_GATEWAY_URL"
GATEWAY_SECRET_VARIABLE = "FENQI_GATEWAY_SECRET"
NOTIFY_URL_VARIABLE = "FENQI_GATEWAY_NOTIFY_URL"
NOTIFY_URL = "http://127.0.0.1:8000/api/gateway/notify"
# Public by design: it signs only what runs against the simulator, in simulation mode.
DEV_GATEWAY_SECRET = "fenqi-gateway-simulator-development-secret"
GATEWAY_SECRET_BYTES = 32
GATEWAY_CHANNELS = ("bank_card", "alipay", "wechat")  # the channels a gateway debits


class SettingError(Exception):
    """A setting in the environment that is not one of its accepted values: the operator's to
    fix, never the fault of whoever sent a request. Not an ``InputError``: the command line
    refuses it in one line before a command runs (exit 2), the service refuses to start with it,
    and should one be changed under a running service, a request meets a 500 that says a
    setting is wrong, never a 422 that blames the client."""


def simulation(default: bool) -> bool:
    """Whether the payment simulator's controls are on: ``FENQI_SIMULATION``, else ``default``
    (the entry point's own: on for the command line, off for the server)."""
    given = os.environ.get(SIMULATION_VARIABLE, "").strip()
    if not given:
        return default
    if given not in _SWITCH:
        raise SettingError(f'{SIMULATION_VARIABLE}="{given}" is not 1 or 0; set 1 (simulation '
                           "mode: staff may set simulated balances) or 0, or unset it")  # fmt: skip
    return _SWITCH[given]


def backdate_days() -> int:
    """How many days before today staff may book on: ``FENQI_BACKDATE_DAYS``, else 31."""
    given = os.environ.get(BACKDATE_VARIABLE, "").strip()
    if not given:
        return BACKDATE_DAYS
    if not (given.isascii() and given.isdigit() and int(given) <= BACKDATE_DAYS_AT_MOST):
        raise SettingError(f'{BACKDATE_VARIABLE}="{given}" is not a number of days from 0 to '
                           f"{BACKDATE_DAYS_AT_MOST}; unset it for {BACKDATE_DAYS}")  # fmt: skip
    return int(given)


def gateway_url(channel: str) -> str | None:
    """The address of the gateway that debits ``channel`` (bank_card, alipay, wechat): its own
    ``FENQI_GATEWAY_URL_<CHANNEL>``, else ``FENQI_GATEWAY_URL``, else None (the built-in
    simulator in the database)."""
    for name in (f"{GATEWAY_URL_VARIABLE}_{channel.upper()}", GATEWAY_URL_VARIABLE):
        given = os.environ.get(name, "").strip()
        if given:
            if not given.startswith(("http://", "https://")):
                raise SettingError(f'{name}="{given}" is not an http:// or https:// address')
            return given
    return None


def gateway_secret(simulating: bool) -> bytes:
    """The secret shared with the gateway: ``FENQI_GATEWAY_SECRET``, else in simulation mode
    the development secret the simulator also uses; outside it, an unset one is refused."""
    given = os.environ.get(GATEWAY_SECRET_VARIABLE, "")
    if not given:
        if simulating:
            return DEV_GATEWAY_SECRET.encode()
        raise SettingError(f"{GATEWAY_SECRET_VARIABLE} is not set: a gateway needs the "
                           "secret it shares with fenqi (simulation mode has its own)")  # fmt: skip
    if len(given.encode()) < GATEWAY_SECRET_BYTES:
        raise SettingError(f"{GATEWAY_SECRET_VARIABLE} is shorter than {GATEWAY_SECRET_BYTES} "
                           "bytes; use a long random one (e.g. openssl rand -hex 32)")  # fmt: skip
    return given.encode()


def notify_url() -> str:
    """Where gateways send their notifications: ``FENQI_GATEWAY_NOTIFY_URL``, else the local
    service's."""
    given = os.environ.get(NOTIFY_URL_VARIABLE, "").strip() or NOTIFY_URL
    if not given.startswith(("http://", "https://")):
        raise SettingError(f'{NOTIFY_URL_VARIABLE}="{given}" is not an http:// or https:// address')
    return given


def check() -> None:
    """Refuses the first setting that cannot be used (a ``SettingError`` naming it), so that a
    command or the service stops before doing anything rather than halfway."""
    from fenqi import clock  # noqa: PLC0415 - the clock's own errors are settings' errors

    clock.today()
    simulation(False)
    backdate_days()
    notify_url()
    for channel in GATEWAY_CHANNELS:  # the secret is checked where the gateways are built,
        gateway_url(channel)  # which knows whether it runs in simulation mode
