"""``make demo``'s script, as a newcomer runs it: quotes, a borrower's story, a seeded portfolio,
then the service started, answering, and stopped (off a terminal it does not wait for Ctrl-C)."""

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.cli import free_port

DEMO = Path(__file__).resolve().parents[2] / "demo.sh"


def test_the_demo_runs_from_quotes_to_a_serving_service(tmp_path: Path) -> None:
    environment = {**os.environ, "FENQI_DEMO_PORT": str(free_port()),
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    environment.pop("FENQI_DATABASE_URL", None)
    done = subprocess.run(["bash", str(DEMO)], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for shown in ("APR, compounded (IRR)", "BALANCED", "consistent", "fenqi is serving on",
                  'healthz: {"status":"ok"}'):  # fmt: skip
        assert shown in done.stdout, shown
    assert "is over the cap of 24.00%" in done.stderr  # the refused quote, on stderr
    assert (tmp_path / "demo.sqlite3").exists()  # in the folder it was run from, nowhere else
