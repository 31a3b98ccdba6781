"""What the browser tests share: Debian's Chromium, started headless without what a test has no
use for (sync, updates, the first-run page), and the skip that says loudly when it is missing."""

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def skip_without_chromium(what: str) -> None:
    """Skips the calling test module, saying so, on a machine without Chromium."""
    if not CHROMIUM.exists():
        pytest.skip(f"{what} SKIPPED, NOT PASSED: no Chromium at {CHROMIUM} (make test installs "
                    "Debian's chromium and fonts-noto-cjk)", allow_module_level=True)  # fmt: skip
