"""The repository documents itself: nothing in it points at documents outside it, and every
``docs/…md#anchor`` a comment, a test or the README cites (and every link between the docs)
names a file of docs/ and a heading in it."""

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Spelled in pieces so that this file does not name them itself.
OUTSIDE = ("DESIGN" + ".md", "DOMAIN" + ".md", "../" + "shared")
CITING = ("src", "tests", "bench", "docs", "README.md", "Makefile", "demo.sh")
TEXT = {".py", ".md", ".html", ".toml", ".sh", ".css", ".js", ".txt", ".cfg", ".mako", ""}
# docs/domain.md#merchant-refunds in code and prose; (domain.md#payoff) and (#fees) in docs/.
CITATION = re.compile(r"docs/(?P<file>[\w-]+\.md)(?:#(?P<anchor>[\w-]+))?")
DOCS_LINK = re.compile(r"\]\((?P<file>[\w-]+\.md)?(?:#(?P<anchor>[\w-]+))?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")


def tracked_files() -> list[Path]:
    """The files git keeps, and the new ones it would (not ignored)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: no list of tracked files")
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=False,
    )  # fmt: skip
    if listing.returncode != 0:
        pytest.skip("not a git checkout: no list of tracked files")
    names = [name for name in listing.stdout.decode().split("\0") if name]
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def test_no_file_refers_to_documents_outside_the_repository() -> None:
    files = tracked_files()
    assert any(path.name == "README.md" for path in files)
    mentions = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in OUTSIDE
        if name in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert mentions == []


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, no punctuation, spaces as hyphens."""
    plain = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", title).strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """Every heading anchor of a Markdown file (outside code blocks), repeats numbered as
    GitHub numbers them (-1, -2, …)."""
    found: set[str] = set()
    fenced = False
    for line in document.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = None if fenced else HEADING.match(line)
        if heading is None:
            continue
        base = anchor = slug(heading["title"])
        repeat = 0
        while anchor in found:
            repeat += 1
            anchor = f"{base}-{repeat}"
        found.add(anchor)
    return found


def citing_files() -> Iterator[Path]:
    for name in CITING:
        path = ROOT / name
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for candidate in candidates:
            if (
                candidate.is_file()
                and candidate.suffix in TEXT
                and "__pycache__" not in str(candidate)
            ):
                yield candidate


def citations() -> Iterator[tuple[str, str, str | None]]:
    """(where, docs file, anchor) of every citation of docs/ and every link inside docs/."""
    for path in citing_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        where = str(path.relative_to(ROOT))
        for match in CITATION.finditer(text):
            yield where, match["file"], match["anchor"]
        if path.parent == DOCS and path.suffix == ".md":
            for match in DOCS_LINK.finditer(text):
                if match["file"] or match["anchor"]:
                    yield where, match["file"] or path.name, match["anchor"]


def test_the_docs_hold_the_domain_the_design_and_the_glossary() -> None:
    assert {"domain.md", "design.md", "glossary.md"} <= {path.name for path in DOCS.glob("*.md")}
    assert {"money-and-rounding", "merchant-refunds", "write-off"} <= anchors(DOCS / "domain.md")
    assert {"layers", "the-fold", "the-business-day-batch"} <= anchors(DOCS / "design.md")


def test_every_citation_of_the_docs_names_a_file_and_a_heading_in_it() -> None:
    found = list(citations())
    assert len(found) > 40  # the code's comments cite the docs: the scan must see them
    known = {path.name: anchors(path) for path in DOCS.glob("*.md")}
    broken = [
        f"{where}: docs/{name}" + (f"#{anchor}" if anchor else "")
        for where, name, anchor in found
        if name not in known or (anchor is not None and anchor not in known[name])
    ]
    assert broken == []


def test_headings_become_github_anchors() -> None:
    assert slug("Money and rounding") == "money-and-rounding"
    assert slug("APR and total cost") == "apr-and-total-cost"
    assert slug("The `Loan` aggregate: state, events") == "the-loan-aggregate-state-events"
    assert slug("Partial prepayment (提前还款)") == "partial-prepayment-提前还款"
