"""Signing in under attack, on SQLite and PostgreSQL: a try is counted atomically before it is
checked, so however many arrive at once no more than the limit are ever checked; new codes and
their daily cap hold under simultaneous requests; a known and an unknown account answer alike
and take the same time; operators can be disabled and API keys revoked, at once."""

import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fenqi.domain.money import Money
from fenqi.services import borrowers, credentials
from fenqi.services.context import Context
from fenqi.services.errors import NotFoundError, RefusedError
from fenqi.services.policy import Role, UnauthenticatedError
from fenqi.services.throttles import Limit, TooManyAttemptsError
from fenqi.store.schema import SignInCodeRow, SignInThrottleRow, SmsSentRow
from fenqi.wire import document, present
from tests.sign_in_clock import Clock
from tests.simulated import simulated_context

PHONE = "13800000001"
PASSWORD = "a long password"
AT_ONCE = 40  # simultaneous requests, each from its own thread


@pytest.fixture
def context(engine: Engine) -> Context:
    made = simulated_context(engine, actor="setup")
    borrowers.create_borrower(made, "王芳", PHONE, Money.parse("1000"))
    credentials.create_user(made, "agent", PASSWORD, Role.AGENT)
    return made


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def at_once(calls: list[Callable[[], Any]]) -> list[str]:
    """Runs every call in its own thread, released together; what each one came to."""
    start = threading.Barrier(len(calls))

    def one(call: Callable[[], Any]) -> str:
        start.wait()
        try:
            call()
        except TooManyAttemptsError:
            return "locked"
        except UnauthenticatedError:
            return "wrong"
        return "in"

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def texts(engine: Engine, phone: str = PHONE) -> list[str]:
    with Session(engine) as session:
        query = select(SmsSentRow.text).where(SmsSentRow.phone == phone).order_by(SmsSentRow.id)
        return list(session.scalars(query))


def last_code(engine: Engine, phone: str = PHONE) -> str:
    return "".join(char for char in texts(engine, phone)[-1] if char.isdigit())[:6]


class Compared:
    """The guesses that got as far as being compared with the code (the digest of a guess is
    taken only to compare it), recorded from every thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.guesses: list[str] = []
        digest = credentials._digest

        def counted(secret: str) -> str:
            if secret.startswith(f"{PHONE}:"):
                self.guesses.append(secret.removeprefix(f"{PHONE}:"))
            return digest(secret)

        monkeypatch.setattr(credentials, "_digest", counted)


# -- item 8: counted before compared --------------------------------------------------------------


def test_simultaneous_code_guesses_are_counted_before_any_is_compared(
    context: Context, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty guesses at once, the right code among them at a random place, trial after trial:
    at most CODE_ATTEMPTS are ever compared, and the right code gets in only if it was one of
    them."""
    for _ in range(6):
        clock.advance(minutes=2)  # a new code may be asked for
        credentials.send_sign_in_code(context, PHONE)
        code = last_code(context.engine)
        guesses = random.sample([f"{n:06d}" for n in range(10**6) if f"{n:06d}" != code],
                                AT_ONCE - 1)  # fmt: skip
        right = random.randrange(AT_ONCE)
        guesses.insert(right, code)
        with monkeypatch.context() as patched:
            compared = Compared(patched)
            outcomes = at_once(
                [lambda g=g: credentials.sign_in_borrower(context, PHONE, g) for g in guesses]
            )
        assert len(compared.guesses) <= credentials.CODE_ATTEMPTS, compared.guesses
        assert outcomes.count("in") == (1 if code in compared.guesses else 0)
        assert (outcomes[right] == "in") == (code in compared.guesses)
        if code not in compared.guesses:  # every try used up, the rest refused unchecked
            assert outcomes.count("wrong") == credentials.CODE_ATTEMPTS
            assert outcomes.count("locked") == AT_ONCE - credentials.CODE_ATTEMPTS


def test_a_code_is_used_once_even_by_twin_requests(context: Context, clock: Clock) -> None:
    credentials.send_sign_in_code(context, PHONE)
    code = last_code(context.engine)
    outcomes = at_once([lambda: credentials.sign_in_borrower(context, PHONE, code)] * 3)
    assert sorted(outcomes) == ["in", "wrong", "wrong"]


def test_a_code_with_its_tries_used_up_is_locked_until_a_new_one_may_be_asked_for(
    context: Context, clock: Clock
) -> None:
    credentials.send_sign_in_code(context, PHONE)
    code = last_code(context.engine)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(credentials.CODE_ATTEMPTS):
        with pytest.raises(UnauthenticatedError):
            credentials.sign_in_borrower(context, PHONE, wrong)
    clock.advance(seconds=20)
    with pytest.raises(TooManyAttemptsError, match="ask for a new code") as locked:
        credentials.sign_in_borrower(context, PHONE, code)
    assert locked.value.retry_after == credentials.RESEND.seconds - 20
    clock.advance(seconds=40)
    credentials.send_sign_in_code(context, PHONE)
    credentials.sign_in_borrower(context, PHONE, last_code(context.engine))


def test_simultaneous_requests_send_one_code_a_minute(context: Context, clock: Clock) -> None:
    at_once([lambda: credentials.send_sign_in_code(context, PHONE)] * AT_ONCE)
    assert len(texts(context.engine)) == 1
    clock.advance(seconds=59)
    credentials.send_sign_in_code(context, PHONE)
    assert len(texts(context.engine)) == 1
    clock.advance(seconds=1)
    credentials.send_sign_in_code(context, PHONE)
    assert len(texts(context.engine)) == 2


def test_simultaneous_requests_stay_under_the_daily_cap(
    context: Context, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credentials, "RESEND", Limit("code-resend", 1, 0))  # only the day's cap
    at_once([lambda: credentials.send_sign_in_code(context, PHONE)] * AT_ONCE)
    assert len(texts(context.engine)) == credentials.CODES_PER_DAY.times
    clock.advance(hours=23, minutes=59)
    credentials.send_sign_in_code(context, PHONE)
    assert len(texts(context.engine)) == credentials.CODES_PER_DAY.times
    clock.advance(minutes=1)  # a new day's window
    credentials.send_sign_in_code(context, PHONE)
    assert len(texts(context.engine)) == credentials.CODES_PER_DAY.times + 1


# -- item 9: throttles and lockouts ---------------------------------------------------------------


def test_simultaneous_password_guesses_are_counted_before_any_is_checked(
    context: Context, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty wrong passwords at once for a user, and forty for a name nobody has: each gets the
    same answers, ten checked and wrong, thirty refused unchecked; then even the right password
    waits for the window to end."""
    checked: list[str] = []
    matches = credentials.password_matches

    def counted(password: str, stored: str) -> bool:
        checked.append(password)
        return matches(password, stored)

    monkeypatch.setattr(credentials, "password_matches", counted)
    answers = {}
    for name in ("agent", "nobody"):
        checked.clear()
        outcomes = at_once([lambda n=n, name=name: credentials.sign_in_operator(
            context, name, f"guess {n}") for n in range(AT_ONCE)])  # fmt: skip
        assert len(checked) == credentials.PASSWORD_TRIES.times
        answers[name] = Counter(outcomes)
    assert answers["agent"] == answers["nobody"] == {"wrong": 10, "locked": 30}
    clock.advance(minutes=14, seconds=50)
    with pytest.raises(TooManyAttemptsError) as locked:
        credentials.sign_in_operator(context, "agent", PASSWORD)
    assert locked.value.retry_after == 10
    clock.advance(seconds=10)
    credentials.sign_in_operator(context, "agent", PASSWORD)


def test_a_right_password_gives_its_try_back(context: Context, clock: Clock) -> None:
    """The limit counts failures: signing in many times is no lockout."""
    for _ in range(credentials.PASSWORD_TRIES.times + 5):
        credentials.sign_in_operator(context, "agent", PASSWORD, "198.51.100.7")


def test_one_address_is_limited_across_accounts(context: Context, clock: Clock) -> None:
    here, there = "203.0.113.9", "198.51.100.7"
    for n in range(credentials.ADDRESS_TRIES.times):
        with pytest.raises(UnauthenticatedError):
            credentials.sign_in_borrower(context, f"1390000{n:04d}", "123456", here)
    with pytest.raises(TooManyAttemptsError):
        credentials.sign_in_borrower(context, "13911112222", "123456", here)
    with pytest.raises(TooManyAttemptsError):  # passwords from that address too
        credentials.sign_in_operator(context, "agent", PASSWORD, here)
    credentials.sign_in_operator(context, "agent", PASSWORD, there)
    clock.advance(minutes=15)
    credentials.sign_in_operator(context, "agent", PASSWORD, here)


def test_one_address_asks_for_a_limited_number_of_codes(context: Context, clock: Clock) -> None:
    here = "203.0.113.9"
    for n in range(credentials.CODE_REQUESTS.times):
        assert credentials.send_sign_in_code(context, f"1390000{n:04d}", here).sent
    with pytest.raises(TooManyAttemptsError):
        credentials.send_sign_in_code(context, PHONE, here)
    assert texts(context.engine) == []
    assert credentials.send_sign_in_code(context, PHONE, "198.51.100.7").sent


def test_the_counters_keep_no_phone_name_or_address_in_clear(
    context: Context, clock: Clock
) -> None:
    credentials.send_sign_in_code(context, PHONE, "203.0.113.9")
    with pytest.raises(UnauthenticatedError):
        credentials.sign_in_operator(context, "agent", "not it", "203.0.113.9")
    with Session(context.engine) as session:
        keys = session.scalars(select(SignInThrottleRow.key)).all()
    assert len(keys) == 5  # codes from the address, resend, day; password by name, by address
    assert not any(secret in key for key in keys for secret in (PHONE, "agent", "203.0.113"))


def test_expired_codes_and_old_windows_are_forgotten(context: Context, clock: Clock) -> None:
    credentials.send_sign_in_code(context, PHONE, "203.0.113.9")
    clock.advance(days=3)
    credentials.send_sign_in_code(context, "13911112222")
    with Session(context.engine) as session:
        assert session.scalars(select(SignInCodeRow.phone)).all() == ["13911112222"]
        assert len(session.scalars(select(SignInThrottleRow.key)).all()) == 2


def timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    with suppress(UnauthenticatedError):
        call()
    return time.perf_counter() - began


def similar(first: list[float], second: list[float]) -> None:
    """Medians within 1.5 times each other, give or take 5 ms of noise."""
    a, b = statistics.median(first), statistics.median(second)
    assert max(a, b) <= 1.5 * min(a, b) + 0.005, (a, b)


def test_a_known_and_an_unknown_user_take_the_same_time(context: Context) -> None:
    known, unknown = [], []
    for n in range(9):  # under the user's limit of ten failures
        known.append(timed(lambda: credentials.sign_in_operator(context, "agent", "not it")))
        unknown.append(timed(lambda n=n: credentials.sign_in_operator(context, f"nobody{n}", "x")))
    similar(known, unknown)


def test_a_known_and_an_unknown_phone_take_the_same_time(context: Context) -> None:
    phones = [f"1370000{n:04d}" for n in range(15)]
    for phone in phones:
        borrowers.create_borrower(context, "李雷", phone, Money.parse("1000"))
    known, unknown = [], []
    for n, phone in enumerate(phones):  # a code goes out to each known phone
        known.append(timed(lambda phone=phone: credentials.send_sign_in_code(context, phone)))
        unknown.append(timed(lambda n=n: credentials.send_sign_in_code(context, f"1360000{n:04d}")))
    similar(known, unknown)
    assert all(len(texts(context.engine, phone)) == 1 for phone in phones)


# -- item 11: disabled users and revoked keys ------------------------------------------------------


def test_a_disabled_operator_is_stopped_at_once(context: Context, clock: Clock) -> None:
    key = credentials.create_api_key(context, "agent")
    token, _ = credentials.sign_in_operator(context, "agent", PASSWORD)
    assert credentials.principal_for_key(context, key.api_key).name == "agent"
    assert credentials.principal_for_session(context, token)[0].name == "agent"
    done = document(credentials.disable_user(context, "agent"))
    assert (done["status"], done["sessions_ended"]) == ("disabled", 1)
    with pytest.raises(UnauthenticatedError, match="not valid"):
        credentials.principal_for_key(context, key.api_key)
    with pytest.raises(UnauthenticatedError):
        credentials.principal_for_session(context, token)
    with pytest.raises(UnauthenticatedError, match="the user name or the password is wrong"):
        credentials.sign_in_operator(context, "agent", PASSWORD)
    with pytest.raises(RefusedError, match="already disabled"):
        credentials.disable_user(context, "agent")
    with pytest.raises(RefusedError, match="disabled"):
        credentials.create_api_key(context, "agent")
    with pytest.raises(NotFoundError):
        credentials.disable_user(context, "nobody")
    listed = {user["username"]: user["status"] for user in present(credentials.list_users(context))}
    assert listed == {"agent": "disabled"}


def test_api_keys_are_listed_without_secrets_and_revoked_at_once(
    context: Context, clock: Clock
) -> None:
    credentials.create_user(context, "admin", PASSWORD, Role.ADMIN)
    first = credentials.create_api_key(context, "agent")
    clock.advance(seconds=1)
    second = credentials.create_api_key(context, "admin")
    credentials.principal_for_key(context, first.api_key)
    listed = present(credentials.list_api_keys(context))
    assert [key["key_id"] for key in listed] == [first.key_id, second.key_id]
    used = clock.moment.isoformat()
    assert listed[0]["last_used_at"] == used
    assert listed[1]["last_used_at"] is None
    # The secret is URL-safe base64 and may itself hold "_": cut the known prefix, not at "_".
    secret = first.api_key.removeprefix(f"fq_{first.key_id}_")
    assert not any(secret in str(key) for key in listed)
    assert [key.key_id for key in credentials.list_api_keys(context, "admin")] == [second.key_id]
    clock.advance(minutes=30)
    credentials.principal_for_key(context, first.api_key)  # written once an hour, not each time
    assert present(credentials.list_api_keys(context, "agent"))[0]["last_used_at"] == used
    revoked = document(credentials.revoke_api_key(context, first.key_id))
    assert (revoked["revoked"], revoked["revoked_at"]) == (True, clock.moment.isoformat())
    with pytest.raises(UnauthenticatedError):
        credentials.principal_for_key(context, first.api_key)
    assert credentials.principal_for_key(context, second.api_key).name == "admin"
    with pytest.raises(RefusedError, match="already revoked"):
        credentials.revoke_api_key(context, first.key_id)
    with pytest.raises(NotFoundError):
        credentials.revoke_api_key(context, "0123456789ab")


@pytest.mark.parametrize("name", ["", "has space", "名字", "a" * 65, "-leading"])
def test_a_user_name_is_plain_ascii(context: Context, name: str) -> None:
    with pytest.raises(RefusedError, match="not a user name"):
        credentials.create_user(context, name, PASSWORD, Role.VIEWER)
