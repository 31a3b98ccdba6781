"""The services' context as tests and demos build it: the simulator's balances, and every debit
and refund through the in-process gateway simulator (the composition root's),
acting as the operator at the machine (``policy.operator``, an admin named ``actor``)."""

from sqlalchemy import Engine

from fenqi.channels.gateways import simulated
from fenqi.channels.simulator import SimulatedChannel
from fenqi.services.context import Context
from fenqi.services.policy import operator


def simulated_context(engine: Engine, actor: str = "system", **extra: object) -> Context:
    return Context(engine, SimulatedChannel, operator(actor), gateways=simulated(engine),
                   **extra)  # type: ignore[arg-type]  # fmt: skip
