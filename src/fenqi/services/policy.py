"""Who may do what: the one place the rules of access are written.

Operators are viewers, agents or admins; borrowers act on their own plans only. Each service
asks this module about the principal in its ``Context`` (set by the entry point once the caller
is authenticated: an API key, a session, the command line's operator) before it reveals or
changes anything, so an entry point checks nothing itself. Pages ask ``offer`` which forms to
show; the services still refuse whatever the forms would send that is not allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Protocol

from fenqi.domain.errors import InputError
from fenqi.domain.money import Money
from fenqi.loans.ports import QuickReads, Stamp, UnitOfWork
from fenqi.services.errors import NotFoundError
from fenqi.services.quoting import FieldError

AGENT_WAIVER_LIMIT = Money(100_00)  # an agent forgives at most 100.00 at a time; admins any
NO_SIMULATION = (
    "a simulated balance is set only by staff, when the service runs in "
    "simulation mode (fenqi serve --simulate)"
)


class Role(StrEnum):
    VIEWER = "viewer"  # reads
    AGENT = "agent"  # also takes payments and checkouts, quotes, waives within the limit
    ADMIN = "admin"  # also pays money out, products, large waivers, the audit log, the batch


_RANKS = {Role.VIEWER: 0, Role.AGENT: 1, Role.ADMIN: 2}


class Permission(StrEnum):
    """What an operator may do, each granted from one role up. Taking money in and paying money
    out are separate: an agent at the desk takes payments, only an admin sends money back."""

    READ = "read"  # loans, borrowers, books, the batch's runs and reports
    SERVE = "serve"  # borrowers, their methods, checkouts, merchant refunds
    TAKE_PAYMENT = "take_payment"  # payments and prepayments, money taken by hand
    WAIVE = "waive"  # forgiving penalty or fee, up to AGENT_WAIVER_LIMIT at a time
    WAIVE_ANY = "waive_any"  # forgiving any amount
    PAY_OUT = "pay_out"  # credit refunds, approving an overpayment, reversals (money back)
    ADMINISTER = "administer"  # products, closing a business day, the audit log, operators
    SIMULATE = "simulate"  # the payment simulator's balances (in simulation mode only)


# The one place that says who holds what: each permission from the lowest role that has it.
GRANTED_FROM: dict[Permission, Role] = {
    Permission.READ: Role.VIEWER,
    Permission.SERVE: Role.AGENT,
    Permission.TAKE_PAYMENT: Role.AGENT,
    Permission.WAIVE: Role.AGENT,
    Permission.WAIVE_ANY: Role.ADMIN,
    Permission.PAY_OUT: Role.ADMIN,
    Permission.ADMINISTER: Role.ADMIN,
    Permission.SIMULATE: Role.AGENT,
}


class UnauthenticatedError(InputError):
    """No credentials, or credentials that are not (or no longer) valid."""


class ForbiddenError(InputError):
    """Valid credentials that do not allow this."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: an operator with a role, or a borrower (``borrower_id``)."""

    name: str
    role: Role | None = None
    borrower_id: int | None = None

    @property
    def is_borrower(self) -> bool:
        return self.borrower_id is not None

    def holds(self, role: Role) -> bool:
        """An operator at ``role`` or above (a borrower holds none)."""
        return self.role is not None and _RANKS[self.role] >= _RANKS[role]

    def may(self, permission: Permission) -> bool:
        """An operator whose role grants ``permission`` (a borrower holds none)."""
        return self.holds(GRANTED_FROM[permission])


def operator(name: str) -> Principal:
    """The operator at the machine: the command line runs with the database's own credentials,
    so whoever runs it is an admin, named in the audit log as ``name``."""
    return Principal(name, Role.ADMIN)


class Credential(Protocol):
    """A credential a request presented, not yet checked: the service that runs the request
    checks it in its own unit of work (``services/credentials.py``), so authenticating,
    authorizing and the work itself are one transaction."""

    def principal(self, on: UnitOfWork) -> Principal:
        """Who it belongs to, checked in the unit of work ``on``; ``UnauthenticatedError``
        when it is not (or no longer) valid."""
        ...

    def principal_and_stamp(self, on: UnitOfWork, loan_id: int) -> tuple[Principal, Stamp | None]:
        """``principal``, and the owner and version of plan ``loan_id`` (None: no such plan)
        read with it, in one statement."""
        ...

    async def principal_and_stamp_at_once(
        self, reads: QuickReads, loan_id: int | None
    ) -> tuple[Principal, Stamp | None] | None:
        """``principal_and_stamp`` (``loan_id`` None: ``principal``) read on the event loop
        (``QuickReads``), with no unit of work; None when checking it needs one (it has
        something to write)."""
        ...


def require(who: Principal, permission: Permission) -> None:
    """Refuses a borrower, or an operator whose role does not grant ``permission``."""
    if not who.may(permission):
        role = GRANTED_FROM[permission]
        raise ForbiddenError(f"this needs the {role} role (permission {permission})").coded(
            "permission-needed", role=role, permission=permission
        )


def sees(who: Principal, borrower_id: int, what: str) -> None:
    """A borrower sees only what is hers (anything else does not exist for her: 404); an
    operator reads anything."""
    if who.is_borrower:
        if who.borrower_id != borrower_id:
            raise NotFoundError(f"no {what}")
        return
    require(who, Permission.READ)


def serves(who: Principal, borrower_id: int, what: str) -> None:
    """A change to a borrower's own things (her methods): by her, or by an operator who serves
    borrowers."""
    if who.is_borrower:
        sees(who, borrower_id, what)
        return
    require(who, Permission.SERVE)


@dataclass(frozen=True)
class OverpaymentApproval:
    """An admin's explicit word that a payment may be more than what pays the plan off that day
    (the excess becomes a credit balance); without one, the services refuse such a payment.
    ``approver`` is named in the audit log."""

    approver: str


def approve_overpayment(who: Principal) -> OverpaymentApproval:
    """The approval, if ``who`` may pay money out: an overpayment is money the borrower will be
    owed back, so approving one is paying out."""
    require(who, Permission.PAY_OUT)
    return OverpaymentApproval(who.name)


@dataclass(frozen=True)
class MoneyIn:
    """What a principal may do when paying a plan: whether money may be taken by hand when the
    borrower has no method bound, and the overpayment approval asked for."""

    by_hand_if_unbound: bool
    overpayment: OverpaymentApproval | None


def takes_money(
    who: Principal,
    borrower_id: int,
    loan_id: int,
    *,
    manual: bool,
    overpayment: bool,
    day: date,
    today: date,
) -> MoneyIn:
    """A payment on ``loan_id``: the borrower on her own plan, from her own methods and on the
    day itself; staff who take payments, by hand too, on the day the money arrived."""
    if who.is_borrower:
        sees(who, borrower_id, f"loan {loan_id}")
        if manual:
            require(who, Permission.TAKE_PAYMENT)  # only staff take money by hand
    else:
        require(who, Permission.TAKE_PAYMENT)
    approval = approve_overpayment(who) if overpayment else None
    if who.is_borrower and day != today:
        raise FieldError("date", f"a borrower pays on the day itself ({today}); leave date out")
    return MoneyIn(not who.is_borrower, approval)


def waives(who: Principal, amount: Money) -> None:
    """Agents forgive up to ``AGENT_WAIVER_LIMIT`` at a time, admins any amount."""
    require(who, Permission.WAIVE)
    if amount > AGENT_WAIVER_LIMIT and not who.may(Permission.WAIVE_ANY):
        raise ForbiddenError(
            f"an agent may waive up to {AGENT_WAIVER_LIMIT} at a time; ask an admin"
        ).coded("waiver-over-limit", limit=AGENT_WAIVER_LIMIT)


def simulates(who: Principal) -> None:
    """Only staff give a bound method a simulated balance (refused as the field it is)."""
    if not who.may(Permission.SIMULATE):
        raise FieldError("sim_balance", NO_SIMULATION)


@dataclass(frozen=True)
class Offer:
    """What a page may offer a principal: her roles and permissions (which forms to draw),
    and the waiver limit an agent's form says. Offering a form decides nothing: the service
    behind it asks the policy again."""

    roles: frozenset[Role]
    permissions: frozenset[Permission]
    waiver_limit: Money = AGENT_WAIVER_LIMIT


def offer(who: Principal) -> Offer:
    """The console's offer for an operator; a borrower's session opens nothing there (403)."""
    require(who, Permission.READ)
    roles = frozenset(role for role in Role if who.holds(role))
    return Offer(roles, frozenset(filter(who.may, Permission)))
