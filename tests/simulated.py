"""The services' context as tests and demos build it: the simulator's balances, and every debit
and refund through the in-process gateway simulator (the composition root's),
acting as the operator at the machine (``policy.operator``, an admin named ``actor``)."""

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fenqi.channels.gateways import simulated
from fenqi.channels.simulator import SimulatedChannel
from fenqi.services.context import Context, transact
from fenqi.services.policy import operator
from fenqi.store.units import session_of

T = TypeVar("T")


def simulated_context(engine: Engine, actor: str = "system", **extra: object) -> Context:
    return Context(engine, SimulatedChannel, operator(actor), gateways=simulated(engine),
                   **extra)  # type: ignore[arg-type]  # fmt: skip


def on_session(context: Context, work: Callable[[Session], T]) -> T:
    """``work`` on the session of one unit of work (``transact``: retried, its errors said as
    the services say them), for a test that reaches the rows itself."""
    return transact(context, lambda unit: work(session_of(unit)))
