"""Runs the real ``fenqi`` command in a child process, as a user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Puts a copy of a database `fenqi db init` made at a path; returns its URL (tests/e2e/conftest.py).
Initialised = Callable[[Path], str]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


def fenqi(*args: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> Run:
    """``fenqi`` with ``args``, in the test's environment plus ``env`` (e.g. ``FENQI_TODAY``);
    ``stdin`` is what is piped in (else nothing: no terminal)."""
    done = subprocess.run(
        [sys.executable, "-m", "fenqi", *args],
        input=stdin or "",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return Run(done.returncode, done.stdout, done.stderr)


def on(day: str) -> dict[str, str]:
    """The environment of a command run on ``day`` (``FENQI_TODAY``): staff book money on
    days at most 31 days back, so a story dated 2026 is told on its own days."""
    return {"FENQI_TODAY": day}


def refused(run: Run, says: str) -> None:
    """Bad input: exit code 2, nothing on stdout, one line on stderr saying ``says``."""
    assert run.code == 2, run.err
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert says in lines[0]


def free_port() -> int:
    """A port nothing listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
