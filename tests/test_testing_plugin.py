"""The plugin as a user's test suite gets it: installed, outside our conftest, both backends.

Each test writes a small suite into a temporary directory (no conftest of
ours, no ``-p``: the plugin must come through the package's ``pytest11``
entry point) and runs it with pytest in a subprocess.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
# A user's strict settings: any warning fails, any unknown marker fails.
STRICT_INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
filterwarnings = error
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    pytester.makeini(STRICT_INI)
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = suite.runpytest_subprocess("-v", *args, timeout=240)
    plugins = next(line for line in result.outlines if line.startswith("plugins:"))
    assert "market-client-" in plugins or "market_client-" in plugins, plugins
    return result


def test_a_users_suite_gets_the_fixture_from_the_installed_package(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_my_bot="""
        import pytest

        from market_client import MarketClient
        from market_client.testing import Simulator, wait_until

        pytestmark = [
            pytest.mark.anyio,
            pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"]),
        ]


        async def test_my_bot(simulator: Simulator) -> None:
            async with MarketClient.session(simulator.url) as client:
                placed = await client.place_order("ABC", "buy", type="market", qty=1)
                assert placed["fills"]
            await simulator.disconnect()


        @pytest.mark.simulator(flow_hz=200, symbols="XYZ")
        async def test_my_bot_in_a_moving_market(simulator: Simulator) -> None:
            async with MarketClient.session(simulator.url) as client:
                first = client.book_snapshot("XYZ")["seq"]
                await wait_until(lambda: client.book_snapshot("XYZ")["seq"] > first)
        """,
        # Tests that do not ask for the fixture see no change.
        test_plain="""
        import pytest

        def test_sync():
            assert True

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
        async def test_async_without_a_simulator():
            assert True
        """,
    )
    result = run(suite)
    result.assert_outcomes(passed=7)
    for backend in ("asyncio", "trio"):
        result.stdout.fnmatch_lines([f"*test_my_bot?{backend}? PASSED*"])
        result.stdout.fnmatch_lines([f"*test_my_bot_in_a_moving_market?{backend}? PASSED*"])


def docs_files() -> dict[str, str]:
    """The page's Python blocks joined by file: the first line of a block names its file."""
    files: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", DOCS_PAGE.read_text(), re.DOTALL):
        first, _, body = block.partition("\n")
        name = first.removeprefix("# ").strip()
        assert re.fullmatch(r"\w+\.py", name), f"a block of docs/testing.md names no file: {first}"
        files[name] = files.get(name, "") + body + "\n\n"
    return files


def test_the_docs_page_examples_pass_on_both_backends(suite: pytest.Pytester) -> None:
    files = docs_files()
    assert set(files) == {"conftest.py", "test_my_bot.py"}
    for name, text in files.items():
        (suite.path / name).write_text(text)
    tests = len(re.findall(r"^(?:async )?def test_", files["test_my_bot.py"], re.MULTILINE))
    assert tests >= 8
    run(suite).assert_outcomes(passed=2 * tests)
