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
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, or_, select, true, update
from sqlalchemy.orm import Session

from fenqi.loans.ports import Stamp
from fenqi.services import throttles
from fenqi.services.context import Context, Document, audit, caller, run
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import Permission, Principal, Role, UnauthenticatedError, require
from fenqi.services.throttles import Limit, TooManyAttemptsError
from fenqi.store.schema import (
    NO_LOAN,
    ApiKeyRow,
    Base,
    BorrowerRow,
    LoanRow,
    SessionRow,
    SignInCodeRow,
    SmsSentRow,
    UserRow,
)
from fenqi.store.throttles import DatabaseCounters, upsert
from fenqi.store.units import DatabaseUnitOfWork

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


def _administrator(context: Context, session: Session) -> str:
    """The name of whoever is acting, once found to administer operators and their keys."""
    who = caller(context, session)
    require(who, Permission.ADMINISTER)
    return who.name


def create_user(context: Context, username: str, password: str, role: Role) -> Document:
    if not USER_NAME.fullmatch(username):
        raise RefusedError(f"{username!r} is not a user name: give 1 to 64 ASCII letters, digits, "
                           "'.', '_' or '-', starting with a letter or a digit")  # fmt: skip
    if len(password) < 8:
        raise RefusedError("a password needs at least 8 characters")

    def create(session: Session) -> Document:
        admin = _administrator(context, session)
        if session.get(UserRow, username) is not None:
            raise RefusedError(f"user {username} already exists")
        session.add(UserRow(username=username, password_hash=hash_password(password), role=role,
                            created_at=now()))  # fmt: skip
        audit(session, admin, "user.create", f"user:{username}", "new operator",
              after={"username": username, "role": role.value})  # fmt: skip
        return {"username": username, "role": role.value}

    return run(context, create)


def list_users(context: Context) -> list[Document]:
    """Every operator, by name, with her role and whether she is disabled."""
    query = select(UserRow).order_by(UserRow.username)

    def listing(session: Session) -> list[Document]:
        _administrator(context, session)
        return [_user(row) for row in session.scalars(query)]

    return run(context, listing)


def disable_user(context: Context, username: str) -> Document:
    """Stops an operator at once: her sessions end, her API keys stop working, and signing in
    is refused as a wrong password is."""

    def disable(session: Session) -> Document:
        admin = _administrator(context, session)
        user = session.get(UserRow, username, with_for_update=True)
        if user is None:
            raise NotFoundError(f"no user {username}")
        if user.disabled_at is not None:
            raise RefusedError(f"user {username} is already disabled")
        user.disabled_at = now()
        ended = session.scalars(delete(SessionRow).returning(SessionRow.token_hash).where(
            SessionRow.kind == "operator", SessionRow.subject == username)).all()  # fmt: skip
        audit(session, admin, "user.disable", f"user:{username}", "operator disabled",
              before={"disabled": False}, after={"disabled": True})  # fmt: skip
        return {**_user(user), "sessions_ended": len(ended)}

    return run(context, disable)


def _user(row: UserRow) -> Document:
    return {
        "username": row.username,
        "role": row.role,
        "status": "active" if row.disabled_at is None else "disabled",
        "created_at": row.created_at.isoformat(),
        "disabled_at": None if row.disabled_at is None else row.disabled_at.isoformat(),
    }


def create_api_key(context: Context, username: str) -> Document:
    """A new key for ``username``; its secret is in this answer only."""

    def create(session: Session) -> Document:
        admin = _administrator(context, session)
        user = session.get(UserRow, username)
        if user is None:
            raise NotFoundError(f"no user {username}")
        if user.disabled_at is not None:
            raise RefusedError(f"user {username} is disabled")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
        session.add(ApiKeyRow(key_id=key_id, secret_hash=_digest(secret), username=username,
                              revoked=False, created_at=now()))  # fmt: skip
        audit(session, admin, "apikey.create", f"user:{username}", "new API key",
              after={"key_id": key_id})  # fmt: skip
        return {"username": username, "key_id": key_id, "api_key": f"fq_{key_id}_{secret}"}

    return run(context, create)


def list_api_keys(context: Context, username: str | None = None) -> list[Document]:
    """The keys (all, or one operator's), oldest first: ids and dates, never a secret."""
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.key_id)
    if username is not None:
        query = query.where(ApiKeyRow.username == username)

    def listing(session: Session) -> list[Document]:
        _administrator(context, session)
        return [_api_key(row) for row in session.scalars(query)]

    return run(context, listing)


def revoke_api_key(context: Context, key_id: str) -> Document:
    """The key stops working at once; it stays listed, revoked."""

    def revoke(session: Session) -> Document:
        admin = _administrator(context, session)
        row = session.get(ApiKeyRow, key_id, with_for_update=True)
        if row is None:
            raise NotFoundError(f"no API key {key_id}")
        if row.revoked:
            raise RefusedError(f"API key {key_id} is already revoked")
        row.revoked, row.revoked_at = True, now()
        audit(session, admin, "apikey.revoke", f"user:{row.username}", "API key revoked",
              before={"key_id": key_id, "revoked": False},
              after={"key_id": key_id, "revoked": True})  # fmt: skip
        return _api_key(row)

    return run(context, revoke)


def _api_key(row: ApiKeyRow) -> Document:
    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {"key_id": row.key_id, "username": row.username, "revoked": row.revoked,
            "created_at": row.created_at.isoformat(), "last_used_at": moment(row.last_used_at),
            "revoked_at": moment(row.revoked_at)}  # fmt: skip


def principal_for_key(context: Context, api_key: str) -> Principal:
    """The operator an API key belongs to, in a transaction of its own."""
    return run(context, lambda session: _key_holder(session, api_key)[0])


_KEYS, _USERS, _SESSIONS, _LOANS = (
    Base.metadata.tables[row.__tablename__] for row in (ApiKeyRow, UserRow, SessionRow, LoanRow)
)
# Core statements, compiled once: every API request asks one of them. A key with its operator;
# a session with its operator, if it is an operator's.
_KEY_HOLDER = select(
    _KEYS.c.secret_hash, _KEYS.c.revoked, _KEYS.c.last_used_at, _USERS.c.username,
    _USERS.c.role, _USERS.c.disabled_at,
).join_from(_KEYS, _USERS, _KEYS.c.username == _USERS.c.username).where(
    _KEYS.c.key_id == bindparam("key_id")
)  # fmt: skip
_SESSION_HOLDER = select(
    _SESSIONS.c.kind, _SESSIONS.c.subject, _SESSIONS.c.csrf, _SESSIONS.c.expires_at,
    _USERS.c.username, _USERS.c.role, _USERS.c.disabled_at,
).outerjoin_from(
    _SESSIONS, _USERS,
    (_SESSIONS.c.kind == "operator") & (_SESSIONS.c.subject == _USERS.c.username),
).where(_SESSIONS.c.token_hash == bindparam("token_hash"))  # fmt: skip
# The same, with the owner and version of the plan a bill view asks for (none: no such plan),
# so that the view checks who asks and whether its kept bill is current in one round trip.
_STAMP = (
    select(_LOANS.c.borrower_id.label("plan_owner"), _LOANS.c.version.label("plan_version"))
    .where(_LOANS.c.id == bindparam("loan_id"))
    .subquery("plan")
)
_KEY_HOLDER_AND_STAMP, _SESSION_HOLDER_AND_STAMP = (
    holder.add_columns(_STAMP.c.plan_owner, _STAMP.c.plan_version).outerjoin(_STAMP, true())
    for holder in (_KEY_HOLDER, _SESSION_HOLDER)
)


def _key_holder(
    session: Session, api_key: str, loan_id: int | None = None
) -> tuple[Principal, Stamp | None]:
    """Checks an API key, with its operator, in one statement (reading the stamp of plan
    ``loan_id`` too, if asked): refused if unknown, revoked, or its operator disabled; its use
    is noted at most once an hour."""
    _, _, rest = api_key.partition("fq_")
    key_id, _, secret = rest.partition("_")
    at = now()
    row = _holder(session, (_KEY_HOLDER, _KEY_HOLDER_AND_STAMP), {"key_id": key_id}, loan_id)
    if row is None or row.revoked or not hmac.compare_digest(row.secret_hash, _digest(secret)):
        raise UnauthenticatedError("that API key is not valid")
    if row.disabled_at is not None:
        raise UnauthenticatedError("that API key is not valid")
    if row.last_used_at is None or row.last_used_at <= at - KEY_USE_NOTED:
        _note_use(session, key_id, at)
    return Principal(row.username, Role(row.role)), _stamp(row, loan_id)


def _holder(
    session: Session,
    statements: tuple[Select[Any], Select[Any]],
    keys: Document,
    loan_id: int | None,
) -> Row[Any] | None:
    """The credential's row by ``keys``: with the plan's stamp (the second statement) when a
    plan is asked about."""
    if loan_id is None:
        return session.connection().execute(statements[0], keys).first()
    return session.connection().execute(statements[1], {**keys, "loan_id": loan_id}).first()


def _stamp(row: Row[Any], loan_id: int | None) -> Stamp | None:
    """The plan's stamp in a credential's row, when a plan was asked about and there is one."""
    if loan_id is None or row.plan_version is None:
        return None
    return Stamp(row.plan_owner, row.plan_version)


def _note_use(session: Session, key_id: str, at: datetime) -> None:
    """Writes the key's last use, unless a request at the same time already did: a write an
    hour, not one a request."""
    session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.key_id == key_id,
               or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at <= at - KEY_USE_NOTED))
        .values(last_used_at=at)
        .execution_options(synchronize_session=False)
    )  # fmt: skip


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

    def take_a_try(session: Session) -> str | None:
        throttles.count(DatabaseCounters(session), at, tries)
        user = session.get(UserRow, username)
        return user.password_hash if user is not None and user.disabled_at is None else None

    stored = run(context, take_a_try)
    matches = password_matches(password, stored or _hash_of_nobody())
    if stored is None or not matches:
        raise UnauthenticatedError(WRONG_PASSWORD)

    def open_session(session: Session) -> tuple[str, str]:
        user = session.get(UserRow, username)
        if user is None or user.disabled_at is not None:  # disabled while the hash was checked
            raise UnauthenticatedError(WRONG_PASSWORD)
        throttles.give_back(DatabaseCounters(session), tries)
        return _open_session(session, "operator", username)

    return run(context, open_session)


@functools.cache
def _hash_of_nobody() -> str:
    """A password hash no password is known for, with the real ones' cost."""
    return hash_password(secrets.token_urlsafe(16))


# -- borrowers ------------------------------------------------------------------------------------


def send_sign_in_code(context: Context, phone: str, address: str | None = None) -> Document:
    """Texts a one-time code to a borrower's phone (through the SMS gateway simulator). The
    answer, and the work done, are the same whether or not the phone is a borrower's and
    whether or not a code went out, so it tells nothing: a phone that is no borrower's gets a
    code that no one is sent. Only too many requests from one address are refused (429)."""
    at = now()

    def send(session: Session) -> Document:
        throttles.count(DatabaseCounters(session), at, [(CODE_REQUESTS, address)])
        borrower_id = session.scalar(select(BorrowerRow.id).where(BorrowerRow.phone == phone))
        code = f"{secrets.randbelow(10**6):06d}"
        if _may_text_code(session, phone, at):
            known = borrower_id is not None
            _store_code(session, phone, code if known else secrets.token_urlsafe(16), at)
            if known:
                text = SIGN_IN_TEXT.format(code=code, minutes=CODE_MINUTES)
                session.add(SmsSentRow(loan_id=NO_LOAN, borrower_id=borrower_id, phone=phone,
                                       text=text, sent_at=at))  # fmt: skip
        _prune(session, at)
        return {"sent": True, "expires_in_minutes": CODE_MINUTES}

    return run(context, send)


def _may_text_code(session: Session, phone: str, at: datetime) -> bool:
    """A new code resets the attempts against the last one: without a limit on new codes,
    guessing would have no limit either (and the phone would be flooded with texts). Both
    counts are atomic, so simultaneous requests cannot all slip under them."""
    counters = DatabaseCounters(session)
    return throttles.within(counters, at, RESEND, phone) and throttles.within(
        counters, at, CODES_PER_DAY, phone
    )


def _store_code(session: Session, phone: str, code: str, at: datetime) -> None:
    values = {"code_hash": _digest(f"{phone}:{code}"), "attempts": 0,
              "expires_at": at + timedelta(minutes=CODE_MINUTES)}  # fmt: skip
    statement = upsert(session, SignInCodeRow).values(phone=phone, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["phone"], set_=values))


def _prune(session: Session, at: datetime) -> None:
    """Forgets codes that expired and throttle windows long over (rows another request is
    deleting are skipped, not waited for)."""
    throttles.prune(DatabaseCounters(session), at)
    dead = select(SignInCodeRow.phone).where(SignInCodeRow.expires_at < at)
    session.execute(delete(SignInCodeRow).where(
        SignInCodeRow.phone.in_(dead.with_for_update(skip_locked=True))))  # fmt: skip


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

    def take_a_try(session: Session) -> str | None:
        throttles.count(DatabaseCounters(session), at, tries)
        code_row = SignInCodeRow
        won = session.scalar(
            update(code_row)
            .where(code_row.phone == phone, code_row.attempts < CODE_ATTEMPTS,
                   code_row.expires_at > at)
            .values(attempts=code_row.attempts + 1)
            .returning(code_row.code_hash)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        if won is None:
            _refuse_used_up(session, phone, at)
        return won

    expected = run(context, take_a_try)  # the try is committed before the guess is compared
    if expected is None or not hmac.compare_digest(expected, _digest(f"{phone}:{code}")):
        raise UnauthenticatedError(WRONG_CODE)

    def open_session(session: Session) -> tuple[str, str]:
        used = session.scalar(delete(SignInCodeRow).returning(SignInCodeRow.phone).where(
            SignInCodeRow.phone == phone, SignInCodeRow.code_hash == expected))  # fmt: skip
        borrower_id = session.scalar(select(BorrowerRow.id).where(BorrowerRow.phone == phone))
        if used is None or borrower_id is None:  # used by a twin request a moment ago
            raise UnauthenticatedError(WRONG_CODE)
        throttles.give_back(DatabaseCounters(session), tries)
        return _open_session(session, "borrower", str(borrower_id))

    return run(context, open_session)


def _refuse_used_up(session: Session, phone: str, at: datetime) -> None:
    """A live code with no tries left: 429 until a new code may be asked for. (No code, or an
    expired one, is only a wrong code.)"""
    row = session.get(SignInCodeRow, phone)
    if row is None or row.expires_at <= at:
        return
    sent = row.expires_at - timedelta(minutes=CODE_MINUTES)
    wait = (sent + timedelta(seconds=RESEND.seconds) - at).total_seconds()
    raise TooManyAttemptsError(max(1, math.ceil(wait)), "too many wrong codes; ask for a new code")


# -- sessions -------------------------------------------------------------------------------------


def _open_session(session: Session, kind: str, subject: str) -> tuple[str, str]:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    session.add(SessionRow(token_hash=_digest(token), kind=kind, subject=subject, csrf=csrf,
                           expires_at=now() + timedelta(hours=SESSION_HOURS)))  # fmt: skip
    return token, csrf


def principal_for_session(context: Context, token: str) -> tuple[Principal, str]:
    """Who a session token belongs to, with the session's CSRF token."""
    return run(context, lambda session: _session_holder(session, token)[:2])


def _session_holder(
    session: Session, token: str, loan_id: int | None = None
) -> tuple[Principal, str, Stamp | None]:
    """Checks a session token, with the operator it is for if it is an operator's, in one
    statement (with the stamp of plan ``loan_id``, if asked, as ``_key_holder``): refused if
    unknown or expired, or its operator disabled."""
    statements = (_SESSION_HOLDER, _SESSION_HOLDER_AND_STAMP)
    row = _holder(session, statements, {"token_hash": _digest(token)}, loan_id)
    if row is None or row.expires_at < now():
        raise UnauthenticatedError("please sign in again")
    stamp = _stamp(row, loan_id)
    if row.kind == "borrower":
        return Principal(f"borrower:{row.subject}", borrower_id=int(row.subject)), row.csrf, stamp
    if row.username is None or row.disabled_at is not None:
        raise UnauthenticatedError("please sign in again")
    return Principal(row.username, Role(row.role)), row.csrf, stamp


@dataclass(frozen=True)
class Presented:
    """A credential as a request presented it (an API key ``fq_…``, or a session token), for
    the service to check in its own unit of work: a request is authenticated, authorized and
    served in one transaction, and a key revoked or an operator disabled is refused on the
    very next request. Checked once per transaction (``Session.info`` holds the answer), so a
    service may ask again at no cost."""

    token: str

    def principal(self, on: object) -> Principal:
        session = _session_of(on)
        checked = session.info.get(self)
        if not isinstance(checked, Principal):
            checked = self._check(session, None)[0]
        return checked

    def principal_and_stamp(self, on: object, loan_id: int) -> tuple[Principal, Stamp | None]:
        """Who it belongs to, and the owner and version of plan ``loan_id`` (None: there is
        no such plan), read in the same statement: a bill view's one round trip."""
        return self._check(_session_of(on), loan_id)

    def _check(self, session: Session, loan_id: int | None) -> tuple[Principal, Stamp | None]:
        if self.token.startswith("fq_"):
            checked, stamp = _key_holder(session, self.token, loan_id)
        else:
            checked, _, stamp = _session_holder(session, self.token, loan_id)
        session.info[self] = checked
        return checked, stamp


def _session_of(on: object) -> Session:
    session = on.session if isinstance(on, DatabaseUnitOfWork) else on
    assert isinstance(session, Session), "a credential is checked in the database"
    return session


def sign_out(context: Context, token: str) -> None:
    run(context, lambda session: session.execute(
        delete(SessionRow).where(SessionRow.token_hash == _digest(token))))  # fmt: skip
