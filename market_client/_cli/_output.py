"""What the commands print: Rich tables for people, JSON lines for machines.

With ``--json`` every command prints wire shapes, one JSON object per line,
ready for ``jq``; without it, tables with aligned prices and local times.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Output", "align_decimals", "human_time"]


def human_time(ts_ns: int | None, *, millis: bool = True) -> str:
    """A nanosecond timestamp as local wall-clock time, ``HH:MM:SS.mmm``."""
    if not isinstance(ts_ns, int) or ts_ns <= 0:
        return "-"
    moment = datetime.fromtimestamp(ts_ns / 1e9)
    text = moment.strftime("%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if millis else text


def align_decimals(values: Sequence[object]) -> list[str]:
    """Decimal strings padded so that, right-justified, their points line up.

    ``["100.5", "99.25", None]`` becomes ``["100.5 ", " 99.25", "-"]``-like
    strings: every value gets as many characters after its point as the
    longest fraction in the column (spaces, not zeros: the tick is not ours to
    invent).
    """
    texts = ["-" if v is None else str(v) for v in values]
    widest = max((len(t) - t.index(".") - 1 for t in texts if "." in t), default=0)
    out = []
    for t in texts:
        if "." in t:
            out.append(t + " " * (widest - (len(t) - t.index(".") - 1)))
        else:  # an integer or "-": in the units column, blanks for the point and fraction
            out.append(t + " " * (widest + 1) if widest else t)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Output:
    """Prints one command's result, as tables or as JSON lines.

    Args:
        json_lines: Print JSON lines instead of tables.
        file: Where to print (default: standard output at the time of printing).
    """

    def __init__(self, json_lines: bool, file: IO[str] | None = None) -> None:
        self.json_lines = json_lines
        self._file = file
        self.console = Console(file=file, highlight=False, soft_wrap=False)

    # -- machines ---------------------------------------------------------------
    def line(self, obj: Mapping[str, Any]) -> None:
        """One JSON object on one line, flushed (for ``jq`` and pipes)."""
        out = self._file or sys.stdout
        out.write(json.dumps(obj, default=_jsonable, separators=(",", ":")) + "\n")
        out.flush()

    def lines(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """One JSON object per line."""
        for obj in objs:
            self.line(obj)

    # -- people -----------------------------------------------------------------
    def text(self, message: str | Text) -> None:
        """A line of text for people."""
        if isinstance(message, str):
            self.console.print(message, markup=False)
        else:
            self.console.print(message)

    def symbols(self, symbols: Sequence[Mapping[str, Any]]) -> None:
        """The ``symbols`` command."""
        if self.json_lines:
            return self.lines(symbols)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name in ("sym", "tick", "min qty", "lot", "status"):
            table.add_column(name, justify="left" if name in ("sym", "status") else "right")
        for s in symbols:
            table.add_row(s["sym"], s["tick"], str(s["min_qty"]), str(s["lot"]), s["status"])
        self.console.print(table)
        return None

    def book(self, book: Mapping[str, Any]) -> None:
        """The ``book`` command: a two-sided ladder, bids left and asks right, best first."""
        if self.json_lines:
            return self.line(book)
        bids, asks = book["bids"], book["asks"]
        table = Table(
            title=f"{book['sym']} book (seq {book['seq']})",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
        )
        table.add_column("bid qty", justify="right", style="green")
        table.add_column("bid", justify="right", style="bold green")
        table.add_column("ask", justify="right", style="bold red")
        table.add_column("ask qty", justify="right", style="red")
        bid_prices = align_decimals([p for p, _ in bids])
        ask_prices = align_decimals([p for p, _ in asks])
        for i in range(max(len(bids), len(asks))):
            table.add_row(
                str(bids[i][1]) if i < len(bids) else "",
                bid_prices[i] if i < len(bids) else "",
                ask_prices[i] if i < len(asks) else "",
                str(asks[i][1]) if i < len(asks) else "",
            )
        if not bids and not asks:
            table.add_row("", "(empty)", "", "")
        self.console.print(table)
        return None

    def candles(self, sym: str, interval_ms: int, candles: Sequence[Mapping[str, Any]]) -> None:
        """The ``candles`` command: oldest first, with local start times."""
        if self.json_lines:
            return self.lines(candles)
        table = Table(
            title=f"{sym} candles, {_interval_text(interval_ms)}",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
        )
        table.add_column("start")
        for name in ("open", "high", "low", "close", "volume", "trades"):
            table.add_column(name, justify="right")
        cols = {k: align_decimals([c[k] for c in candles]) for k in ("o", "h", "l", "c")}
        for i, c in enumerate(candles):
            table.add_row(
                human_time(c["t_ns"], millis=False),
                cols["o"][i],
                cols["h"][i],
                cols["l"][i],
                cols["c"][i],
                str(c["v"]),
                str(c["n"]),
            )
        if not candles:
            table.add_row("(no trades yet)", "", "", "", "", "", "")
        self.console.print(table)
        return None

    def orders(self, orders: Sequence[Mapping[str, Any]], title: str = "orders") -> None:
        """Orders as a table (or one JSON object per order)."""
        if self.json_lines:
            return self.lines(orders)
        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("order")
        table.add_column("sym")
        table.add_column("side")
        table.add_column("price", justify="right")
        for name in ("qty", "filled", "left"):
            table.add_column(name, justify="right")
        table.add_column("status")
        table.add_column("tif")
        table.add_column("time")
        prices = align_decimals([o.get("price") or None for o in orders])
        for o, price in zip(orders, prices, strict=True):
            table.add_row(
                o["order_id"],
                o["sym"],
                Text(o["side"], style="green" if o["side"] == "buy" else "red"),
                price if o.get("price") else "market",
                str(o["qty"]),
                str(o["filled_qty"]),
                str(o["leaves_qty"]),
                o["status"],
                o["tif"],
                human_time(o.get("ts_ns"), millis=False),
            )
        if not orders:
            table.add_row("(none)", "", "", "", "", "", "", "", "", "")
        self.console.print(table)
        return None

    def fills(self, fills: Sequence[Mapping[str, Any]], title: str = "fills") -> None:
        """Fills as a table."""
        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name in ("trade", "order", "sym", "side"):
            table.add_column(name)
        table.add_column("price", justify="right")
        table.add_column("qty", justify="right")
        table.add_column("liquidity")
        table.add_column("time")
        prices = align_decimals([f["price"] for f in fills])
        for f, price in zip(fills, prices, strict=True):
            table.add_row(
                f["trade_id"],
                f["order_id"],
                f["sym"],
                f["side"],
                price,
                str(f["qty"]),
                f["liquidity"],
                human_time(f.get("ts_ns")),
            )
        self.console.print(table)

    def order_reply(self, reply: Mapping[str, Any]) -> None:
        """A ``place``, ``cancel`` or ``history`` reply: the order, then its fills."""
        if self.json_lines:
            return self.line(reply)
        self.orders([reply["order"]], title="order")
        if reply.get("fills"):
            self.fills(reply["fills"])
        return None

    def portfolio(self, portfolio: Mapping[str, Any]) -> None:
        """The ``portfolio`` command: cash, then positions."""
        if self.json_lines:
            return self.line(portfolio)
        self.console.print(f"cash {portfolio['cash']}")
        positions = portfolio.get("positions", [])
        table = Table(title="positions", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("sym")
        table.add_column("qty", justify="right")
        table.add_column("avg price", justify="right")
        table.add_column("realized P&L", justify="right")
        avg = align_decimals([p["avg_price"] for p in positions])
        pnl = align_decimals([p["realized_pnl"] for p in positions])
        for p, a, r in zip(positions, avg, pnl, strict=True):
            table.add_row(p["sym"], str(p["qty"]), a, r)
        if not positions:
            table.add_row("(none)", "", "", "")
        self.console.print(table)
        return None

    def fields(self, obj: Mapping[str, Any]) -> None:
        """Key and value lines (``whoami``, ``login``), or one JSON object."""
        if self.json_lines:
            return self.line(obj)
        width = max(len(k) for k in obj)
        for key, value in obj.items():
            self.console.print(f"{key:<{width}}  {'-' if value is None else value}", markup=False)
        return None


def _interval_text(interval_ms: int) -> str:
    for unit, ms in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if interval_ms % ms == 0:
            return f"{interval_ms // ms}{unit}"
    return f"{interval_ms} ms"
