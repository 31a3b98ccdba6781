"""A PostgreSQL server of the test's own, started with ``initdb`` and ``pg_ctl`` on a free port
in a temporary directory, which a test may stop, start, freeze (SIGSTOP) and thaw (SIGCONT)
without touching the shared server at 5432.

Where the server binaries are missing, or cannot run here, the test is skipped with a loud
reason. PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` OS
user (``runuser``), in a directory it owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_USER = "postgres"


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivatePostgres:
    """A running server: ``url`` for fenqi, and the controls a fault test needs."""

    binaries: Path
    folder: Path
    port: int
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        command = [*self.as_user, str(self.binaries / "pg_ctl"), "-D", str(self.data), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        settings = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c max_connections=100")  # fmt: skip
        self._ctl("start", "-w", "-t", "30", "-l", str(self.folder / "server.log"), "-o", settings)

    def stop(self, mode: str = "immediate") -> None:
        self._ctl("stop", "-w", "-t", "30", "-m", mode)

    def processes(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended while we looked
                continue
            if int(fields[1]) == postmaster:
                children.append(int(Path(stat).parent.name))
        return [postmaster, *children]

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The server stopped in its tracks (SIGSTOP), thawed (SIGCONT) when the block ends.
        The kernel still accepts connections and bytes for it: only the answers stop."""
        stopped = self.processes()
        _signal(stopped, signal.SIGSTOP)
        try:
            yield
        finally:
            _signal(stopped, signal.SIGCONT)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh server in a new temporary directory, stopped and removed when the block ends."""
    binaries = _binaries()
    if binaries is None or not (binaries / "initdb").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found — fault test SKIPPED")
    as_user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="fenqi-pg-"))
    try:
        if as_user:
            owner = pwd.getpwnam(SERVER_USER)
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        server = PrivatePostgres(binaries, folder, _free_port(), as_user)
        initdb = [*as_user, str(binaries / "initdb"), "-D", str(server.data), "-A", "trust",
                  "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"]  # fmt: skip
        made = subprocess.run(initdb, capture_output=True, text=True, timeout=120, check=False)
        if made.returncode != 0:
            pytest.skip(f"initdb failed here — fault test SKIPPED: {made.stderr.strip()[-300:]}")
        server.start()
        try:
            yield server
        finally:
            _signal(_alive(server), signal.SIGCONT)  # never leave it frozen
            with suppress(RuntimeError):  # the test left it stopped
                server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _server_user() -> list[str]:
    """How to run the server's commands: as ourselves, or (as root, which PostgreSQL refuses)
    as the postgres OS user."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        runuser = None
    if runuser is None:
        pytest.skip("running as root without runuser or a postgres OS user, and PostgreSQL "
                    "refuses to run as root — fault test SKIPPED")  # fmt: skip
    return [runuser, "-u", SERVER_USER, "--"]


def _signal(pids: list[int], sent: signal.Signals) -> None:
    """Sends ``sent`` to each of ``pids`` still running: a backend whose client went away may
    end between the listing and the signal."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sent)


def _alive(server: PrivatePostgres) -> list[int]:
    try:
        return server.processes()
    except (OSError, ValueError):
        return []
