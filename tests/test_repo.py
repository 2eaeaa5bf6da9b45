"""The repository keeps its promises: README commands, CI entry, protocol copy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_PROTOCOL = ROOT.parent / "shared" / "protocol.md"


def readme_commands() -> list[str]:
    first_screen = (ROOT / "README.md").read_text().split("---")[0]
    return re.findall(r"```sh\n(.+?)\n```", first_screen)


def test_readme_first_screen_has_exactly_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "nox -s demo" in commands[0]
    assert commands[1].endswith("nox")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


@pytest.mark.skipif(not SHARED_PROTOCOL.exists(), reason="shared/ is not beside the repo")
def test_docs_protocol_contains_the_shared_contract() -> None:
    ours = (ROOT / "docs" / "protocol.md").read_text()
    for line in SHARED_PROTOCOL.read_text().splitlines()[1:]:
        assert line in ours, f"docs/protocol.md lost this line of the contract: {line!r}"
