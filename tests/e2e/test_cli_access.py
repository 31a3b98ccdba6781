"""``fenqi user`` and ``fenqi apikey`` through the real command: a password only from a prompt
or standard input, never an argument; operators listed and disabled, keys listed (never their
secrets) and revoked, each change in the audit log."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fenqi.cli import app, serve
from fenqi.services import audit, credentials, policy
from fenqi.services.context import Context
from fenqi.store.database import make_engine
from fenqi.wire import present
from tests.e2e.cli import Initialised, fenqi, refused
from tests.simulated import simulated_context

PASSWORD = "a long password"


@pytest.fixture
def url(tmp_path: Path, initialise: Initialised) -> str:
    return initialise(tmp_path / "fenqi.sqlite3")


def create(
    url: str, username: str, role: str = "agent", password: str = PASSWORD
) -> dict[str, str]:
    made = fenqi("user", "create", "--username", username, "--role", role, "--password-stdin",
                 "--db", url, "--json", stdin=f"{password}\n")  # fmt: skip
    return dict(made.json())


@contextmanager
def services(url: str) -> Iterator[Context]:
    """The services on the database the commands wrote, to check what they did."""
    engine = make_engine(url)
    try:
        yield simulated_context(engine, actor="test")
    finally:
        engine.dispose()


def signs_in(url: str, username: str, password: str) -> bool:
    with services(url) as context:
        try:
            credentials.sign_in_operator(context, username, password)
        except policy.UnauthenticatedError:
            return False
    return True


def test_a_password_is_read_from_standard_input_not_the_command_line(url: str) -> None:
    assert create(url, "agent") == {"username": "agent", "role": "agent"}
    assert signs_in(url, "agent", PASSWORD)
    on_the_line = fenqi("user", "create", "--username", "bob", "--role", "agent",
                        "--password", PASSWORD, "--db", url)  # fmt: skip
    refused(on_the_line, "--password is not accepted")
    assert "--password-stdin" in on_the_line.err
    no_terminal = fenqi("user", "create", "--username", "bob", "--role", "agent", "--db", url)
    refused(no_terminal, "no terminal to ask for the password on")
    too_short = fenqi("user", "create", "--username", "bob", "--role", "agent",
                      "--password-stdin", "--db", url, stdin="short\n")  # fmt: skip
    refused(too_short, "at least 8 characters")
    names = [user["username"] for user in fenqi("user", "list", "--db", url, "--json").json()]
    assert names == ["agent"]


def test_a_password_is_asked_for_twice_without_echo(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "_has_terminal", lambda: True)
    typed = "first try\nmistyped\na long password\na long password\n"
    result = CliRunner().invoke(app, ["user", "create", "--username", "agent", "--role", "agent",
                                      "--db", url, "--json"], input=typed)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert PASSWORD not in result.output  # never echoed
    assert signs_in(url, "agent", PASSWORD)


def test_operators_are_listed_and_disabled(url: str) -> None:
    create(url, "agent")
    create(url, "boss", "admin")
    listed = fenqi("user", "list", "--db", url, "--json").json()
    assert [(user["username"], user["role"], user["status"]) for user in listed] == [
        ("agent", "agent", "active"), ("boss", "admin", "active")]  # fmt: skip
    disabled = fenqi("user", "disable", "agent", "--db", url, "--json").json()
    assert (disabled["status"], disabled["disabled_at"] is not None) == ("disabled", True)
    assert not signs_in(url, "agent", PASSWORD)
    refused(fenqi("user", "disable", "agent", "--db", url), "already disabled")
    refused(fenqi("user", "disable", "nobody", "--db", url), "no user nobody")
    table = fenqi("user", "list", "--db", url)
    assert table.code == 0, table.err
    assert "disabled" in table.out
    with services(url) as context:
        logged = [entry["action"] for entry in present(audit.audit_log(context, "user:agent"))]
    assert logged == ["user.disable", "user.create"]


def test_api_keys_are_listed_without_secrets_and_revoked(url: str) -> None:
    create(url, "agent")
    create(url, "boss", "admin")
    first = fenqi("apikey", "create", "--username", "agent", "--db", url, "--json").json()
    second = fenqi("apikey", "create", "--username", "boss", "--db", url, "--json").json()
    secret = first["api_key"].split("_", 2)[2]
    listed = fenqi("apikey", "list", "--db", url, "--json")
    assert secret not in listed.out
    assert [(key["key_id"], key["username"], key["revoked"]) for key in listed.json()] == [
        (first["key_id"], "agent", False), (second["key_id"], "boss", False)]  # fmt: skip
    assert set(listed.json()[0]) == {"key_id", "username", "revoked", "created_at",
                                     "last_used_at", "revoked_at"}  # fmt: skip
    only = fenqi("apikey", "list", "--username", "boss", "--db", url, "--json").json()
    assert [key["key_id"] for key in only] == [second["key_id"]]
    revoked = fenqi("apikey", "revoke", first["key_id"], "--db", url, "--json").json()
    assert revoked["revoked"] is True
    with services(url) as context:
        with pytest.raises(policy.UnauthenticatedError):
            credentials.principal_for_key(context, first["api_key"])
        logged = [entry["action"] for entry in present(audit.audit_log(context, "user:agent"))]
    assert logged[:2] == ["apikey.revoke", "apikey.create"]
    refused(fenqi("apikey", "revoke", first["key_id"], "--db", url), "already revoked")
    refused(fenqi("apikey", "revoke", "nosuchkey", "--db", url), "no API key nosuchkey")
    table = fenqi("apikey", "list", "--db", url)
    assert table.code == 0, table.err
    assert first["key_id"] in table.out
    assert secret not in table.out
