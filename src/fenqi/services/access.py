"""Who is asking, and what they may do.

Operators are viewers, agents or admins; they sign in to the console with a password (kept as a
scrypt hash) or call the API with a key (kept as a SHA-256 of its secret: the secret is shown once
and never stored). Borrowers sign in with their phone and a one-time code sent by SMS, and act on
their own plans only. Sessions are random tokens, stored hashed, each with its CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fenqi.domain.errors import InputError
from fenqi.domain.money import Money
from fenqi.services.context import Context, Document, audit, run
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.store.schema import (
    ApiKeyRow,
    BorrowerRow,
    SessionRow,
    SignInCodeRow,
    SmsSentRow,
    UserRow,
)

SESSION_HOURS = 12
CODE_MINUTES = 5
CODE_ATTEMPTS = 5
RESEND_SECONDS = 60  # a new code for a phone at most this often
CODES_PER_DAY = 10  # and at most this many in 24 hours
AGENT_WAIVER_LIMIT = Money(100_00)  # an agent forgives at most 100.00 at a time; admins any
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Delivered at once (a sign-in is not dunning: no contact window), through the SMS simulator's log.
SIGN_IN_TEXT = "【fenqi分期】您的登录验证码为{code}，{minutes}分钟内有效。请勿告诉他人。"


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
    ADMINISTER = "administer"  # products, closing a business day, the audit log
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

    def require(self, role: Role) -> None:
        """Refuses a borrower, or an operator below ``role``."""
        if not self.holds(role):
            raise ForbiddenError(f"this needs the {role} role")

    def may(self, permission: Permission) -> bool:
        """An operator whose role grants ``permission`` (a borrower holds none)."""
        return self.holds(GRANTED_FROM[permission])

    def need(self, permission: Permission) -> None:
        """Refuses a borrower, or an operator whose role does not grant ``permission``."""
        if not self.may(permission):
            role = GRANTED_FROM[permission]
            raise ForbiddenError(f"this needs the {role} role (permission {permission})")

    def may_waive(self, amount: Money) -> None:
        self.need(Permission.WAIVE)
        if amount > AGENT_WAIVER_LIMIT and not self.may(Permission.WAIVE_ANY):
            raise ForbiddenError(
                f"an agent may waive up to {AGENT_WAIVER_LIMIT} at a time; ask an admin"
            )

    def owns(self, borrower_id: int, what: str) -> None:
        """A borrower sees only what is hers; anything else does not exist for her."""
        if self.is_borrower and self.borrower_id != borrower_id:
            raise NotFoundError(f"no {what}")


@dataclass(frozen=True)
class OverpaymentApproval:
    """An admin's explicit word that a payment may be more than what pays the plan off that day
    (the excess becomes a credit balance); without one, the services refuse such a payment.
    ``approver`` is named in the audit log."""

    approver: str


def approve_overpayment(who: Principal) -> OverpaymentApproval:
    """The approval, if ``who`` may pay money out: an overpayment is money the borrower will be
    owed back, so approving one is paying out."""
    who.need(Permission.PAY_OUT)
    return OverpaymentApproval(who.name)


def now() -> datetime:
    return datetime.now(UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${key.hex()}"


def password_matches(password: str, stored: str) -> bool:
    _, n, r, p, salt, key = stored.split("$")
    tried = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                           p=int(p))  # fmt: skip
    return hmac.compare_digest(tried.hex(), key)


# -- operators ------------------------------------------------------------------------------------


def create_user(context: Context, username: str, password: str, role: Role) -> Document:
    if not username.strip() or len(password) < 8:
        raise RefusedError("a user needs a name and a password of at least 8 characters")

    def create(session: Session) -> Document:
        if session.get(UserRow, username) is not None:
            raise RefusedError(f"user {username} already exists")
        session.add(UserRow(username=username, password_hash=hash_password(password), role=role,
                            created_at=now()))  # fmt: skip
        audit(session, context.actor, "user.create", f"user:{username}", "new operator",
              after={"username": username, "role": role.value})  # fmt: skip
        return {"username": username, "role": role.value}

    return run(context, create)


def create_api_key(context: Context, username: str) -> Document:
    """A new key for ``username``; its secret is in this answer only."""

    def create(session: Session) -> Document:
        if session.get(UserRow, username) is None:
            raise NotFoundError(f"no user {username}")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
        session.add(ApiKeyRow(key_id=key_id, secret_hash=_digest(secret), username=username,
                              revoked=False, created_at=now()))  # fmt: skip
        audit(session, context.actor, "apikey.create", f"user:{username}", "new API key",
              after={"key_id": key_id})  # fmt: skip
        return {"username": username, "key_id": key_id, "api_key": f"fq_{key_id}_{secret}"}

    return run(context, create)


def principal_for_key(context: Context, api_key: str) -> Principal:
    _, _, rest = api_key.partition("fq_")
    key_id, _, secret = rest.partition("_")

    def find(session: Session) -> Principal:
        row = session.get(ApiKeyRow, key_id)
        if row is None or row.revoked or not hmac.compare_digest(row.secret_hash, _digest(secret)):
            raise UnauthenticatedError("that API key is not valid")
        user = session.get(UserRow, row.username)
        assert user is not None  # a key cannot outlive its user (foreign key)
        return Principal(user.username, Role(user.role))

    return run(context, find)


def sign_in_operator(context: Context, username: str, password: str) -> tuple[str, str]:
    """A console session for an operator whose password matches: (token, CSRF token)."""

    def sign_in(session: Session) -> tuple[str, str]:
        user = session.get(UserRow, username)
        if user is None or not password_matches(password, user.password_hash):
            raise UnauthenticatedError("the user name or the password is wrong")
        return _open_session(session, "operator", username)

    return run(context, sign_in)


# -- borrowers ------------------------------------------------------------------------------------


def send_sign_in_code(context: Context, phone: str) -> Document:
    """Texts a one-time code to a borrower's phone (through the SMS gateway simulator). The
    answer is the same whether or not the phone is a borrower's, and whether or not a code went
    out, so it tells nothing."""

    def send(session: Session) -> Document:
        borrower = session.scalars(select(BorrowerRow).where(BorrowerRow.phone == phone)).first()
        if borrower is not None and _may_text_code(session, phone):
            code = f"{secrets.randbelow(10**6):06d}"
            expires = now() + timedelta(minutes=CODE_MINUTES)
            hashed = _digest(f"{phone}:{code}")
            session.merge(
                SignInCodeRow(phone=phone, code_hash=hashed, attempts=0, expires_at=expires)
            )
            text = SIGN_IN_TEXT.format(code=code, minutes=CODE_MINUTES)
            session.add(SmsSentRow(loan_id=0, borrower_id=borrower.id, phone=phone, text=text,
                                   sent_at=now()))  # fmt: skip
        return {"sent": True, "expires_in_minutes": CODE_MINUTES}

    return run(context, send)


def _may_text_code(session: Session, phone: str) -> bool:
    """A new code resets the attempts against the last one: without a limit on new codes,
    guessing would have no limit either (and the phone would be flooded with texts)."""
    last = session.get(SignInCodeRow, phone)
    recently = now() - timedelta(seconds=RESEND_SECONDS)
    if last is not None and last.expires_at - timedelta(minutes=CODE_MINUTES) > recently:
        return False
    today = select(func.count()).where(
        SmsSentRow.phone == phone,
        SmsSentRow.loan_id == 0,  # sign-in codes; dunning texts name their loan
        SmsSentRow.sent_at > now() - timedelta(days=1),
    )
    return (session.scalar(today) or 0) < CODES_PER_DAY


def sign_in_borrower(context: Context, phone: str, code: str) -> tuple[str, str]:
    """A session for the borrower whose code matches: (token, CSRF token)."""

    def sign_in(session: Session) -> tuple[str, str]:
        row = session.get(SignInCodeRow, phone)
        if row is None or row.expires_at < now() or row.attempts >= CODE_ATTEMPTS:
            raise UnauthenticatedError("that code is not valid; ask for a new one")
        if not hmac.compare_digest(row.code_hash, _digest(f"{phone}:{code}")):
            row.attempts += 1
            raise UnauthenticatedError("that code is not valid; ask for a new one")
        session.delete(row)
        borrower = session.scalars(select(BorrowerRow).where(BorrowerRow.phone == phone)).one()
        return _open_session(session, "borrower", str(borrower.id))

    # A wrong code must still count: the attempt is committed before the refusal goes out.
    try:
        return run(context, sign_in)
    except UnauthenticatedError:
        run(context, lambda session: _count_attempt(session, phone))
        raise


def _count_attempt(session: Session, phone: str) -> None:
    row = session.get(SignInCodeRow, phone)
    if row is not None:
        row.attempts += 1


# -- sessions -------------------------------------------------------------------------------------


def _open_session(session: Session, kind: str, subject: str) -> tuple[str, str]:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    session.add(SessionRow(token_hash=_digest(token), kind=kind, subject=subject, csrf=csrf,
                           expires_at=now() + timedelta(hours=SESSION_HOURS)))  # fmt: skip
    return token, csrf


def principal_for_session(context: Context, token: str) -> tuple[Principal, str]:
    """Who a session token belongs to, with the session's CSRF token."""

    def find(session: Session) -> tuple[Principal, str]:
        row = session.get(SessionRow, _digest(token))
        if row is None or row.expires_at < now():
            raise UnauthenticatedError("please sign in again")
        if row.kind == "borrower":
            return Principal(f"borrower:{row.subject}", borrower_id=int(row.subject)), row.csrf
        user = session.get(UserRow, row.subject)
        if user is None:
            raise UnauthenticatedError("please sign in again")
        return Principal(user.username, Role(user.role)), row.csrf

    return run(context, find)


def sign_out(context: Context, token: str) -> None:
    run(context, lambda session: session.execute(
        delete(SessionRow).where(SessionRow.token_hash == _digest(token))))  # fmt: skip
