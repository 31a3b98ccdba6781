"""The words catalog says every coded refusal: each code a service raises (``.coded(...)``) has
words in zh-CN and English whose blanks are the values the service gives, and every entry of the
catalog has the same blanks in both languages."""

import ast
from collections.abc import Iterator
from pathlib import Path
from string import Formatter

import pytest

from fenqi.web.words import CODED_VALUES, WORDS

SOURCE = Path(__file__).resolve().parents[2] / "src" / "fenqi"


def blanks(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


def coded_refusals() -> Iterator[tuple[str, str, set[str] | None]]:
    """(where, code, the values given; None when given as **mapping) of every ``.coded`` call."""
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "coded" and node.args
                    and isinstance(node.args[0], ast.Constant)):  # fmt: skip
                names = {keyword.arg for keyword in node.keywords}
                given = None if None in names else {name for name in names if name}
                yield f"{path.name}:{node.lineno}", str(node.args[0].value), given


def test_the_check_sees_the_coded_refusals() -> None:
    codes = {code for _, code, _ in coded_refusals()}
    assert {"permission-needed", "over-payoff", "day-before-window", "payment-declined",
            "nothing-owed", "confirmation-needed"} <= codes  # fmt: skip


@pytest.mark.parametrize(("where", "code", "given"), list(coded_refusals()))
def test_every_coded_refusal_has_words_for_its_values(
    where: str, code: str, given: set[str] | None
) -> None:
    words = WORDS.get(f"refusal.{code}")
    assert words is not None, f"{where}: no words for refusal.{code}"
    assert set(words) == {"zh-CN", "en"}
    for text in words.values():
        assert given is None or blanks(text) <= given, (where, text, given)


def test_every_entry_has_the_same_blanks_in_both_languages() -> None:
    for key, text in WORDS.items():
        assert set(text) == {"zh-CN", "en"}, key
        assert blanks(text["zh-CN"]) == blanks(text["en"]), key


def test_coded_values_are_said_in_words() -> None:
    for prefix in CODED_VALUES.values():
        assert any(key.startswith(prefix) for key in WORDS), prefix
