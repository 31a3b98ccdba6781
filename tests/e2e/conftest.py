"""A database ``fenqi db init`` made, for the command-line tests that start from one."""

import shutil
from pathlib import Path

import pytest

from tests.e2e.cli import Initialised, fenqi


@pytest.fixture(scope="session")
def initialised_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file made by the real ``fenqi db init`` once a session (under pytest-xdist, once
    a worker): each command is a child process that costs about a second to start, and what
    ``db init`` makes is the same every time (its own tests are in test_cli_db.py)."""
    path = tmp_path_factory.mktemp("initialised") / "fenqi.sqlite3"
    assert fenqi("db", "init", "--db", f"sqlite:///{path}", "--json").json()["products_loaded"] == 5
    return path


@pytest.fixture(scope="session")
def initialise(initialised_sqlite: Path) -> Initialised:
    """Puts a copy of the initialised database at a path; returns its URL."""

    def copy(path: Path) -> str:
        shutil.copyfile(initialised_sqlite, path)
        return f"sqlite:///{path}"

    return copy
