"""For users of the earlier asyncio client: the same calls, in plain asyncio.

``MarketClient.connect()`` / ``aclose()``, ``on_md_event`` / ``on_cmd_event``
callbacks and ``set_event_hook`` work as they did; under the hood the session
is a task group. ``async with MarketClient.session(url)`` is the modern form.

    python examples/seed_asyncio.py                    # against an embedded simulator
    python examples/seed_asyncio.py http://localhost:8000
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

from market_client import MarketClient
from market_client.simulator import serve

md_seen: Counter[str] = Counter()


def on_md(msg: dict[str, Any]) -> None:  # sync callbacks run inline
    md_seen[msg["ch"]] += 1


async def on_cmd(frame: dict[str, Any]) -> None:  # async ones run in the session's task group
    print("event:", frame["event"], frame["payload"]["order"]["status"])


async def run(url: str) -> None:
    client = await MarketClient.connect(
        url, connect_md=True, on_md_event=on_md, on_cmd_event=on_cmd
    )
    try:
        sym = (await client.get_symbols())[0]["sym"]
        print("best bid/ask:", client.best_bid_ask(sym))
        placed = await client.place_order(
            sym, side="buy", price="1.00", qty=1, client_order_id="seed-1"
        )
        print("placed:", placed["order"]["order_id"], placed["order"]["status"])
        await client.cancel_order(client_order_id="seed-1")
        await asyncio.sleep(0.3)
        print("transactions:", [t["event"] for t in client.get_transactions()])
        print("md messages by channel:", dict(md_seen))
    finally:
        await client.aclose()


async def main() -> None:
    if len(sys.argv) > 1:
        await run(sys.argv[1])
        return
    async with serve(seed=1, flow_hz=50) as sim:
        await run(sim.url)


if __name__ == "__main__":
    asyncio.run(main())
