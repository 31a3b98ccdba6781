"""The README's glossary is the glossary's own words: each of its rows names a thing exactly as
docs/glossary.md does, so there is one word for one thing."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| ([^|]+?) \| ([^|]+?) \|", re.MULTILINE)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else None]


def test_the_readmes_glossary_uses_the_glossarys_words() -> None:
    readme = _section((ROOT / "README.md").read_text(encoding="utf-8"), "### Glossary")
    glossary = (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    shown = [row for row in ROW.findall(readme) if row[0] != "zh-CN" and not row[0].startswith("-")]
    assert len(shown) >= 9
    kept = {(zh.strip(), en.strip()) for zh, en in ROW.findall(glossary)}
    assert [row for row in shown if row not in kept] == []
