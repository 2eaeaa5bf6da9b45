"""The shell entry points: `market-client sim`, `python -m market_client.simulator`, the demo."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from rich.console import Console

PY = sys.executable
CLI = [PY, "-c", "import sys; from market_client._cli import main; sys.exit(main())"]


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
    head = [PY, "-m", "market_client.simulator"] if how == "module" else [*CLI, "sim"]
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


def test_demo_runs_for_a_duration_and_prints_its_summary_on_its_own_line() -> None:
    done = subprocess.run(
        [*CLI, "demo", "--duration", "3"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    summary = json.loads(last)  # the whole last line, nothing glued before it
    assert summary["md_messages"] > 0 and summary["requests"] > 0
    assert set(summary["best_bid_ask"]) == {"ABC", "XYZ", "QQQ", "ETH"}
    assert "health" in done.stdout and "my orders" in done.stdout


def test_query_command_error_is_one_line() -> None:
    done = subprocess.run(
        [*CLI, "symbols", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("market-client: cannot reach the gateway")
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "url"])
def test_demo_ctrl_c_exits_130_without_a_traceback(backend: str, embedded: bool) -> None:
    with contextlib.ExitStack() as stack:
        extra: list[str] = []
        if not embedded:
            url = stack.enter_context(
                started([PY, "-m", "market_client.simulator", "--port", "0", "--flow-hz", "50"])
            )
            extra = ["--url", url]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = stack.enter_context(
            subprocess.Popen(
                [*CLI, "demo", "--backend", backend, *extra],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
        assert proc.stdout is not None
        # The session is open (and Ctrl-C handled) once this line is out.
        for line in proc.stdout:
            if "Ctrl-C ends the demo" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception" not in err
    assert json.loads(out.splitlines()[-1])["requests"] >= 1  # the summary still comes


@pytest.mark.anyio
@pytest.mark.time_limit(60)
@pytest.mark.parametrize(("width", "height"), [(80, 24), (200, 60)])
async def test_dashboard_fits_the_terminal(anyio_backend: str, width: int, height: int) -> None:
    from market_client._cli._demo import run_demo

    console = Console(
        record=True, width=width, height=height, force_terminal=False, color_system=None
    )
    summary = await run_demo(None, duration=4, flow_hz=300, console=console)
    screen = console.export_text()
    frame = screen.splitlines()[2:]  # after the two start-up lines
    assert len(frame) <= height - 1, "the frame scrolls off the terminal"
    assert all(len(line) <= width for line in frame)
    assert frame[-1].startswith("health CMD up  MD up")  # the health line is seen
    assert "malformed 0" in frame[-1]
    for sym, top in summary["best_bid_ask"].items():
        assert re.search(rf"^{sym}\s+\d+\s+{re.escape(str(top['bid']))}\s", screen, re.M)
    assert "my orders and fills" in screen and "latest trades" in screen
    assert re.search(r"accepted\s+\w+\s+buy", screen)  # the demo's own orders
    assert re.search(r"\w+\s+\d+ @ \d+\.\d+ \((buy|sell)\)", screen)  # trades, with side
    charts = re.findall(r"(\w+) candles \(1 s\)", screen)
    assert charts == (["ABC"] if width == 80 else ["ABC", "XYZ", "QQQ", "ETH"])
    assert "┃" in screen
    if width == 200:
        assert "depth: bid qty (5 levels) | ask qty" in screen


@pytest.mark.anyio
async def test_dashboard_columns_do_not_move_between_frames(anyio_backend: str) -> None:
    from market_client import MarketClient
    from market_client._cli._demo import Dashboard
    from market_client.simulator import serve

    async with serve(seed=4, flow_hz=0) as sim, MarketClient.session(sim.url) as client:
        board = Dashboard(client, ["ABC", "XYZ"])
        console = Console(record=True, width=80, height=24, color_system=None)
        console.print(board)
        first = console.export_text(clear=True).splitlines()
        await client.place_order("ABC", "buy", "1.00", 12345)  # a long quantity...
        board.on_trade({"sym": "ABC", "qty": 99999, "price": "12345.67", "aggressor": "buy"})
        console.print(board)
        second = console.export_text(clear=True).splitlines()
    assert first[0] == second[0]  # ...does not move the header
    assert len(first) == len(second)


def test_candle_chart_labels_are_distinct_and_flat_candles_show() -> None:
    from decimal import Decimal

    from market_client._cli._demo import candle_chart

    def candle(o: str, h: str, low: str, c: str) -> dict[str, Decimal]:
        return {"o": Decimal(o), "h": Decimal(h), "l": Decimal(low), "c": Decimal(c)}

    candles = [
        candle("100.00", "100.03", "99.99", "100.02"),
        candle("100.01", "100.01", "100.01", "100.01"),
    ]
    lines = [line.plain for line in candle_chart(candles, height=14, width=20)]
    assert len(lines) == 14
    labels = [line[:10].strip() for line in lines if line[:10].strip()]
    assert len(labels) == len(set(labels)) >= 2
    flat_column = [line[11] for line in lines if len(line) > 11]
    assert "┃" in flat_column  # open == close still draws a body
