"""The demo: a live dashboard of one session, laid out for the terminal it runs in.

At 80x24 it shows the top of book of every symbol, one candle chart, your
orders and fills, the latest trades and a health line; from 120 columns and
36 rows it adds the depth ladder and a chart per symbol. Every column has a
fixed width, so nothing jumps between frames.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import anyio
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._client import MarketClient
from .._exceptions import GatewayError
from ..simulator._server import serve

__all__ = ["Dashboard", "candle_chart", "run_demo"]

LABEL_WIDTH = 10
WIDE_COLUMNS = 120
TALL_ROWS = 36


def _places(tick: Decimal) -> int:
    exponent = tick.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 2


def candle_chart(
    candles: Sequence[Any], height: int, width: int, tick: Decimal = Decimal("0.01")
) -> list[Text]:
    """An OHLC chart as ``height`` lines of Rich text, ``width`` columns wide.

    A column per candle, newest on the right: the body ``┃`` spans open to
    close (one cell when they are equal, so such a candle stays visible), the
    wick ``│`` low to high. Rows are whole ticks when the range is narrow, and
    price labels are distinct (a label equal to the one above is left out).

    Args:
        candles: Candles with Decimal ``o``, ``h``, ``l``, ``c``, oldest first.
        height: Lines to return (the chart is padded to it).
        width: Columns, price labels included.
        tick: The symbol's tick, for the labels' decimals and the row size.

    Returns:
        Exactly ``height`` lines.
    """
    plot_width = max(1, width - LABEL_WIDTH)
    shown = list(candles)[-plot_width:]
    if not shown:
        return [Text("waiting for trades…", style="dim")] + [Text("") for _ in range(height - 1)]
    lo = min(c["l"] for c in shown)
    hi = max(c["h"] for c in shown)
    ticks = int((hi - lo) / tick) if tick > 0 else height
    rows = max(1, min(height, ticks + 1))
    step = (hi - lo) / (rows - 1) if rows > 1 else Decimal(0)
    places = _places(tick)

    def row_of(price: Decimal) -> int:
        return 0 if step == 0 else int(((price - lo) / step).to_integral_value())

    label_every = 1 if rows <= 8 else 2
    lines: list[Text] = [Text("") for _ in range(height - rows)]
    last_label = ""
    for row in range(rows - 1, -1, -1):
        label = f"{lo + step * row:.{places}f}"
        show = (row % label_every == 0 or row == rows - 1) and label != last_label
        line = Text(f"{label:>{LABEL_WIDTH - 1}} " if show else " " * LABEL_WIDTH, style="dim")
        if show:
            last_label = label
        for c in shown:
            body_lo, body_hi = sorted((row_of(c["o"]), row_of(c["c"])))
            style = "green" if c["c"] >= c["o"] else "red"
            if body_lo <= row <= body_hi:
                line.append("┃", style=style)
            elif row_of(c["l"]) <= row <= row_of(c["h"]):
                line.append("│", style=style)
            else:
                line.append(" ")
        lines.append(line)
    return lines


def _fit(text: Text | str, width: int) -> Text:
    """One line, cut with an ellipsis at ``width`` and padded to it (stable columns)."""
    line = text.copy() if isinstance(text, Text) else Text(text)
    line.truncate(width, overflow="ellipsis", pad=True)
    return line


class Dashboard:
    """What the demo shows, rebuilt from the session's state at every refresh.

    A Rich renderable: it lays itself out for the width and height it is
    given (`Console.size`), so one object serves 80x24 and wide screens.

    Args:
        client: The open session.
        syms: Symbols to show.
        ticks: Each symbol's tick (labels and rows of the charts).
    """

    def __init__(
        self, client: MarketClient, syms: list[str], ticks: dict[str, Decimal] | None = None
    ) -> None:
        self.client = client
        self.syms = syms
        self.ticks = ticks or {}
        self.trades: deque[Text] = deque(maxlen=30)
        self.orders: deque[Text] = deque(maxlen=30)
        self.last_trade: dict[str, str] = {}
        self.latency_ms: float | None = None
        self.last_md = 0
        self.last_t = time.monotonic()
        self.rate = 0.0

    # -- what happened -----------------------------------------------------------
    def on_trade(self, data: dict[str, Any]) -> None:
        """Remember a market trade."""
        sym, side = str(data.get("sym")), str(data.get("aggressor"))
        self.last_trade[sym] = str(data.get("price"))
        self.trades.append(
            Text(
                f"{sym:<4} {data.get('qty'):>4} @ {data.get('price')} ({side})",
                style="green" if side == "buy" else "red",
            )
        )

    def on_order(self, kind: str, order: Mapping[str, Any], fill: Mapping[str, Any] | None) -> None:
        """Remember one of our order events (a fill shows its own quantity and price)."""
        if fill is not None:
            what = f"{fill['qty']} @ {fill['price']}"
        else:
            what = f"{order['filled_qty']}/{order['qty']} @ {order.get('price') or 'market'}"
        line = f"{kind.split('.')[-1]:<10}{order['sym']:<4} {order['side']:<4} {what}"
        self.orders.append(Text(line, style="bold" if fill is not None else ""))

    # -- drawing -----------------------------------------------------------------
    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        height = options.height or console.size.height
        yield from self.layout(options.max_width, height)

    def layout(self, width: int, height: int) -> Iterator[RenderableType]:
        """The frame for a ``width`` x ``height`` terminal (one line is left for the cursor)."""
        wide = width >= WIDE_COLUMNS and height >= TALL_ROWS
        budget = height - 1
        books = self._books(width, ladder=wide)
        used = 2 + len(self.syms) + (1 if wide else 0)  # header, rule, rows (+ title)
        health = self._health(width)
        middle = max(4, budget - used - 1)
        yield books
        if wide:
            panel_rows = min(10, max(3, middle // 3))
            chart_rows = max(3, min(24, middle - panel_rows - 2) - 1)
            yield self._charts(self.syms, width, chart_rows)
            half = (width - 1) // 2
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=half, no_wrap=True)
            grid.add_column(width=width - half - 1, no_wrap=True)
            grid.add_row(
                self._lines("latest trades", self.trades, half, panel_rows),
                self._lines("my orders and fills", self.orders, width - half - 1, panel_rows),
            )
            yield grid
        else:
            right = min(40, max(26, width * 2 // 5 + 2))
            left = width - right - 1
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=left, no_wrap=True)
            grid.add_column(width=right, no_wrap=True)
            order_rows = max(1, (middle - 2) * 3 // 5)
            trade_rows = max(1, middle - 2 - order_rows)
            grid.add_row(
                self._charts(self.syms[:1], left, middle - 1, title=True),
                Group(
                    self._lines("my orders and fills", self.orders, right, order_rows),
                    self._lines("latest trades", self.trades, right, trade_rows),
                ),
            )
            yield grid
        yield health

    def _books(self, width: int, *, ladder: bool) -> Table:
        table = Table(
            title="Top of book and depth" if ladder else None,
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            expand=False,
        )
        table.add_column("sym", width=4, no_wrap=True)
        table.add_column("bid qty", width=7, justify="right", no_wrap=True)
        table.add_column("bid", width=10, justify="right", no_wrap=True, style="green")
        table.add_column("ask", width=10, justify="right", no_wrap=True, style="red")
        table.add_column("ask qty", width=7, justify="right", no_wrap=True)
        table.add_column("last", width=10, justify="right", no_wrap=True)
        if ladder:
            table.add_column("depth: bid qty (5 levels) | ask qty", width=55, no_wrap=True)
        for sym in self.syms:
            try:
                snap = self.client.book_snapshot(sym, depth=5)
            except LookupError:
                snap = {"sym": sym, "seq": 0, "bids": [], "asks": []}
            bids, asks = snap["bids"], snap["asks"]
            cells = [
                sym,
                str(bids[0][1]) if bids else "-",
                str(bids[0][0]) if bids else "-",
                str(asks[0][0]) if asks else "-",
                str(asks[0][1]) if asks else "-",
                self.last_trade.get(sym, "-"),
            ]
            if ladder:
                depth = (
                    " ".join(f"{q:>4}" for _, q in reversed(bids))
                    + " | "
                    + " ".join(f"{q:<4}" for _, q in asks)
                )
                cells.append(depth)
            table.add_row(*cells)
        return table

    def _charts(self, syms: list[str], width: int, rows: int, *, title: bool = True) -> Table:
        each = max(LABEL_WIDTH + 5, (width - (len(syms) - 1)) // max(1, len(syms)))
        grid = Table.grid(padding=(0, 1))
        for _ in syms:
            grid.add_column(width=each, no_wrap=True)
        heads = [
            _fit(Text(f"{sym} candles (1 s): ┃ open-close, │ low-high", style="bold"), each)
            for sym in syms
        ]
        if title:
            grid.add_row(*heads)
        columns = []
        for sym in syms:
            try:
                candles = self.client.get_candles(sym)
            except LookupError:
                candles = []
            tick = self.ticks.get(sym, Decimal("0.01"))
            columns.append(candle_chart(candles, rows, each, tick))
        for i in range(rows):
            grid.add_row(*(_fit(col[i], each) for col in columns))
        return grid

    @staticmethod
    def _lines(title: str, lines: deque[Text], width: int, rows: int) -> Group:
        newest = list(reversed(lines))[:rows]
        body = [_fit(line, width) for line in newest]
        body += [_fit("", width) for _ in range(rows - len(body))]
        return Group(_fit(Text(title, style="bold underline"), width), *body)

    def _health(self, width: int) -> Text:
        now = time.monotonic()
        stats = self.client.stats()
        md = stats["md_messages"]
        if now - self.last_t >= 1:
            self.rate = (md - self.last_md) / (now - self.last_t)
            self.last_md, self.last_t = md, now
        line = Text("health ", style="bold")
        for name, link in stats["links"].items():
            up = link["up"]
            again = f" ({link['reconnects']})" if link["reconnects"] else ""
            line.append(
                f"{name.upper()} {'up' if up else 'down'}{again}  ", style="" if up else "red"
            )
        lat = f"{self.latency_ms:.2f} ms" if self.latency_ms is not None else "- ms"
        line.append(
            f"{lat}  {self.rate:,.0f} msg/s  resyncs {sum(stats['resyncs'].values())}  "
            f"requests {stats['requests']}  malformed {stats['malformed_frames']}"
        )
        return _fit(line, width)


async def run_demo(
    url: str | None,
    duration: float | None,
    flow_hz: float,
    console: Console | None = None,
    stop: anyio.Event | None = None,
) -> dict[str, Any]:
    """Run the dashboard until ``duration`` passes or ``stop`` is set; returns a summary.

    Args:
        url: A gateway, or None for an embedded simulator.
        duration: Seconds to run (None: until ``stop``).
        flow_hz: The embedded simulator's background flow.
        console: Where to draw (default: the terminal).
        stop: Set it to end the demo early (Ctrl-C does).

    Returns:
        Counters and the final top of book of each symbol.
    """
    console = console or Console()
    stop = stop or anyio.Event()
    summary: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            sim = await stack.enter_async_context(serve(seed=7, flow_hz=flow_hz))
            url = sim.url
            console.print(f"embedded simulator on {url}")
        client = await stack.enter_async_context(MarketClient.session(url))
        console.print(f"session open on {url} as {client.user_id}; Ctrl-C ends the demo")
        symbols = await client.get_symbols()
        syms = [s["sym"] for s in symbols]
        for sym in syms:
            await client.configure_candles(sym, interval_ms=1000, depth=200)
        board = Dashboard(client, syms, {s["sym"]: Decimal(s["tick"]) for s in symbols})
        lots = {s["sym"]: s["lot"] for s in symbols}

        async def watch_events() -> None:
            async with client.events("md.trade", "order") as stream:
                async for evt in stream:
                    if evt.kind == "md.trade":
                        board.on_trade(evt.data)
                    elif evt.order is not None:
                        board.on_order(evt.kind, evt.order, evt.fill)

        async def trade_a_little() -> None:
            while True:
                for sym in syms:
                    top = client.best_bid_ask(sym)
                    if top["bid"] is not None:
                        t0 = time.perf_counter()
                        placed = await client.place_order(
                            sym, "buy", top["bid"]["price"], lots[sym]
                        )
                        board.latency_ms = (time.perf_counter() - t0) * 1000
                        await anyio.sleep(0.7)
                        if placed["order"]["status"] == "open":
                            try:
                                await client.cancel_order(placed["order"]["order_id"])
                            except GatewayError as exc:
                                # It filled while we waited: the normal race of a live market.
                                if exc.code != "not_found":
                                    raise
                    await client.place_order(sym, "sell", type="market", qty=lots[sym])
                    await anyio.sleep(0.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_events)
            tg.start_soon(trade_a_little)
            with Live(board, console=console, refresh_per_second=4, transient=False):
                with anyio.move_on_after(duration if duration is not None else math.inf):
                    await stop.wait()
                # The last frame and the summary are taken together (no await between).
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
            if not console.is_terminal:
                # Live ends its last frame without a newline when it is not drawing on a
                # terminal: end the line so that what follows starts on its own.
                console.line()
            tg.cancel_scope.cancel()
    return summary


def _top_prices(client: MarketClient, sym: str) -> dict[str, str | None]:
    top = client.best_bid_ask(sym)
    bid, ask = top["bid"], top["ask"]
    return {
        "bid": None if bid is None else str(bid["price"]),
        "ask": None if ask is None else str(ask["price"]),
    }


def save_screenshot(path: str, width: int = 120, height: int = 40, seconds: float = 8) -> None:
    """Run the demo against the embedded simulator and save its last frame as SVG.

    Args:
        path: The SVG file to write.
        width: Terminal columns to lay out for.
        height: Terminal rows to lay out for.
        seconds: How long to run first (candles need some seconds to show).
    """
    import io

    # Not a terminal: Live draws only the final frame, which is what gets recorded.
    console = Console(
        record=True,
        file=io.StringIO(),
        width=width,
        height=height,
        force_terminal=False,
        color_system="truecolor",
    )
    anyio.run(run_demo, None, seconds, 300.0, console)
    console.save_svg(path, title="market-client demo")
