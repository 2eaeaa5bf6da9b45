"""Collect candles from the live market and save them as a PNG candlestick chart.

    python examples/candles_png.py                     # 20 s against an embedded simulator
    python examples/candles_png.py --url http://localhost:8000 --sym XYZ --seconds 60
    python examples/candles_png.py --interval-ms 2000 --out abc.png

Needs matplotlib (``pip install "market-client[examples]"``).
"""

from __future__ import annotations

import argparse
import importlib.util
from datetime import datetime, timezone
from pathlib import Path

import anyio

from market_client import CandleDict, MarketClient
from market_client.simulator import serve


def plot(candles: list[CandleDict], sym: str, path: Path) -> Path:
    """Draw OHLC candles (green up, red down) with volume under them; save as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    fig, (ax, vol) = plt.subplots(
        2, 1, figsize=(10, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for i, c in enumerate(candles):
        color = "tab:green" if c["c"] >= c["o"] else "tab:red"
        ax.vlines(i, float(c["l"]), float(c["h"]), color=color, linewidth=1)
        low, high = sorted((float(c["o"]), float(c["c"])))
        if high > low:
            ax.bar(i, high - low, bottom=low, color=color, width=0.7)
        else:  # open == close: a bar of no height is invisible, draw a thick tick instead
            ax.hlines(low, i - 0.35, i + 0.35, color=color, linewidth=2.5)
        vol.bar(i, c["v"], color=color, width=0.7)
    ticks = list(range(0, len(candles), max(1, len(candles) // 8)))
    vol.set_xticks(ticks)
    vol.set_xticklabels(
        [
            datetime.fromtimestamp(candles[i]["t_ns"] / 1e9, timezone.utc).strftime("%H:%M:%S")
            for i in ticks
        ]
    )
    ax.set_title(f"{sym}: {len(candles)} candles")
    ax.set_ylabel("price")
    vol.set_ylabel("volume")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def require_matplotlib() -> None:
    """Fail at once, before collecting for minutes, when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit(
            'candles_png.py needs matplotlib: pip install "market-client[examples]" '
            "(or pip install matplotlib)"
        )


async def collect(url: str, sym: str, seconds: float, interval_ms: int, out: Path) -> Path:
    """Collect ``sym``'s candles for ``seconds``, then save the chart to ``out``."""
    require_matplotlib()
    async with MarketClient.session(url, symbols=[sym]) as client:
        await client.configure_candles(sym, interval_ms=interval_ms, depth=200)
        with anyio.move_on_after(seconds):
            async for evt in client.events("md.trade"):
                print(
                    f"\r{sym} {len(client.get_candles(sym))} candles, last {evt.data['price']}",
                    end="",
                )
        print()
        candles = client.get_candles(sym)
    if not candles:
        raise SystemExit(f"no trades in {seconds:g} s: nothing to plot")
    path = plot(candles, sym, out)
    print(f"saved {path}")
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running gateway (default: an embedded simulator)")
    parser.add_argument("--sym", default="ABC")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("candles.png"))
    args = parser.parse_args()
    require_matplotlib()
    if args.url:
        await collect(args.url, args.sym, args.seconds, args.interval_ms, args.out)
        return
    async with serve(seed=5, flow_hz=300) as sim:
        await collect(sim.url, args.sym, args.seconds, args.interval_ms, args.out)


if __name__ == "__main__":
    anyio.run(main)
