"""Sign-in's rules over credentials kept in memory (``tests.memory``): operators, their keys
and sessions, borrowers' one-time codes, and what each refusal says. That tries arriving at once
are all counted, and that a bill view's check is one statement, are the database's to show
(tests/integration/test_sign_in.py, test_kept_bills.py)."""

import threading
from dataclasses import replace

import pytest

from fenqi.domain.money import Money
from fenqi.services import borrowers, credentials
from fenqi.services.context import Context, caller_and_stamp
from fenqi.services.credentials import Presented
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import ForbiddenError, Role, UnauthenticatedError
from fenqi.services.throttles import TooManyAttemptsError
from fenqi.wire import document, present
from tests.memory import MemoryUnits
from tests.sign_in_clock import START, Clock

PHONE = "13800000001"
PASSWORD = "a long password"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def units() -> MemoryUnits:
    units = MemoryUnits()
    admin = units.context("setup")
    borrowers.create_borrower(admin, "王芳", PHONE, Money.parse("1000"))
    credentials.create_user(admin, "agent", PASSWORD, Role.AGENT)
    return units


def presenting(units: MemoryUnits, token: str) -> Context:
    """A context acting for whoever ``token`` (a key or a session) belongs to, unchecked."""
    return replace(units.context(), principal=None, credential=Presented(token))


def last_code(units: MemoryUnits) -> str:
    return "".join(char for char in units.world.sent[-1].text if char.isdigit())[:6]


def test_operators_are_made_by_admins_with_a_plain_name_and_a_long_password(
    units: MemoryUnits, clock: Clock
) -> None:
    admin = units.context("setup")
    with pytest.raises(RefusedError, match="not a user name"):
        credentials.create_user(admin, "has space", PASSWORD, Role.VIEWER)
    with pytest.raises(RefusedError, match="at least 8"):
        credentials.create_user(admin, "viewer", "short", Role.VIEWER)
    with pytest.raises(RefusedError, match="already exists"):
        credentials.create_user(admin, "agent", PASSWORD, Role.VIEWER)
    assert present(credentials.create_user(admin, "viewer", PASSWORD, Role.VIEWER)) == {
        "username": "viewer", "role": "viewer"}  # fmt: skip
    token, _ = credentials.sign_in_operator(admin, "agent", PASSWORD)
    with pytest.raises(ForbiddenError):
        credentials.create_user(presenting(units, token), "other", PASSWORD, Role.ADMIN)
    assert [user.username for user in credentials.list_users(admin)] == ["agent", "viewer"]
    assert [entry.action for entry in units(lambda unit: unit.audit_entries(None, 2))] == [
        "user.create", "user.create"]  # fmt: skip
    assert all("hash" not in key for user in present(credentials.list_users(admin)) for key in user)


def test_a_wrong_password_is_counted_and_a_right_one_gives_its_try_back(
    units: MemoryUnits, clock: Clock
) -> None:
    context = units.context()
    for _ in range(credentials.PASSWORD_TRIES.times + 2):
        credentials.sign_in_operator(context, "agent", PASSWORD)
    for name in ("agent", "nobody"):
        for _ in range(credentials.PASSWORD_TRIES.times):
            with pytest.raises(UnauthenticatedError, match="user name or the password is wrong"):
                credentials.sign_in_operator(context, name, "not it")
        with pytest.raises(TooManyAttemptsError):
            credentials.sign_in_operator(context, name, PASSWORD)
    clock.advance(minutes=15)
    token, csrf = credentials.sign_in_operator(context, "agent", PASSWORD)
    assert credentials.principal_for_session(context, token) == (
        credentials.principal_for_session(context, token)[0], csrf)  # fmt: skip
    assert credentials.principal_for_session(context, token)[0].role is Role.AGENT


def test_a_session_ends_when_signed_out_or_expired(units: MemoryUnits, clock: Clock) -> None:
    context = units.context()
    token, _ = credentials.sign_in_operator(context, "agent", PASSWORD)
    later, _ = credentials.sign_in_operator(context, "agent", PASSWORD)
    credentials.sign_out(context, token)
    with pytest.raises(UnauthenticatedError, match="sign in again"):
        credentials.principal_for_session(context, token)
    clock.advance(hours=credentials.SESSION_HOURS, seconds=1)
    with pytest.raises(UnauthenticatedError, match="sign in again"):
        credentials.principal_for_session(context, later)
    with pytest.raises(UnauthenticatedError):
        credentials.principal_for_session(context, "never issued")


def test_disabling_an_operator_ends_her_sessions_only(units: MemoryUnits, clock: Clock) -> None:
    admin = units.context()
    credentials.create_user(admin, "other", PASSWORD, Role.VIEWER)
    mine = [credentials.sign_in_operator(admin, "agent", PASSWORD)[0] for _ in range(2)]
    theirs, _ = credentials.sign_in_operator(admin, "other", PASSWORD)
    clock.advance(minutes=1)
    done = document(credentials.disable_user(admin, "agent"))
    assert (done["disabled_at"], done["sessions_ended"]) == (clock.moment.isoformat(), 2)
    assert credentials.principal_for_session(admin, theirs)[0].name == "other"
    for token in mine:
        with pytest.raises(UnauthenticatedError, match="sign in again"):
            credentials.principal_for_session(admin, token)
    assert [user["status"] for user in present(credentials.list_users(admin))] == [
        "disabled", "active"]  # fmt: skip


def test_keys_are_listed_without_secrets_noted_hourly_and_revoked(
    units: MemoryUnits, clock: Clock
) -> None:
    admin = units.context()
    made = credentials.create_api_key(admin, "agent")
    assert made.api_key.startswith(f"fq_{made.key_id}_")
    with pytest.raises(NotFoundError):
        credentials.create_api_key(admin, "nobody")
    credentials.principal_for_key(admin, made.api_key)
    used = clock.moment.isoformat()
    clock.advance(minutes=59)
    credentials.principal_for_key(admin, made.api_key)
    listed = present(credentials.list_api_keys(admin, "agent"))
    assert [(key["key_id"], key["last_used_at"]) for key in listed] == [(made.key_id, used)]
    secret = made.api_key.removeprefix(f"fq_{made.key_id}_")
    assert not any(secret in str(value) for key in listed for value in key.values())
    clock.advance(minutes=1)
    credentials.principal_for_key(admin, made.api_key)
    assert present(credentials.list_api_keys(admin))[0]["last_used_at"] == clock.moment.isoformat()
    last = "y" if made.api_key.endswith("x") else "x"  # a key one character off
    with pytest.raises(UnauthenticatedError, match="not valid"):
        credentials.principal_for_key(admin, made.api_key[:-1] + last)
    revoked = document(credentials.revoke_api_key(admin, made.key_id))
    assert (revoked["revoked"], revoked["revoked_at"]) == (True, clock.moment.isoformat())
    with pytest.raises(UnauthenticatedError, match="not valid"):
        credentials.principal_for_key(admin, made.api_key)
    with pytest.raises(RefusedError, match="already revoked"):
        credentials.revoke_api_key(admin, made.key_id)
    with pytest.raises(NotFoundError):
        credentials.revoke_api_key(admin, "0123456789ab")
    assert credentials.list_api_keys(admin, "nobody") == []


def test_a_presented_credential_is_checked_in_the_unit_of_work_with_the_plans_stamp(
    units: MemoryUnits, clock: Clock
) -> None:
    key = credentials.create_api_key(units.context(), "agent").api_key
    context = presenting(units, key)
    with pytest.raises(NotFoundError, match="no loan 7"):
        units(lambda unit: caller_and_stamp(context, unit, 7))
    assert credentials.list_users(units.context())[0].username == "agent"
    with pytest.raises(ForbiddenError):
        credentials.list_users(context)
    with pytest.raises(UnauthenticatedError):
        credentials.list_users(presenting(units, "fq_nothing_here"))


def test_a_borrower_signs_in_once_with_the_code_texted_to_her(
    units: MemoryUnits, clock: Clock
) -> None:
    context = units.context()
    answer = {"sent": True, "expires_in_minutes": credentials.CODE_MINUTES,
              "again_in_seconds": credentials.RESEND.seconds}  # fmt: skip
    assert present(credentials.send_sign_in_code(context, PHONE)) == answer
    (text,) = units.world.sent
    assert (text.loan_id, text.borrower_id, text.phone, text.sent_at) == (0, 1, PHONE, START)
    code = last_code(units)
    credentials.texts_handed_over()
    assert units.sms.handed == [(PHONE, text.text)]  # the gateway got it, code and all
    assert code in text.text
    assert code not in str(units.world.codes)  # kept as a hash only
    token, csrf = credentials.sign_in_borrower(context, PHONE, code)
    assert credentials.principal_for_session(context, token) == (
        credentials.principal_for_session(context, token)[0], csrf)  # fmt: skip
    who = credentials.principal_for_session(context, token)[0]
    assert (who.name, who.borrower_id) == ("borrower:1", 1)
    with pytest.raises(UnauthenticatedError, match="not valid"):
        credentials.sign_in_borrower(context, PHONE, code)


def test_a_phone_that_is_no_borrowers_is_answered_alike_and_texted_nothing(
    units: MemoryUnits, clock: Clock
) -> None:
    context = units.context()
    answer = credentials.send_sign_in_code(context, "13911112222")
    assert answer == credentials.send_sign_in_code(context, PHONE)
    assert [text.phone for text in units.world.sent] == [PHONE]
    assert set(units.world.codes) == {PHONE, "13911112222"}
    credentials.texts_handed_over()
    assert [phone for phone, _ in units.sms.handed] == [PHONE]


class Slow:
    """A gateway that answers only when the test lets it, and then, if told to, fails."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.go, self.failure = threading.Event(), failure
        self.handed: list[str] = []

    def send(self, phone: str, text: str) -> str:
        assert self.go.wait(30), "the test never let the gateway answer"
        if self.failure is not None:
            raise self.failure
        self.handed.append(phone)
        return "slow:1"


@pytest.mark.parametrize("failure", [None, TimeoutError("no answer")])
def test_the_code_goes_to_the_gateway_after_the_answer_and_a_failing_gateway_stops_nothing(
    units: MemoryUnits, clock: Clock, failure: Exception | None
) -> None:
    """The answer does not wait for the gateway (it would tell by its timing that a phone is a
    borrower's): the request returns while the gateway still holds the text; a gateway that
    then fails is logged, and the borrower simply asks again."""
    gateway = Slow(failure)
    context = replace(units.context(), sms=gateway)
    answer = credentials.send_sign_in_code(context, PHONE)
    assert present(answer) == {"sent": True, "expires_in_minutes": credentials.CODE_MINUTES,
                               "again_in_seconds": credentials.RESEND.seconds}  # fmt: skip
    assert gateway.handed == []  # answered before the gateway was done
    gateway.go.set()
    credentials.texts_handed_over()
    assert gateway.handed == ([] if failure else [PHONE])
    clock.advance(minutes=1)
    assert credentials.send_sign_in_code(context, PHONE) == answer


def test_new_codes_come_once_a_minute_and_ten_a_day(units: MemoryUnits, clock: Clock) -> None:
    context = units.context()
    credentials.send_sign_in_code(context, PHONE)
    credentials.send_sign_in_code(context, PHONE)
    assert len(units.world.sent) == 1
    for _ in range(credentials.CODES_PER_DAY.times):
        clock.advance(minutes=1)
        credentials.send_sign_in_code(context, PHONE)
    assert len(units.world.sent) == credentials.CODES_PER_DAY.times


def test_a_new_code_comes_with_fresh_tries_and_the_old_one_is_gone(
    units: MemoryUnits, clock: Clock
) -> None:
    context = units.context()
    credentials.send_sign_in_code(context, PHONE)
    first = last_code(units)
    for _ in range(credentials.CODE_ATTEMPTS):
        with pytest.raises(UnauthenticatedError):
            credentials.sign_in_borrower(context, PHONE, "not a code")
    with pytest.raises(TooManyAttemptsError) as locked:
        credentials.sign_in_borrower(context, PHONE, first)
    assert locked.value.retry_after == credentials.RESEND.seconds
    clock.advance(seconds=credentials.RESEND.seconds)
    credentials.send_sign_in_code(context, PHONE)
    second = last_code(units)
    if first != second:
        with pytest.raises(UnauthenticatedError):
            credentials.sign_in_borrower(context, PHONE, first)
    credentials.sign_in_borrower(context, PHONE, second)


def test_an_expired_code_is_only_wrong_and_is_forgotten(units: MemoryUnits, clock: Clock) -> None:
    context = units.context()
    credentials.send_sign_in_code(context, PHONE)
    code = last_code(units)
    clock.advance(minutes=credentials.CODE_MINUTES)
    with pytest.raises(UnauthenticatedError, match="not valid"):
        credentials.sign_in_borrower(context, PHONE, code)
    clock.advance(days=3)
    credentials.send_sign_in_code(context, "13911112222")
    assert set(units.world.codes) == {"13911112222"}
