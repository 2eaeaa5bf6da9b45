"""Record a session against the embedded simulator, then plot it from the Parquet files.

    python examples/record_and_plot.py                      # 60 s, writes record_and_plot.png
    python examples/record_and_plot.py --duration 10 --out rec --png abc.png

The session trades a little (a market order every few seconds, alternating
sides), so the chart shows its own fills on top of the mid price and the
spread, all read back from the recording's ``top_of_book`` and ``fills``.
Needs matplotlib, pyarrow and zstandard (``pip install "market-client[examples]"``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import anyio

from market_client import MarketClient, recording
from market_client.simulator import serve


async def record(directory: Path, duration: float, sym: str = "ABC") -> dict[str, object]:
    """Record ``duration`` seconds of the embedded simulator, trading ``sym`` a little."""
    # MD opens once the recorder listens, so the tables start from the snapshots.
    async with (
        serve(seed=7, flow_hz=200) as sim,
        MarketClient.session(sim.url, md=False) as client,
    ):
        async with client.record(directory, candles=[1000]) as recorder:
            await client.open_md()
            with anyio.move_on_after(duration):
                side = "buy"
                while True:
                    await client.place_order(sym, side=side, qty=1, type="market")
                    side = "sell" if side == "buy" else "buy"
                    await anyio.sleep(min(2.0, duration / 6))
        return recorder.stats()


def plot(directory: Path, png: Path, sym: str = "ABC") -> Path:
    """Mid price and spread from ``top_of_book``, the session's fills from ``fills``."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt
    import pyarrow.compute as pc

    rec = recording.open(directory)
    top = rec.dataset("top_of_book").to_table(filter=pc.field("sym") == sym)
    top = top.filter(pc.and_(pc.is_valid(top["bid_price"]), pc.is_valid(top["ask_price"])))
    top = top.sort_by("recv_ns")
    bid = [float(p) for p in top["bid_price"].to_pylist()]
    ask = [float(p) for p in top["ask_price"].to_pylist()]
    times = top["recv_ts"].to_pylist()
    fig, (ax, spread_ax) = plt.subplots(
        2, 1, figsize=(10, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot(times, [(b + a) / 2 for b, a in zip(bid, ask, strict=True)], lw=0.8, label="mid")
    if "fills" in rec.tables:
        fills = rec.dataset("fills").to_table(filter=pc.field("sym") == sym).to_pylist()
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            mine = [f for f in fills if f["side"] == side]
            ax.scatter(
                [f["recv_ts"] for f in mine],
                [float(f["price"]) for f in mine],
                marker=marker,
                color=color,
                s=60,
                zorder=3,
                label=f"own {side} fills",
            )
    ax.set_ylabel("price")
    ax.set_title(f"{sym}: mid price and the session's fills, from {directory}")
    ax.legend(loc="best")
    spread_ax.step(times, [a - b for b, a in zip(bid, ask, strict=True)], where="post", lw=0.8)
    spread_ax.set_ylabel("spread")
    spread_ax.set_xlabel("receive time (UTC)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


async def main(duration: float, out: Path | None, png: Path) -> None:
    import matplotlib  # noqa: F401 - fail before recording, not after

    directory = out or Path(tempfile.mkdtemp(prefix="market-client-rec-"))
    stats = await record(directory, duration)
    print(f"recorded {stats['fed']} frames into {directory}: {stats['rows']}")
    print(f"saved {plot(directory, png)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to record")
    parser.add_argument("--out", type=Path, default=None, help="recording folder (default: temp)")
    parser.add_argument("--png", type=Path, default=Path("record_and_plot.png"))
    args = parser.parse_args()
    anyio.run(main, args.duration, args.out, args.png)
