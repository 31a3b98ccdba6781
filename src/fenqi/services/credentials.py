"""Who is asking: operators, their passwords and API keys; borrowers' sign-in codes; sessions.
What each may do is the policy's (``services/policy.py``).

Operators are viewers, agents or admins; they sign in to the console with a password (kept as a
scrypt hash) or call the API with a key (kept as a SHA-256 of its secret: the secret is shown once
and never stored). Borrowers sign in with their phone and a one-time code sent by SMS, and act on
their own plans only. Sessions are random tokens, stored hashed, each with its CSRF token.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from fenqi.loans.ports import (
    ApiKey,
    KeyHolder,
    QuickReads,
    SessionHolder,
    Stamp,
    UnitOfWork,
    User,
)
from fenqi.ports import SmsGateway
from fenqi.services import throttles
from fenqi.services.context import Context, caller, transact
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import Permission, Principal, Role, UnauthenticatedError, require
from fenqi.services.throttles import Limit, TooManyAttemptsError
from fenqi.services.views import ApiKeyCreated, CodeSent, OperatorCreated, OperatorDisabled

log = logging.getLogger("fenqi")
SESSION_HOURS = 12
CODE_MINUTES = 5
CODE_ATTEMPTS = 5
# Who may try how often (services/throttles.py; README "Security"). A try over a limit is
# refused (429) before anything is checked, the same way for an account that does not exist.
PASSWORD_TRIES = Limit("password", 10, 15 * 60)  # wrong passwords per user name
ADDRESS_TRIES = Limit("address-tries", 30, 15 * 60)  # wrong passwords and codes per address
CODE_REQUESTS = Limit("address-codes", 30, 15 * 60)  # codes asked for per client address
RESEND = Limit("code-resend", 1, 60)  # a new code for a phone at most once a minute
CODES_PER_DAY = Limit("code-day", 10, 24 * 3600)  # and at most ten in a day
KEY_USE_NOTED = timedelta(hours=1)  # an API key's last use is written at most this often
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
WRONG_PASSWORD = "the user name or the password is wrong"
WRONG_CODE = "that code is not valid; ask for a new one"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Delivered at once (a sign-in is not dunning: no contact window), through the SMS simulator's log.
SIGN_IN_TEXT = "【fenqi分期】您的登录验证码为{code}，{minutes}分钟内有效。请勿告诉他人。"


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


def _administrator(context: Context, unit: UnitOfWork) -> str:
    """The name of whoever is acting, once found to administer operators and their keys."""
    who = caller(context, unit)
    require(who, Permission.ADMINISTER)
    return who.name


def create_user(context: Context, username: str, password: str, role: Role) -> OperatorCreated:
    if not USER_NAME.fullmatch(username):
        raise RefusedError(f"{username!r} is not a user name: give 1 to 64 ASCII letters, digits, "
                           "'.', '_' or '-', starting with a letter or a digit")  # fmt: skip
    if len(password) < 8:
        raise RefusedError("a password needs at least 8 characters")

    def create(unit: UnitOfWork) -> OperatorCreated:
        admin = _administrator(context, unit)
        if unit.credentials.user(username) is not None:
            raise RefusedError(f"user {username} already exists")
        unit.credentials.add_user(username, hash_password(password), role.value, now())
        unit.audit(admin, "user.create", f"user:{username}", "",
                   after={"username": username, "role": role.value})  # fmt: skip
        return OperatorCreated(username, role)

    return transact(context, create)


def list_users(context: Context) -> list[User]:
    """Every operator, by name, with her role and whether she is disabled."""

    def listing(unit: UnitOfWork) -> list[User]:
        _administrator(context, unit)
        return unit.credentials.users()

    return transact(context, listing)


def disable_user(context: Context, username: str) -> OperatorDisabled:
    """Stops an operator at once: her sessions end, her API keys stop working, and signing in
    is refused as a wrong password is."""

    def disable(unit: UnitOfWork) -> OperatorDisabled:
        admin = _administrator(context, unit)
        user = unit.credentials.user(username, for_update=True)
        if user is None:
            raise NotFoundError(f"no user {username}")
        if user.disabled_at is not None:
            raise RefusedError(f"user {username} is already disabled")
        at = now()
        ended = unit.credentials.disable_user(username, at)
        unit.audit(admin, "user.disable", f"user:{username}", "",
                   before={"disabled": False}, after={"disabled": True})  # fmt: skip
        return OperatorDisabled(replace(user, disabled_at=at), ended)

    return transact(context, disable)


def create_api_key(context: Context, username: str) -> ApiKeyCreated:
    """A new key for ``username``; its secret is in this answer only."""

    def create(unit: UnitOfWork) -> ApiKeyCreated:
        admin = _administrator(context, unit)
        user = unit.credentials.user(username)
        if user is None:
            raise NotFoundError(f"no user {username}")
        if user.disabled_at is not None:
            raise RefusedError(f"user {username} is disabled")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
        unit.credentials.add_key(key_id, _digest(secret), username, now())
        unit.audit(admin, "apikey.create", f"user:{username}", "",
                   after={"key_id": key_id})  # fmt: skip
        return ApiKeyCreated(username, key_id, f"fq_{key_id}_{secret}")

    return transact(context, create)


def list_api_keys(context: Context, username: str | None = None) -> list[ApiKey]:
    """The keys (all, or one operator's), oldest first: ids and dates, never a secret."""

    def listing(unit: UnitOfWork) -> list[ApiKey]:
        _administrator(context, unit)
        return unit.credentials.keys(username)

    return transact(context, listing)


def revoke_api_key(context: Context, key_id: str) -> ApiKey:
    """The key stops working at once; it stays listed, revoked."""

    def revoke(unit: UnitOfWork) -> ApiKey:
        admin = _administrator(context, unit)
        key = unit.credentials.key(key_id, for_update=True)
        if key is None:
            raise NotFoundError(f"no API key {key_id}")
        if key.revoked:
            raise RefusedError(f"API key {key_id} is already revoked")
        revoked = unit.credentials.revoke_key(key_id, now())
        unit.audit(admin, "apikey.revoke", f"user:{key.username}", "",
                   before={"key_id": key_id, "revoked": False},
                   after={"key_id": key_id, "revoked": True})  # fmt: skip
        return revoked

    return transact(context, revoke)


def principal_for_key(context: Context, api_key: str) -> Principal:
    """The operator an API key belongs to, in a transaction of its own."""
    return transact(context, lambda unit: _key_holder(unit, api_key)[0])


def _key_holder(
    unit: UnitOfWork, api_key: str, loan_id: int | None = None
) -> tuple[Principal, Stamp | None]:
    """Checks an API key, with its operator, in one statement (reading the stamp of plan
    ``loan_id`` too, if asked): refused if unknown, revoked, or its operator disabled; its use
    is noted at most once an hour."""
    key_id, secret = _key_parts(api_key)
    at = now()
    holder = _valid_key(unit.credentials.key_holder(key_id, loan_id), secret)
    if _key_use_due(holder, at):
        # Unless a request at the same time already did: a write an hour, not one a request.
        unit.credentials.note_key_use(key_id, at, at - KEY_USE_NOTED)
    return Principal(holder.username, Role(holder.role)), holder.stamp


def _key_parts(api_key: str) -> tuple[str, str]:
    """An API key's id and secret (``fq_<id>_<secret>``)."""
    _, _, rest = api_key.partition("fq_")
    key_id, _, secret = rest.partition("_")
    return key_id, secret


def _valid_key(holder: KeyHolder | None, secret: str) -> KeyHolder:
    """The key's holder, refused if there is none, the key is revoked, the secret does not
    match, or its operator is disabled."""
    if (holder is None or holder.revoked
            or not hmac.compare_digest(holder.secret_hash, _digest(secret))):  # fmt: skip
        raise UnauthenticatedError("that API key is not valid")
    if holder.disabled_at is not None:
        raise UnauthenticatedError("that API key is not valid")
    return holder


def _key_use_due(holder: KeyHolder, at: datetime) -> bool:
    """Whether the key's use at ``at`` is to be noted (its last noted use an hour old)."""
    return holder.last_used_at is None or holder.last_used_at <= at - KEY_USE_NOTED


def sign_in_operator(
    context: Context, username: str, password: str, address: str | None = None
) -> tuple[str, str]:
    """A console session for an operator whose password matches: (token, CSRF token).

    The try is counted first (per user name and per client address; refused over the limits),
    then the password checked outside any transaction. An unknown or disabled user's try is
    checked against a hash of nothing, so every wrong answer takes the time a wrong password
    does and tells nothing."""
    at = now()
    tries = [(PASSWORD_TRIES, username), (ADDRESS_TRIES, address)]

    def take_a_try(unit: UnitOfWork) -> str | None:
        throttles.count(unit.counters, at, tries)
        return unit.credentials.password_hash(username)

    stored = transact(context, take_a_try)
    matches = password_matches(password, stored or _hash_of_nobody())
    if stored is None or not matches:
        raise UnauthenticatedError(WRONG_PASSWORD)

    def open_session(unit: UnitOfWork) -> tuple[str, str]:
        if unit.credentials.password_hash(username) is None:  # disabled while it was checked
            raise UnauthenticatedError(WRONG_PASSWORD)
        throttles.give_back(unit.counters, tries)
        return _open_session(unit, "operator", username)

    return transact(context, open_session)


@functools.cache
def _hash_of_nobody() -> str:
    """A password hash no password is known for, with the real ones' cost."""
    return hash_password(secrets.token_urlsafe(16))


# -- borrowers ------------------------------------------------------------------------------------


def send_sign_in_code(context: Context, phone: str, address: str | None = None) -> CodeSent:
    """Texts a one-time code to a borrower's phone through the context's SMS gateway. The
    answer, and the work done, are the same whether or not the phone is a borrower's and
    whether or not a code went out, so it tells nothing: a phone that is no borrower's gets a
    code that no one is sent. Only too many requests from one address are refused (429). The
    code is stored and logged first; the gateway is handed the text once that has committed,
    by a thread of its own (``text_later``), so the answer never waits for a gateway (nor tells
    by its timing that one was called)."""
    at = now()

    def send(unit: UnitOfWork) -> tuple[str | None, int]:
        throttles.count(unit.counters, at, [(CODE_REQUESTS, address)])
        borrower_id = unit.borrowers.with_phone(phone)
        code = f"{secrets.randbelow(10**6):06d}"
        text = None
        wait = _wait_for_new_code(unit, phone, at)
        if wait == 0:
            wait = RESEND.seconds
            known = borrower_id is not None
            _store_code(unit, phone, code if known else secrets.token_urlsafe(16), at)
            if borrower_id is not None:
                text = SIGN_IN_TEXT.format(code=code, minutes=CODE_MINUTES)
                unit.outbox.log_sign_in_code(borrower_id, phone, text, at)
        _prune(unit, at)
        return text, wait

    text, wait = transact(context, send)
    if text is not None and context.sms is not None:
        text_later(context.sms, phone, text)
    return CodeSent(True, CODE_MINUTES, wait)


# Sign-in codes go to the gateway from a thread of their own, one after another: a gateway may
# take a second to answer, and a request that waited for it would say by its timing alone that
# the phone is a borrower's.
_TEXTING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fenqi-sign-in-codes")


def text_later(gateway: SmsGateway, phone: str, text: str) -> None:
    """Hands ``text`` to ``gateway`` for ``phone`` soon, in the background. A gateway that
    fails is logged (without the phone or the text); the borrower asks for a new code."""
    _TEXTING.submit(_text, gateway, phone, text)


def texts_handed_over() -> None:
    """Waits until every code queued so far has been handed to its gateway: a server shutting
    down, or a test, calls it."""
    _TEXTING.submit(lambda: None).result()


def _text(gateway: SmsGateway, phone: str, text: str) -> None:
    try:
        gateway.send(phone, text)
    except Exception as failure:  # any failure: no code went, and she asks for another
        log.warning(json.dumps({"event": "sign-in-code-not-sent",
                                "error": type(failure).__name__}))  # fmt: skip


def _wait_for_new_code(unit: UnitOfWork, phone: str, at: datetime) -> int:
    """Counts a request for a new code for the phone: 0 when one may be made now, else the
    seconds until one may (a minute after the last, or the next day after the day's last). A
    new code resets the attempts against the last one: without a limit on new codes, guessing
    would have no limit either (and the phone would be flooded with texts). Both counts are
    atomic, so simultaneous requests cannot all slip under them; and they are the same whoever's
    phone it is, so the wait tells nothing."""
    counters = unit.counters
    return throttles.wait(counters, at, RESEND, phone) or throttles.wait(
        counters, at, CODES_PER_DAY, phone
    )


def _store_code(unit: UnitOfWork, phone: str, code: str, at: datetime) -> None:
    unit.credentials.keep_code(phone, _digest(f"{phone}:{code}"),
                               at + timedelta(minutes=CODE_MINUTES))  # fmt: skip


def _prune(unit: UnitOfWork, at: datetime) -> None:
    """Forgets codes that expired and throttle windows long over."""
    throttles.prune(unit.counters, at)
    unit.credentials.prune_codes(at)


def sign_in_borrower(
    context: Context, phone: str, code: str, address: str | None = None
) -> tuple[str, str]:
    """A session for the borrower whose code matches: (token, CSRF token).

    A guess is counted before it is compared, by one atomic UPDATE that takes one of the code's
    ``CODE_ATTEMPTS`` tries and returns the code's hash only to a guess that got one: however
    many guesses arrive at once, at most that many are compared. A code whose tries are used up
    is refused with 429 until a new one is asked for; a code is used once."""
    at = now()
    tries = [(ADDRESS_TRIES, address)]

    def take_a_try(unit: UnitOfWork) -> str | None:
        throttles.count(unit.counters, at, tries)
        won = unit.credentials.try_code(phone, at, CODE_ATTEMPTS)
        if won is None:
            _refuse_used_up(unit, phone, at)
        return won

    expected = transact(context, take_a_try)  # the try is committed before the guess is compared
    if expected is None or not hmac.compare_digest(expected, _digest(f"{phone}:{code}")):
        raise UnauthenticatedError(WRONG_CODE)

    def open_session(unit: UnitOfWork) -> tuple[str, str]:
        used = unit.credentials.use_code(phone, expected)
        borrower_id = unit.borrowers.with_phone(phone)
        if not used or borrower_id is None:  # used by a twin request a moment ago
            raise UnauthenticatedError(WRONG_CODE)
        throttles.give_back(unit.counters, tries)
        return _open_session(unit, "borrower", str(borrower_id))

    return transact(context, open_session)


def _refuse_used_up(unit: UnitOfWork, phone: str, at: datetime) -> None:
    """A live code with no tries left: 429 until a new code may be asked for. (No code, or an
    expired one, is only a wrong code.)"""
    expires_at = unit.credentials.code_expires(phone)
    if expires_at is None or expires_at <= at:
        return
    sent = expires_at - timedelta(minutes=CODE_MINUTES)
    wait = (sent + timedelta(seconds=RESEND.seconds) - at).total_seconds()
    raise TooManyAttemptsError(max(1, math.ceil(wait)), "too many wrong codes; ask for a new code")


# -- sessions -------------------------------------------------------------------------------------


def _open_session(unit: UnitOfWork, kind: str, subject: str) -> tuple[str, str]:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    unit.credentials.add_session(_digest(token), kind, subject, csrf,
                                 now() + timedelta(hours=SESSION_HOURS))  # fmt: skip
    return token, csrf


def principal_for_session(context: Context, token: str) -> tuple[Principal, str]:
    """Who a session token belongs to, with the session's CSRF token."""
    return transact(context, lambda unit: _session_holder(unit, token)[:2])


def _session_holder(
    unit: UnitOfWork, token: str, loan_id: int | None = None
) -> tuple[Principal, str, Stamp | None]:
    """Checks a session token, with the operator it is for if it is an operator's, in one
    statement (with the stamp of plan ``loan_id``, if asked, as ``_key_holder``): refused if
    unknown or expired, or its operator disabled."""
    return _valid_session(unit.credentials.session_holder(_digest(token), loan_id))


def _valid_session(holder: SessionHolder | None) -> tuple[Principal, str, Stamp | None]:
    """Who a session belongs to, its CSRF token and the plan's stamp read with it; refused if
    there is no such session, it has expired, or its operator is disabled."""
    if holder is None or holder.expires_at < now():
        raise UnauthenticatedError("please sign in again")
    if holder.kind == "borrower":
        who = Principal(f"borrower:{holder.subject}", borrower_id=int(holder.subject))
        return who, holder.csrf, holder.stamp
    if holder.username is None or holder.role is None or holder.disabled_at is not None:
        raise UnauthenticatedError("please sign in again")
    return Principal(holder.username, Role(holder.role)), holder.csrf, holder.stamp


@dataclass(frozen=True)
class Presented:
    """A credential as a request presented it (an API key ``fq_…``, or a session token), for
    the service to check in its own unit of work: a request is authenticated, authorized and
    served in one transaction, and a key revoked or an operator disabled is refused on the
    very next request. Checked once per unit of work (``Credentials.checked`` holds the
    answer), so a service may ask again at no cost."""

    token: str

    def principal(self, on: UnitOfWork) -> Principal:
        checked = on.credentials.checked.get(self.token)
        if not isinstance(checked, Principal):
            checked = self._check(on, None)[0]
        return checked

    def principal_and_stamp(self, on: UnitOfWork, loan_id: int) -> tuple[Principal, Stamp | None]:
        """Who it belongs to, and the owner and version of plan ``loan_id`` (None: there is
        no such plan), read in the same statement: a bill view's one round trip."""
        return self._check(on, loan_id)

    async def principal_and_stamp_at_once(
        self, reads: QuickReads, loan_id: int | None
    ) -> tuple[Principal, Stamp | None] | None:
        """``principal_and_stamp`` (``loan_id`` None: ``principal``) read with no unit of work
        (``QuickReads``), refused for the same reasons; None when the check has a write to make
        (a key's hourly note of its use): then it is made in a unit of work.
        ``UnansweredError`` when the read had no answer."""
        if self.token.startswith("fq_"):
            key_id, secret = _key_parts(self.token)
            holder = _valid_key(await reads.key_holder(key_id, loan_id), secret)
            if _key_use_due(holder, now()):
                return None
            return Principal(holder.username, Role(holder.role)), holder.stamp
        who, _, stamp = _valid_session(await reads.session_holder(_digest(self.token), loan_id))
        return who, stamp

    def _check(self, unit: UnitOfWork, loan_id: int | None) -> tuple[Principal, Stamp | None]:
        if self.token.startswith("fq_"):
            checked, stamp = _key_holder(unit, self.token, loan_id)
        else:
            checked, _, stamp = _session_holder(unit, self.token, loan_id)
        unit.credentials.checked[self.token] = checked
        return checked, stamp


def sign_out(context: Context, token: str) -> None:
    transact(context, lambda unit: unit.credentials.end_session(_digest(token)))
