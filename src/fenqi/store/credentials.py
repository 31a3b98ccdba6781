"""Operators, API keys, sessions and sign-in codes (``fenqi.loans.ports.Credentials``) in a
session's transaction. What every request asks — a key or a session with its operator, and
with the stamp of the plan a bill view shows — is one Core statement compiled once; the writes
that guard against guessing are single atomic statements."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, or_, select, true, update
from sqlalchemy.orm import Session

from fenqi.loans.ports import ApiKey, KeyHolder, SessionHolder, Stamp, User
from fenqi.store.schema import ApiKeyRow, Base, LoanRow, SessionRow, SignInCodeRow, UserRow
from fenqi.store.throttles import upsert

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
KEY_HOLDER_AND_STAMP, SESSION_HOLDER_AND_STAMP = (
    holder.add_columns(_STAMP.c.plan_owner, _STAMP.c.plan_version).outerjoin(_STAMP, true())
    for holder in (_KEY_HOLDER, _SESSION_HOLDER)
)


def _user(row: UserRow) -> User:
    return User(row.username, row.role, row.created_at, row.disabled_at)


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.key_id, row.username, row.revoked, row.created_at, row.last_used_at,
                  row.revoked_at)  # fmt: skip


def key_holder_of(row: Any, loan_id: int | None) -> KeyHolder:
    """A key's holder from its row (``KEY_HOLDER_AND_STAMP``'s columns, a row of any driver)."""
    return KeyHolder(row.secret_hash, row.revoked, row.last_used_at, row.username, row.role,
                     row.disabled_at, _stamp(row, loan_id))  # fmt: skip


def session_holder_of(row: Any, loan_id: int | None) -> SessionHolder:
    """A session's holder from its row (``SESSION_HOLDER_AND_STAMP``'s columns)."""
    return SessionHolder(row.kind, row.subject, row.csrf, row.expires_at, row.username,
                         row.role, row.disabled_at, _stamp(row, loan_id))  # fmt: skip


def _stamp(row: Any, loan_id: int | None) -> Stamp | None:
    """The plan's stamp in a credential's row, when a plan was asked about and there is one."""
    if loan_id is None or row.plan_version is None:
        return None
    return Stamp(row.plan_owner, row.plan_version)


@dataclass(frozen=True)
class DatabaseCredentials:
    """The credentials in a session's transaction."""

    session: Session
    checked: dict[str, object] = field(default_factory=dict)

    def user(self, username: str, *, for_update: bool = False) -> User | None:
        row = self.session.get(UserRow, username, with_for_update=for_update)
        return None if row is None else _user(row)

    def users(self) -> list[User]:
        query = select(UserRow).order_by(UserRow.username)
        return [_user(row) for row in self.session.scalars(query)]

    def password_hash(self, username: str) -> str | None:
        row = self.session.get(UserRow, username)
        return row.password_hash if row is not None and row.disabled_at is None else None

    def add_user(self, username: str, password_hash: str, role: str, at: datetime) -> None:
        self.session.add(UserRow(username=username, password_hash=password_hash, role=role,
                                 created_at=at))  # fmt: skip

    def disable_user(self, username: str, at: datetime) -> int:
        self.session.execute(update(UserRow).where(UserRow.username == username)
                             .values(disabled_at=at))  # fmt: skip
        ended = self.session.scalars(delete(SessionRow).returning(SessionRow.token_hash).where(
            SessionRow.kind == "operator", SessionRow.subject == username)).all()  # fmt: skip
        return len(ended)

    def add_key(self, key_id: str, secret_hash: str, username: str, at: datetime) -> None:
        self.session.add(ApiKeyRow(key_id=key_id, secret_hash=secret_hash, username=username,
                                   revoked=False, created_at=at))  # fmt: skip

    def key(self, key_id: str, *, for_update: bool = False) -> ApiKey | None:
        row = self.session.get(ApiKeyRow, key_id, with_for_update=for_update)
        return None if row is None else _key(row)

    def keys(self, username: str | None) -> list[ApiKey]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.key_id)
        if username is not None:
            query = query.where(ApiKeyRow.username == username)
        return [_key(row) for row in self.session.scalars(query)]

    def revoke_key(self, key_id: str, at: datetime) -> ApiKey:
        row = self.session.get(ApiKeyRow, key_id)
        assert row is not None, "a key read in this transaction is there"
        row.revoked, row.revoked_at = True, at
        return _key(row)

    def key_holder(self, key_id: str, loan_id: int | None) -> KeyHolder | None:
        row = self._holder((_KEY_HOLDER, KEY_HOLDER_AND_STAMP), {"key_id": key_id}, loan_id)
        return None if row is None else key_holder_of(row, loan_id)

    def note_key_use(self, key_id: str, at: datetime, noted_before: datetime) -> None:
        self.session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id,
                   or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at <= noted_before))
            .values(last_used_at=at)
            .execution_options(synchronize_session=False)
        )  # fmt: skip

    def add_session(self, token_hash: str, kind: str, subject: str, csrf: str,
                    expires_at: datetime) -> None:  # fmt: skip
        self.session.add(SessionRow(token_hash=token_hash, kind=kind, subject=subject, csrf=csrf,
                                    expires_at=expires_at))  # fmt: skip

    def session_holder(self, token_hash: str, loan_id: int | None) -> SessionHolder | None:
        statements = (_SESSION_HOLDER, SESSION_HOLDER_AND_STAMP)
        row = self._holder(statements, {"token_hash": token_hash}, loan_id)
        return None if row is None else session_holder_of(row, loan_id)

    def end_session(self, token_hash: str) -> None:
        self.session.execute(delete(SessionRow).where(SessionRow.token_hash == token_hash))

    def keep_code(self, phone: str, code_hash: str, expires_at: datetime) -> None:
        values = {"code_hash": code_hash, "attempts": 0, "expires_at": expires_at}
        statement = upsert(self.session, SignInCodeRow).values(phone=phone, **values)
        self.session.execute(statement.on_conflict_do_update(index_elements=["phone"], set_=values))

    def try_code(self, phone: str, at: datetime, attempts: int) -> str | None:
        code = SignInCodeRow
        return self.session.scalar(
            update(code)
            .where(code.phone == phone, code.attempts < attempts, code.expires_at > at)
            .values(attempts=code.attempts + 1)
            .returning(code.code_hash)
            .execution_options(synchronize_session=False)
        )

    def code_expires(self, phone: str) -> datetime | None:
        row = self.session.get(SignInCodeRow, phone)
        return None if row is None else row.expires_at

    def use_code(self, phone: str, code_hash: str) -> bool:
        used = self.session.scalar(delete(SignInCodeRow).returning(SignInCodeRow.phone).where(
            SignInCodeRow.phone == phone, SignInCodeRow.code_hash == code_hash))  # fmt: skip
        return used is not None

    def prune_codes(self, at: datetime) -> None:
        dead = select(SignInCodeRow.phone).where(SignInCodeRow.expires_at < at)
        self.session.execute(delete(SignInCodeRow).where(
            SignInCodeRow.phone.in_(dead.with_for_update(skip_locked=True))))  # fmt: skip

    def _holder(
        self, statements: tuple[Select[Any], Select[Any]], keys: dict[str, Any], loan_id: int | None
    ) -> Row[Any] | None:
        """The credential's row by ``keys``: with the plan's stamp (the second statement) when
        a plan is asked about."""
        if loan_id is None:
            return self.session.connection().execute(statements[0], keys).first()
        statement, keys = statements[1], {**keys, "loan_id": loan_id}
        return self.session.connection().execute(statement, keys).first()
