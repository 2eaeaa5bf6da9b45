"""Every example runs against the simulator."""

from __future__ import annotations

import runpy
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
