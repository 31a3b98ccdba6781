"""A command whose database fails under it, not only when it connects, ends in one line on
stderr and exit code 1, never a traceback or the statement's parameters."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from fenqi.cli import main
from fenqi.services import servicing
from fenqi.services.errors import ConflictError

PHONE = "13955556666"


def lost(*_args: Any, **_kwargs: Any) -> None:
    cause = psycopg.OperationalError("consuming input failed: server closed the connection "
                                     "unexpectedly\n\tThis probably means the server terminated")  # fmt: skip
    raise OperationalError("SELECT * FROM borrowers WHERE phone = %(phone)s", {"phone": PHONE},
                           cause)  # fmt: skip


def pool_empty(*_args: Any, **_kwargs: Any) -> None:
    raise PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached, timeout 2.00")


def contended(*_args: Any, **_kwargs: Any) -> None:
    raise ConflictError("other requests kept changing the same records; send it again")


@pytest.mark.parametrize(
    ("failure", "says"),
    [(lost, "server closed the connection unexpectedly"), (pool_empty, "QueuePool limit"),
     (contended, "send it again")],
)  # fmt: skip
def test_a_database_failing_mid_command_is_one_line_and_exit_1(
    engine: Engine,
    failure: Any,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(servicing, "show_loan", failure)  # the schema check passed; then this
    with pytest.raises(SystemExit) as ended:
        main(["loan", "show", "1", "--db", engine.url.render_as_string(hide_password=False)])
    assert ended.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fenqi: error: ")
    assert says in lines[0]
    assert PHONE not in err


def test_a_bug_no_handler_names_is_one_line_and_exit_3_without_its_data(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise KeyError(PHONE)  # what a bug's message may hold: never printed

    monkeypatch.setattr(servicing, "show_loan", broken)
    with pytest.raises(SystemExit) as ended:
        main(["loan", "show", "1", "--db", engine.url.render_as_string(hide_password=False)])
    assert ended.value.code == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        "fenqi: error: internal error (KeyError): the command stopped; what it had committed "
        "stands (fenqi ledger check shows the books)"
    ]
