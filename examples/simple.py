"""The seed quickstart, runnable: connect, read symbols, book and candles, trade.

python examples/simple.py                          # against an embedded simulator
python examples/simple.py http://localhost:8000    # against a running gateway
"""

from __future__ import annotations

import sys

import anyio

from market_client import MarketClient
from market_client.simulator import serve


async def quickstart(url: str) -> None:
    # One call connects: handshake -> CMD -> login -> MD
    client = await MarketClient.connect(url, connect_md=True)
    try:
        symbols = await client.get_symbols()
        print("symbols:", [s["sym"] for s in symbols])
        sym = symbols[0]["sym"]
        book = await client.get_book(sym, depth=3)
        print("book:", book)
        print("top of book (local, from MD):", client.best_bid_ask(sym))
        await client.configure_candles(sym, interval_ms=1000, depth=50)
        print("candles:", client.get_candles(sym)[-3:])
        placed = await client.place_order(sym, side="buy", type="market", qty=1)
        print("market buy:", placed["order"]["status"], [f["price"] for f in placed["fills"]])
        print("orders:", await client.list_orders())
        print("transactions:", [t["event"] for t in client.get_transactions()])
    finally:
        await client.aclose()


async def main() -> None:
    if len(sys.argv) > 1:
        await quickstart(sys.argv[1])
        return
    async with serve(seed=1, flow_hz=50) as sim:
        await quickstart(sim.url)


if __name__ == "__main__":
    anyio.run(main)  # asyncio; anyio.run(main, backend="trio") works the same
