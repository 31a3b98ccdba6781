"""The domain stays pure (docs/design.md#layers): it may import only the standard library's pure
modules and itself, and never reads a clock, a file or the console. Entry points stay out of
services, and services out of entry points, so dependencies point inward only; the store imports
no service, and the API and the pages share ``fenqi.http`` rather than each other."""

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


@pytest.mark.parametrize("path", modules("services"), ids=lambda path: path.name)
def test_services_know_no_http(path: Path) -> None:
    upward = [name for name in imports(path) if name.startswith(("fenqi.http", "fenqi.web"))]
    assert upward == [], f"{path.name} imports {upward}"


@pytest.mark.parametrize("path", modules("store"), ids=lambda path: path.name)
def test_the_store_imports_no_service(path: Path) -> None:
    """The store says what went wrong in its own errors (``store/errors.py``); the services
    translate them, so the store depends on nothing above it."""
    above = ("fenqi.services", "fenqi.api", "fenqi.web", "fenqi.http", "fenqi.cli")
    upward = [name for name in imports(path) if name.startswith(above)]
    assert upward == [], f"{path.name} imports {upward}"


@pytest.mark.parametrize(
    ("package", "other"), [("api", "fenqi.web"), ("web", "fenqi.api")], ids=["api", "web"]
)
def test_api_and_web_share_http_and_never_import_each_other(package: str, other: str) -> None:
    crossing = {f"{_relative(path)}: {name}" for path in modules(package)
                for name in imports(path) if name == other or name.startswith(f"{other}.")}  # fmt: skip
    assert crossing == set(), f"{package} imports {other}; share it through fenqi.http"


def test_the_http_package_holds_what_api_and_web_share() -> None:
    shared = {"problems.py", "security.py", "hardening.py", "app.py", "fields.py"}
    assert shared <= {path.name for path in modules("http")}
    assert not any((SOURCE / "api" / name).exists() for name in shared)


def test_the_check_sees_the_domain() -> None:
    assert len(modules("domain")) >= 8
    assert SOURCE / "domain" / "loan" / "fold.py" in modules("domain")  # packages inside it too
    assert "fenqi.domain.money" in set(imports(SOURCE / "domain" / "schedule.py"))


# The middle floor: services get and save loans through the ports in fenqi.loans, and table rows
# stay in the store.


def _relative(path: Path) -> str:
    return path.relative_to(SOURCE).as_posix()


def _outside_the_store() -> list[Path]:
    return [
        path for path in sorted(SOURCE.rglob("*.py")) if not _relative(path).startswith("store/")
    ]


def row_classes(path: Path) -> list[str]:
    """The store's row classes a module imports (``...Row``), or the schema module itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "fenqi.store.schema":
            found += [alias.name for alias in node.names if alias.name.endswith("Row")]
        elif isinstance(node, ast.ImportFrom) and node.module == "fenqi.store":
            found += [alias.name for alias in node.names if alias.name == "schema"]
    return found


@pytest.mark.parametrize("path", _outside_the_store(), ids=_relative)
def test_no_row_class_is_used_outside_the_store(path: Path) -> None:
    assert row_classes(path) == [], f"{_relative(path)} imports rows; take values from the store"


@pytest.mark.parametrize(
    "path", [*modules("services"), *modules("loans"), SOURCE / "seeding.py"], ids=_relative
)
def test_services_the_loans_and_the_seeder_work_through_ports(path: Path) -> None:
    """No SQLAlchemy and no table schema: the store is reached through the ports (and the
    store's own functions, which take and give values)."""
    reached = [name for name in imports(path)
               if name.split(".")[0] == "sqlalchemy" or name == "fenqi.store.schema"]  # fmt: skip
    assert reached == [], f"{_relative(path)} imports {reached}"


def test_the_loan_aggregate_and_its_ports_know_no_store() -> None:
    reached = {name for path in modules("loans") for name in imports(path)
               if name.startswith("fenqi.store")}  # fmt: skip
    assert reached == set()


def test_the_seeder_lives_outside_the_services() -> None:
    assert not (SOURCE / "services" / "seeding.py").exists()
    assert (SOURCE / "seeding.py").exists()
