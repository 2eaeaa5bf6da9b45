"""Every example runs against the simulator."""

from __future__ import annotations

import importlib.util
import runpy
import shlex
import sys
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from market_client.simulator import RunningSimulator

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def test_simple_example(sim: RunningSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLES / "simple.py"))
    await module["quickstart"](sim.url)
    out = capsys.readouterr().out
    assert "symbols: ['ABC'" in out
    assert "market buy: filled" in out
    assert "order.accepted" in out


@pytest.mark.time_limit(40)
async def test_market_maker_quotes_trades_and_respects_its_limits(
    busy_sim: RunningSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    module = runpy.run_path(str(EXAMPLES / "market_maker.py"))
    bot = await module["make_markets"](busy_sim.url, "ABC", duration=4, period=0.2)
    assert bot.quotes >= 5
    assert abs(bot.position) <= bot.max_position
    assert "quotes," in capsys.readouterr().out
    # Long inventory quotes lower on both sides than flat inventory.
    bot.position = bot.lot * 4
    long_bid, long_ask = bot.quote_prices(Decimal("100.00"))
    bot.position = 0
    flat = bot.quote_prices(Decimal("100.00"))
    assert long_bid < flat[0] and long_ask < flat[1]
    assert flat[0] < Decimal("100.00") < flat[1]


async def test_market_maker_leaves_nothing_resting(busy_sim: RunningSimulator) -> None:
    module = runpy.run_path(str(EXAMPLES / "market_maker.py"))
    bot = await module["make_markets"](busy_sim.url, "XYZ", duration=1.5, period=0.2)
    user = busy_sim.exchange.users[bot.client.user_id]
    assert [o for o in user.orders.values() if o.live] == []


@pytest.mark.time_limit(40)
async def test_candles_png_example_saves_a_chart(
    busy_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = runpy.run_path(str(EXAMPLES / "candles_png.py"))
    out = tmp_path / "abc.png"
    await module["collect"](busy_sim.url, "ABC", 2.5, 1000, out)
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000
    assert "saved" in capsys.readouterr().out


async def test_seed_asyncio_example(sim: RunningSimulator) -> None:
    # A plain asyncio script (asyncio.run, asyncio.sleep): run it as the user
    # would, in its own process, against this test's simulator.
    done = await anyio.run_process([sys.executable, str(EXAMPLES / "seed_asyncio.py"), sim.url])
    out = done.stdout.decode()
    assert "placed:" in out and "open" in out
    assert "'order.accepted', 'order.cancelled'" in out
    assert "event: order.accepted open" in out
    assert "book.snapshot" in out


def docstring_commands(name: str) -> list[list[str]]:
    """The ``python examples/NAME ...`` lines of an example's docstring, as argument lists."""
    source = (EXAMPLES / name).read_text()
    doc = source.split('"""')[1]
    commands = []
    for line in doc.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(f"python examples/{name}"):
            commands.append(shlex.split(line)[2:])
    return commands


# Flags appended so that a command of the docstring ends quickly (a later flag wins).
SHORT = {
    "market_maker.py": ["--duration", "2"],
    "candles_png.py": ["--seconds", "2"],
    "simple.py": [],
    "seed_asyncio.py": [],
}


@pytest.mark.time_limit(120)
@pytest.mark.parametrize("name", sorted(SHORT))
async def test_each_example_runs_with_the_flags_its_docstring_shows(
    name: str, busy_sim: RunningSimulator, tmp_path: Path, anyio_backend: str
) -> None:
    if anyio_backend == "trio":
        pytest.skip("a subprocess per command: once is enough")
    commands = docstring_commands(name)
    assert commands, f"{name}'s docstring shows no command"
    for args in commands:
        args = [busy_sim.url if a == "http://localhost:8000" else a for a in args]
        done = await anyio.run_process(
            [sys.executable, str(EXAMPLES / name), *args, *SHORT[name]],
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, (args, done.stderr.decode())
    if name == "candles_png.py":
        assert (tmp_path / "abc.png").exists() and (tmp_path / "candles.png").exists()


async def test_candles_png_fails_before_collecting_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = runpy.run_path(str(EXAMPLES / "candles_png.py"))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    # An unreachable gateway: had it tried to collect first, this would be a ConnectError.
    with anyio.fail_after(1), pytest.raises(SystemExit, match="needs matplotlib"):
        await module["collect"]("http://127.0.0.1:9", "ABC", 30, 1000, Path("x.png"))


def test_candles_png_draws_candles_whose_open_equals_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    module = runpy.run_path(str(EXAMPLES / "candles_png.py"))
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    flat = {"t_ns": 10**18, "o": Decimal("100.01"), "h": Decimal("100.02"), "l": Decimal("100")}
    flat |= {"c": Decimal("100.01"), "v": 3, "n": 2}
    module["plot"]([flat], "ABC", tmp_path / "flat.png")
    ax = figures[0].axes[0]
    body = [
        seg
        for coll in ax.collections
        if isinstance(coll, LineCollection)
        for seg in coll.get_segments()
        if seg[0][1] == seg[1][1] == 100.01  # a horizontal stroke at the price
    ]
    assert body and body[0][1][0] - body[0][0][0] > 0.5
    plt.close("all")


@pytest.mark.time_limit(60)
async def test_record_and_plot_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyarrow")
    module = runpy.run_path(str(EXAMPLES / "record_and_plot.py"))
    png = tmp_path / "rec.png"
    await module["main"](3.0, tmp_path / "rec", png)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 10_000
    fills = module["recording"].open(tmp_path / "rec").table("fills")
    assert fills.num_rows >= 2  # its own market orders, read back from Parquet
    assert "saved" in capsys.readouterr().out
