"""The ``market-client`` command: serve the simulator, run the demo, query a gateway."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import anyio

from ._client import MarketClient
from ._exceptions import GatewayError, MarketClientError
from .recording import _cli as recording_cli
from .simulator import __main__ as sim_main
from .simulator._server import serve

__all__ = ["main"]


def _candle_chart(candles: Sequence[Any], height: int = 6, width: int = 30) -> Any:
    """A small OHLC chart as Rich text: a column per candle, body ``┃`` and wick ``│``."""
    from rich.text import Text

    shown = list(candles)[-width:]
    if not shown:
        return Text("waiting for trades…", style="dim")
    lo = min(c["l"] for c in shown)
    hi = max(c["h"] for c in shown)
    span = (hi - lo) or Decimal(1)

    def row_of(price: Decimal) -> int:
        return int((price - lo) / span * (height - 1))

    text = Text()
    for row in range(height - 1, -1, -1):
        label = lo + span * row / (height - 1) if height > 1 else lo
        text.append(f"{label:>9.2f} ", style="dim")
        for c in shown:
            body_lo, body_hi = sorted((row_of(c["o"]), row_of(c["c"])))
            style = "green" if c["c"] >= c["o"] else "red"
            if body_lo <= row <= body_hi:
                text.append("┃", style=style)
            elif row_of(c["l"]) <= row <= row_of(c["h"]):
                text.append("│", style=style)
            else:
                text.append(" ")
        text.append("\n")
    return text


class _Dashboard:
    """What the demo shows, rebuilt from the session's state once per refresh."""

    def __init__(self, client: MarketClient, syms: list[str]) -> None:
        self.client = client
        self.syms = syms
        self.trades: deque[str] = deque(maxlen=8)
        self.orders: deque[str] = deque(maxlen=8)
        self.latency_ms: float | None = None
        self.started = time.monotonic()
        self.last_md = 0
        self.last_t = self.started
        self.rate = 0.0

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        now = time.monotonic()
        md = self.client.stats()["md_messages"]
        if now - self.last_t >= 1:
            self.rate = (md - self.last_md) / (now - self.last_t)
            self.last_md, self.last_t = md, now
        books = Table(title="Top of book and depth", expand=True)
        for col in (
            "sym",
            "bid qty",
            "bid",
            "ask",
            "ask qty",
            "ladder (5 levels a side)",
        ):
            books.add_column(col)
        for sym in self.syms:
            snap = self.client.book_snapshot(sym, depth=5)
            bids, asks = snap["bids"], snap["asks"]
            ladder = (
                " ".join(f"{q}" for _, q in reversed(bids))
                + " | "
                + " ".join(f"{q}" for _, q in asks)
            )
            books.add_row(
                sym,
                str(bids[0][1]) if bids else "-",
                str(bids[0][0]) if bids else "-",
                str(asks[0][0]) if asks else "-",
                str(asks[0][1]) if asks else "-",
                ladder,
            )
        charts = Table(title="Candles (1 s): body ┃ open to close, wick │ low to high", expand=True)
        for sym in self.syms:
            charts.add_column(sym)
        charts.add_row(*(_candle_chart(self.client.get_candles(sym)) for sym in self.syms))
        side = Table.grid(expand=True)
        side.add_column()
        side.add_column()
        trades = Table(title="Latest trades", expand=True)
        trades.add_column("trade")
        for line in reversed(self.trades):
            trades.add_row(line)
        orders = Table(title="My orders and fills", expand=True)
        orders.add_column("event")
        for line in reversed(self.orders):
            orders.add_row(line)
        side.add_row(trades, orders)
        stats = self.client.stats()
        lat = f"{self.latency_ms:.2f} ms" if self.latency_ms is not None else "-"
        links = "  ".join(
            f"{name.upper()} {'up' if link['up'] else '[red]down[/red]'}"
            f" ({link['reconnects']} reconnects)"
            for name, link in stats["links"].items()
        )
        health = (
            f"[b]health[/b]  {links}   request latency {lat}   MD {self.rate:,.0f} msg/s   "
            f"resyncs {sum(stats['resyncs'].values())}   requests {stats['requests']}   "
            f"malformed {stats['malformed_frames']}"
        )
        return Group(books, charts, side, health)


async def _demo(
    url: str | None, duration: float | None, flow_hz: float, console: Any = None
) -> dict[str, Any]:
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    summary: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            sim = await stack.enter_async_context(serve(seed=7, flow_hz=flow_hz))
            url = sim.url
            console.print(f"embedded simulator on {url}")
        client = await stack.enter_async_context(MarketClient.session(url))
        syms = [s["sym"] for s in await client.get_symbols()]
        for sym in syms:
            await client.configure_candles(sym, interval_ms=1000, depth=60)
        board = _Dashboard(client, syms)

        async def watch_events() -> None:
            async for evt in client.events("md.trade", "order"):
                d = evt.data
                if evt.kind == "md.trade":
                    board.trades.append(f"{d['sym']} {d['qty']} @ {d['price']} ({d['aggressor']})")
                else:
                    o = d["payload"]["order"]
                    board.orders.append(
                        f"{evt.kind.split('.')[1]:9} {o['sym']} {o['side']} "
                        f"{o['filled_qty']}/{o['qty']} @ {o['price'] or 'market'}"
                    )

        async def trade_a_little() -> None:
            while True:
                for sym in syms:
                    top = client.best_bid_ask(sym)
                    lot = next(s["lot"] for s in await client.get_symbols() if s["sym"] == sym)
                    if top["bid"] is not None:
                        t0 = time.perf_counter()
                        placed = await client.place_order(sym, "buy", top["bid"]["price"], lot)
                        board.latency_ms = (time.perf_counter() - t0) * 1000
                        await anyio.sleep(0.7)
                        if placed["order"]["status"] == "open":
                            try:
                                await client.cancel_order(placed["order"]["order_id"])
                            except GatewayError as exc:
                                # It filled while we waited: the normal race of a live market.
                                if exc.code != "not_found":
                                    raise
                    await client.place_order(sym, "sell", type="market", qty=lot)
                    await anyio.sleep(0.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_events)
            tg.start_soon(trade_a_little)
            with Live(
                board.render(), console=console, refresh_per_second=4, transient=False
            ) as live:
                with anyio.move_on_after(duration or float("inf")):
                    while True:
                        await anyio.sleep(0.25)
                        live.update(board.render())
                # The last frame and the summary are taken together (no await between).
                live.update(board.render())
                stats = client.stats()
                summary = {
                    "symbols": syms,
                    "md_messages": stats["md_messages"],
                    "requests": stats["requests"],
                    "resyncs": sum(stats["resyncs"].values()),
                    "order_events": stats["cmd_events"],
                    "best_bid_ask": {s: _top_prices(client, s) for s in syms},
                    "candles": {s: len(client.get_candles(s)) for s in syms},
                }
            tg.cancel_scope.cancel()
    return summary


def _top_prices(client: MarketClient, sym: str) -> dict[str, str | None]:
    top = client.best_bid_ask(sym)
    bid, ask = top["bid"], top["ask"]
    return {
        "bid": None if bid is None else str(bid["price"]),
        "ask": None if ask is None else str(ask["price"]),
    }


async def _query(args: argparse.Namespace) -> Any:
    async with MarketClient.session(
        args.url,
        md=args.command == "watch",
        token=args.token,
        symbols=[args.sym] if args.command == "watch" else None,
    ) as client:
        if args.command == "symbols":
            return await client.get_symbols()
        if args.command == "book":
            return await client.get_book(args.sym, depth=args.depth)
        if args.command == "orders":
            return await client.list_orders("all" if args.all else "open")
        if args.command == "candles":
            seconds = int(args.interval.rstrip("s"))
            return await client.configure_candles(
                args.sym, interval_ms=seconds * 1000, depth=args.limit
            )
        if args.command == "place":
            return await client.place_order(
                args.sym,
                args.side,
                args.price,
                args.qty,
                tif=args.tif,
                type="market" if args.price is None else "limit",
            )
        if args.command == "cancel":
            return await client.cancel_order(args.order_id)
        if args.command == "watch":
            async for evt in client.events("md.trade", "md.book"):
                top = client.best_bid_ask(args.sym)
                print(
                    json.dumps(
                        {"kind": evt.kind, "bid": top["bid"], "ask": top["ask"]}, default=str
                    ),
                    flush=True,
                )
        return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="market-client", description="Client and simulator for the HFT gateway."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    sim_main.add_arguments(sub.add_parser("sim", help="serve the simulator gateway"))
    recording_cli.add_commands(sub)
    demo = sub.add_parser("demo", help="live dashboard against the embedded simulator")
    demo.add_argument("--url", default=None, help="a gateway to use instead of the embedded one")
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds to run, then print a summary (default: until Ctrl-C)",
    )
    demo.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    demo.add_argument("--flow-hz", type=float, default=60.0, help="embedded simulator's flow")
    for name, help_text in (
        ("symbols", "list symbols"),
        ("book", "show a book"),
        ("orders", "list your orders"),
        ("candles", "show candles"),
        ("place", "place an order"),
        ("cancel", "cancel an order"),
        ("watch", "stream a symbol's top of book"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--url", default="http://127.0.0.1:8000")
        p.add_argument("--token", default=None, help="resume this user")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
        if name in ("book", "candles", "place", "watch"):
            p.add_argument("sym")
        if name == "book":
            p.add_argument("--depth", type=int, default=10)
        if name == "orders":
            p.add_argument("--all", action="store_true")
        if name == "candles":
            p.add_argument("--interval", default="1s")
            p.add_argument("--limit", type=int, default=20)
        if name == "place":
            p.add_argument("side", choices=("buy", "sell"))
            p.add_argument("qty", type=int)
            p.add_argument("price", nargs="?", default=None, help="omit for a market order")
            p.add_argument("--tif", default="GTC", choices=("GTC", "IOC", "FOK"))
        if name == "cancel":
            p.add_argument("order_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``market-client``."""
    args = _parser().parse_args(argv)
    if args.command == "sim":
        return sim_main.run(args)
    if args.command in recording_cli.COMMANDS:
        return recording_cli.run(args)
    try:
        if args.command == "demo":
            summary = anyio.run(_demo, args.url, args.duration, args.flow_hz, backend=args.backend)
            print(json.dumps(summary, indent=2, default=str))
            return 0
        result = anyio.run(_query, args, backend=args.backend)
    except KeyboardInterrupt:
        return 130
    except (MarketClientError, ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"market-client: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=None if args.json else 2, default=str))
    return 0
