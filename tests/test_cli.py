"""The shell entry points: `market-client sim`, `python -m market_client.simulator`, the demo."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

PY = sys.executable


@contextlib.contextmanager
def started(args: list[str]) -> Iterator[str]:
    """Run a simulator process; yields its URL; stops it and closes its pipes."""
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"(http://\S+)", line)
            assert match, line
            yield match.group(1)
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("how", ["module", "cli"])
def test_simulator_starts_from_the_shell(how: str, backend: str) -> None:
    head = (
        [PY, "-m", "market_client.simulator"]
        if how == "module"
        else [PY, "-c", "import sys; from market_client._cli import main; sys.exit(main())", "sim"]
    )
    with started(
        [
            *head,
            "--port",
            "0",
            "--seed",
            "3",
            "--flow-hz",
            "0",
            "--symbols",
            "ABC,FOO:0.5:10",
            "--admin-token",
            "t",
            "--backend",
            backend,
        ]
    ) as url:
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
        hs = httpx.post(f"{url}/auth/handshake", json={"token": "t"}, timeout=5).json()
        assert hs["is_admin"] is True
        reply = httpx.post(
            f"{url}/api/request",
            headers={"X-Auth-Token": hs["token"]},
            json={"op": "symbols.list"},
            timeout=5,
        ).json()
        assert [s["sym"] for s in reply["payload"]["symbols"]] == ["ABC", "FOO"]
        assert reply["payload"]["symbols"][1]["tick"] == "0.5"


def test_simulator_rejects_bad_options() -> None:
    done = subprocess.run(
        [PY, "-m", "market_client.simulator", "--symbols", "abc"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "upper-case" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_runs_for_a_duration_and_prints_a_summary() -> None:
    done = subprocess.run(
        [
            PY,
            "-c",
            "import sys; from market_client._cli import main; sys.exit(main())",
            "demo",
            "--duration",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert summary["md_messages"] > 0 and summary["requests"] > 0
    assert set(summary["best_bid_ask"]) == {"ABC", "XYZ", "QQQ", "ETH"}
    assert "Top of book" in done.stdout and "My orders" in done.stdout


def test_query_command_error_is_one_line() -> None:
    done = subprocess.run(
        [
            PY,
            "-c",
            "import sys; from market_client._cli import main; sys.exit(main())",
            "symbols",
            "--url",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("market-client: cannot reach the gateway")
    assert "Traceback" not in done.stderr


@pytest.mark.anyio
@pytest.mark.time_limit(60)
async def test_dashboard_shows_real_values_from_the_session(anyio_backend: str) -> None:
    from rich.console import Console

    from market_client._cli import _demo

    console = Console(record=True, width=220, force_terminal=False, color_system=None)
    summary = await _demo(None, duration=4, flow_hz=300, console=console)
    screen = console.export_text()
    for title in ("Top of book and depth", "Candles (1 s)", "Latest trades", "My orders and fills"):
        assert title in screen
    for sym, top in summary["best_bid_ask"].items():
        assert sym in screen
        assert top["bid"] is not None and top["bid"] in screen  # the book shown is the session's
    assert "┃" in screen  # candle bodies were drawn
    assert re.search(r"accepted\s+\w+ buy", screen)  # the demo's own orders
    assert re.search(r"\w+ \d+ @ \d+\.\d+ \((buy|sell)\)", screen)  # trades printed
    assert "CMD up" in screen and "MD up" in screen
    assert summary["order_events"] > 0 and summary["md_messages"] > 0
