"""A market-making bot: quote around the mid, lean against inventory, stay within limits.

Every ``--period`` seconds it cancels its quotes and places a new bid and ask
``--spread`` ticks from the local mid, skewed by its inventory (long: quotes
lower, to sell more; short: higher), and stops quoting the side that would
push the position past ``--max-position``. Fills arrive as events while it
runs. Ctrl-C (or ``--duration``) ends it; it cancels what it left resting.

    python examples/market_maker.py                    # against an embedded simulator
    python examples/market_maker.py --url http://localhost:8000 --sym ABC
    python examples/market_maker.py --period 0.2 --spread 3 --max-position 5 --duration 10

``--spread`` is in ticks, ``--max-position`` in lots.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass, field
from decimal import Decimal

import anyio

from market_client import GatewayError, MarketClient
from market_client.simulator import serve


@dataclass
class MarketMaker:
    client: MarketClient
    sym: str
    tick: Decimal
    lot: int
    spread_ticks: int = 2
    skew_ticks_per_lot: Decimal = Decimal("0.5")
    max_position: int = 10
    position: int = 0
    fills: int = 0
    quotes: int = 0
    resting: list[str] = field(default_factory=list)

    def quote_prices(self, mid: Decimal) -> tuple[Decimal, Decimal]:
        """Bid and ask around ``mid``, shifted against the inventory, on the tick."""
        skew = self.skew_ticks_per_lot * self.position / self.lot * self.tick
        half = self.spread_ticks * self.tick
        bid = ((mid - half - skew) / self.tick).to_integral_value(rounding="ROUND_FLOOR")
        ask = ((mid + half - skew) / self.tick).to_integral_value(rounding="ROUND_CEILING")
        return bid * self.tick, max(ask, bid + 1) * self.tick

    async def requote(self) -> None:
        for order_id in self.resting:
            try:
                await self.client.cancel_order(order_id)
            except GatewayError as exc:
                if exc.code != "not_found":  # it filled meanwhile: fine
                    raise
        self.resting.clear()
        top = self.client.best_bid_ask(self.sym)
        if top["bid"] is None or top["ask"] is None:
            return  # one-sided market: do not guess a mid
        bid, ask = self.quote_prices((top["bid"]["price"] + top["ask"]["price"]) / 2)
        if self.position + self.lot <= self.max_position:
            placed = await self.client.place_order(self.sym, "buy", bid, self.lot)
            self.resting.append(placed["order"]["order_id"])
        if self.position - self.lot >= -self.max_position:
            placed = await self.client.place_order(self.sym, "sell", ask, self.lot)
            self.resting.append(placed["order"]["order_id"])
        self.quotes += 1

    async def track_fills(self) -> None:
        async for evt in self.client.events("order.fill"):
            fill = evt.fill
            if fill is not None and fill["sym"] == self.sym:
                self.position += fill["qty"] if fill["side"] == "buy" else -fill["qty"]
                self.fills += 1
                side, qty, price = fill["side"], fill["qty"], fill["price"]
                print(f"fill {side:4} {qty} @ {price}  position {self.position}")

    async def run(self, period: float) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.track_fills)
            try:
                while True:
                    await self.requote()
                    await anyio.sleep(period)
            finally:
                with anyio.CancelScope(shield=True):
                    # Ask the gateway, not self.resting: an order placed just as we were
                    # cancelled rests there although its reply never reached us.
                    for order in await self.client.list_orders():
                        if order["sym"] == self.sym:
                            with contextlib.suppress(GatewayError):
                                await self.client.cancel_order(order["order_id"])
                tg.cancel_scope.cancel()


async def make_markets(
    url: str,
    sym: str,
    duration: float,
    period: float = 0.5,
    spread: int = 2,
    max_position: int = 10,
) -> MarketMaker:
    """Quote ``sym`` for ``duration`` seconds; returns the bot (position, quotes, fills).

    Args:
        url: The gateway.
        sym: The symbol to quote.
        duration: Seconds to run.
        period: Seconds between requotes.
        spread: Ticks between the mid and each quote.
        max_position: The largest position either way, in lots.
    """
    async with MarketClient.session(url, symbols=[sym]) as client:
        spec = next(s for s in await client.get_symbols() if s["sym"] == sym)
        bot = MarketMaker(
            client,
            sym,
            Decimal(spec["tick"]),
            spec["lot"],
            spread_ticks=spread,
            max_position=max_position * spec["lot"],
        )
        with anyio.move_on_after(duration):
            await bot.run(period)
        portfolio = await client.get_portfolio()
        cash = portfolio["cash"]
        print(f"{bot.quotes} quotes, {bot.fills} fills, position {bot.position}, cash {cash}")
        return bot


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running gateway (default: an embedded simulator)")
    parser.add_argument("--sym", default="ABC")
    parser.add_argument("--duration", type=float, default=float("inf"), help="seconds to run")
    parser.add_argument("--period", type=float, default=0.5, help="seconds between requotes")
    parser.add_argument("--spread", type=int, default=2, help="ticks from the mid to a quote")
    parser.add_argument("--max-position", type=int, default=10, help="largest position, in lots")
    args = parser.parse_args()
    options = {"period": args.period, "spread": args.spread, "max_position": args.max_position}
    if args.url:
        await make_markets(args.url, args.sym, args.duration, **options)
        return
    async with serve(seed=3, flow_hz=200) as sim:
        await make_markets(sim.url, args.sym, args.duration, **options)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)  # or anyio.run(main, backend="trio")
