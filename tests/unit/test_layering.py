"""The domain stays pure (docs/design.md#layers): it may import only the standard library's pure
modules and itself, and never reads a clock, a file or the console. Entry points stay out of
services, and services out of entry points, so dependencies point inward only."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "fenqi"

PURE_STDLIB = {
    "__future__", "bisect", "calendar", "collections", "dataclasses", "datetime", "decimal",
    "enum", "fractions", "functools", "itertools", "math", "operator", "re", "tomllib", "typing",
}  # fmt: skip
CLOCK_AND_IO_CALLS = {"today", "now", "utcnow", "time", "open", "print", "input", "getenv"}


def modules(package: str) -> list[Path]:
    return sorted((SOURCE / package).rglob("*.py"))


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def called_names(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Attribute):
                yield function.attr
            elif isinstance(function, ast.Name):
                yield function.id


@pytest.mark.parametrize("path", modules("domain"), ids=lambda path: path.name)
def test_the_domain_imports_only_itself_and_pure_standard_modules(path: Path) -> None:
    foreign = [
        name
        for name in imports(path)
        if not name.startswith("fenqi.domain") and name.split(".")[0] not in PURE_STDLIB
    ]
    assert foreign == [], f"{path.name} imports {foreign}; the domain must stay pure"


@pytest.mark.parametrize("path", modules("domain"), ids=lambda path: path.name)
def test_the_domain_reads_no_clock_file_or_console(path: Path) -> None:
    found = sorted(set(called_names(path)) & CLOCK_AND_IO_CALLS)
    assert found == [], f"{path.name} calls {found}; pass today's date and data in as arguments"


@pytest.mark.parametrize("path", modules("services"), ids=lambda path: path.name)
def test_services_do_not_reach_up_into_entry_points(path: Path) -> None:
    upward = [name for name in imports(path) if name.startswith(("fenqi.cli", "fenqi.api"))]
    assert upward == [], (
        f"{path.name} imports {upward}; entry points call services, not the reverse"
    )


def test_the_check_sees_the_domain() -> None:
    assert len(modules("domain")) >= 8
    assert SOURCE / "domain" / "loan" / "fold.py" in modules("domain")  # packages inside it too
    assert "fenqi.domain.money" in set(imports(SOURCE / "domain" / "schedule.py"))
