"""The layout keeps its promises: no import circle, and the picture drawn from the code."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import diagram  # noqa: E402


def test_no_import_circle_between_modules() -> None:
    assert diagram.cycles(diagram.imports()) == []


def test_the_committed_picture_is_what_the_code_draws() -> None:
    committed = (ROOT / "docs" / "img" / "architecture.dot").read_text()
    assert committed == diagram.dot(), "the layout changed: run `nox -s diagrams` and commit"


def test_a_circle_would_be_found() -> None:
    assert diagram.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
