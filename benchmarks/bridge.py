"""The bridge back: the market maker backtested, and run live on the same data replayed at speed 1.

    python benchmarks/bridge.py [--data DIR] [--seconds 60] [--live-runs 1] [--json]

1. Records the embedded simulator as examples/market_maker.py runs it (seed 3,
   flow 200/s) for ``--seconds`` into ``--data`` (skipped when that folder
   already holds a recording).
2. Backtest: ``backtest.run`` of examples/backtest_market_maker.py (the very
   `MarketMaker` class of examples/market_maker.py, period 0.5 s, spread 2
   ticks, at most 10 lots) on the recording, in process, on the virtual clock.
3. Live: ``market-client sim --replay DIR --speed 1`` in its own process, and
   the same bot over real sockets for the recording's length; its fills come
   from the client's ``order.fill`` events, its P&L from ``portfolio.get``
   and the client's book at the end.

Prints both side by side: orders, fills, bought and sold lots, final
position, cash change, P&L marked at the last mid, and the first fills of
each. They are not expected to agree fill for fill: see docs/backtesting.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream

from market_client import MarketClient, backtest
from market_client.simulator import SimulatorConfig, serve

ROOT = Path(__file__).resolve().parent.parent
SYM = "ABC"
PERIOD = 0.5
SPREAD = 2
MAX_POSITION = 10


def _load(name: str) -> Any:
    path = ROOT / "examples" / f"{name}.py"
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def record(directory: Path, seconds: float) -> None:
    """Record the simulator as examples/market_maker.py serves it (seed 3, flow 200/s)."""
    async with (
        serve(SimulatorConfig(seed=3, flow_hz=200)) as sim,
        MarketClient.session(sim.url, record=directory),
    ):
        await anyio.sleep(seconds)


Json = dict[str, Any]


def summary(fills: list[Json], orders: int, cash: Decimal, mid: Decimal | None) -> Json:
    """Orders, fills, lots bought and sold, position, cash change and marked P&L."""
    bought = sum(f["qty"] for f in fills if f["side"] == "buy")
    sold = sum(f["qty"] for f in fills if f["side"] == "sell")
    position = bought - sold
    pnl = cash + position * mid if mid is not None else None
    return {
        "orders": orders,
        "fills": len(fills),
        "maker_fills": sum(f.get("liquidity") == "maker" for f in fills),
        "bought": bought,
        "sold": sold,
        "position": position,
        "cash_change": cash,
        "pnl_at_last_mid": pnl,
        "first_fills": [f"{f['side']} {f['qty']} @ {f['price']}" for f in fills[:8]],
    }


def run_backtest(directory: Path, backend: str) -> tuple[Json, Any]:
    """The backtest of examples/backtest_market_maker.py on the recording."""
    bot = _load("backtest_market_maker").strategy
    with contextlib.redirect_stdout(io.StringIO()):  # the bot prints every fill
        report = backtest.run(bot, directory, backend=backend)
    out = summary(report.fills, report.orders, report.cash - report.starting_cash, None)
    out["pnl_at_last_mid"] = report.net_pnl  # no fees configured: realised + unrealised
    return out, report


async def _gateway(directory: Path) -> tuple[Any, str]:
    exe = shutil.which("market-client", path=str(Path(sys.executable).parent)) or "market-client"
    process = await anyio.open_process(
        [exe, "sim", "--replay", str(directory), "--speed", "1", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines = BufferedByteReceiveStream(process.stdout)
    with anyio.fail_after(30):
        while True:
            line = (await lines.receive_until(b"\n", 4096)).decode()
            if "serving on" in line:
                url = line.split("serving on", 1)[1].split()[0]
                return process, url


async def run_live(directory: Path, seconds: float) -> Json:
    """The same bot over sockets against ``market-client sim --replay DIR --speed 1``."""
    maker = _load("market_maker")
    process, url = await _gateway(directory)
    try:
        async with MarketClient.session(url, symbols=[SYM]) as client:
            spec = next(s for s in await client.get_symbols() if s["sym"] == SYM)
            start_cash = Decimal(str((await client.get_portfolio())["cash"]))
            bot = maker.MarketMaker(
                client,
                SYM,
                Decimal(spec["tick"]),
                spec["lot"],
                spread_ticks=SPREAD,
                max_position=MAX_POSITION * spec["lot"],
            )
            placed = 0
            place = client.place_order

            async def counting_place(*args: Any, **kwargs: Any) -> Any:
                nonlocal placed
                placed += 1
                return await place(*args, **kwargs)

            client.place_order = counting_place  # type: ignore[method-assign]
            fills: list[Json] = []

            async def collect() -> None:
                async for evt in client.events("order.fill"):
                    if evt.fill is not None and evt.fill["sym"] == SYM:
                        fills.append(dict(evt.fill))

            async with anyio.create_task_group() as tg:
                tg.start_soon(collect)
                with (
                    contextlib.redirect_stdout(io.StringIO()),
                    anyio.move_on_after(seconds),
                ):
                    await bot.run(PERIOD)
                await anyio.sleep(0.2)  # fill events of the last cancels
                tg.cancel_scope.cancel()
            cash = Decimal(str((await client.get_portfolio())["cash"]))
            top = client.best_bid_ask(SYM)
            mid = None
            if top["bid"] is not None and top["ask"] is not None:
                mid = (top["bid"]["price"] + top["ask"]["price"]) / 2
            return summary(fills, placed, cash - start_cash, mid)
    finally:
        process.kill()
        await process.wait()
        await process.aclose()


def main(argv: list[str] | None = None) -> Json:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="recording folder (made when missing)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of a new recording")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument(
        "--live-runs", type=int, default=1, help="live runs (they differ from one another too)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.data or Path(tmp) / "rec"
        if not (directory / "raw").is_dir():
            anyio.run(record, directory, args.seconds)
        back, report = run_backtest(directory, args.backend)
        lives = [
            anyio.run(run_live, directory, report.recorded_seconds, backend=args.backend)
            for _ in range(args.live_runs)
        ]
    result = {"recorded_seconds": report.recorded_seconds, "backtest": back, "live": lives}
    if args.json:
        print(orjson.dumps(result, default=str, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"recorded seconds: {report.recorded_seconds:.1f}")
        names = ["backtest"] + [f"live {i + 1} (speed 1)" for i in range(len(lives))]
        print(f"{'':18}" + "".join(f"{n:>22}" for n in names))
        for key in back:
            if key != "first_fills":
                print(f"{key:18}" + "".join(f"{side[key]!s:>22}" for side in [back, *lives]))
        for name, side in zip(names, [back, *lives], strict=True):
            print(f"first fills, {name}: " + "; ".join(side["first_fills"]))
    return result


if __name__ == "__main__":
    main()
