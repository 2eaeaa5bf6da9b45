"""From frames to table rows: the tables' schemas and the sans-I/O row builder.

`TableBuilder` decodes a batch of frames and appends rows to per-partition
column lists (`Rows`); `Rows.to_arrow` turns them into an Arrow table with
the table's schema. Nothing here touches a file.

Prices are stored as exact ``decimal128(18, scale)`` where ``scale`` is the
largest tick scale among the recording's symbols (one type per column across
every file, so engines unify the partitions; every on-tick price is exact).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson

from .._wire import PriceError, parse_price

__all__ = ["SCHEMA_VERSION", "TABLES", "Rows", "TableBuilder", "arrow_schema", "tick_scale"]

SCHEMA_VERSION = "1"
NS_PER_DAY = 86_400 * 10**9
MAX_UNSCALED = 10**18  # decimal128(18, s) holds |unscaled| < 10**18
# Increments kept per symbol while its book is unknown (before its first
# snapshot, or after a hole): a snapshot that comes later (a resync reply)
# replays those above its seq, as the client's own Sequencer does.
HELD_INCREMENTS = 10_000

# Column kinds: "i64", "i32", "str", "dec" (price), "bool". The int64 "*_ns"
# columns named in TIMES are the exact times; a timestamp[us, UTC] column beside
# each is for reading (microseconds: what Spark and Python datetimes hold).
TABLES: dict[str, list[tuple[str, str]]] = {
    "trades": [
        ("ts_ns", "i64"),
        ("recv_ns", "i64"),
        ("seq", "i64"),
        ("trade_id", "str"),
        ("price", "dec"),
        ("qty", "i64"),
        ("aggressor", "str"),
    ],
    "book_deltas": [
        ("ts_ns", "i64"),
        ("recv_ns", "i64"),
        ("seq", "i64"),
        ("side", "str"),
        ("price", "dec"),
        ("qty", "i64"),
    ],
    "book_snapshots": [
        ("ts_ns", "i64"),
        ("recv_ns", "i64"),
        ("seq", "i64"),
        ("source", "str"),
        ("side", "str"),
        ("level", "i32"),
        ("price", "dec"),
        ("qty", "i64"),
    ],
    "top_of_book": [
        ("ts_ns", "i64"),
        ("recv_ns", "i64"),
        ("seq", "i64"),
        ("bid_price", "dec"),
        ("bid_qty", "i64"),
        ("ask_price", "dec"),
        ("ask_qty", "i64"),
    ],
    "orders": [
        ("ts_ns", "i64"),
        ("recv_ns", "i64"),
        ("event_seq", "i64"),
        ("event", "str"),
        ("order_id", "str"),
        ("client_order_id", "str"),
        ("side", "str"),
        ("type", "str"),
        ("tif", "str"),
        ("price", "dec"),
        ("qty", "i64"),
        ("filled_qty", "i64"),
        ("leaves_qty", "i64"),
        ("status", "str"),
        ("reason", "str"),
    ],
    "fills": [
        ("ts_ns", "i64"),
        ("recv_ns", "i64"),
        ("event_seq", "i64"),
        ("trade_id", "str"),
        ("order_id", "str"),
        ("client_order_id", "str"),
        ("side", "str"),
        ("price", "dec"),
        ("qty", "i64"),
        ("liquidity", "str"),
    ],
    "candles": [
        ("t_ns", "i64"),
        ("interval_ms", "i64"),
        ("open", "dec"),
        ("high", "dec"),
        ("low", "dec"),
        ("close", "dec"),
        ("volume", "i64"),
        ("trades", "i64"),
        ("first_seq", "i64"),
        ("last_seq", "i64"),
        ("complete", "bool"),
    ],
}
TIMES = {"ts_ns": "ts", "recv_ns": "recv_ts", "t_ns": "t"}


def tick_scale(tick: Any) -> int:
    """Digits after the point of a tick (``"0.01"`` -> 2, ``"5"`` -> 0)."""
    exponent = parse_price(tick, name="tick").normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def arrow_schema(table: str, scale: int, metadata: dict[str, str] | None = None) -> Any:
    """The Arrow schema of ``table`` (partition columns ``date`` and ``sym`` are in the path).

    Args:
        table: One of `TABLES`.
        scale: Digits after the point of every price column.
        metadata: Key/value metadata to carry in the schema (and each file).

    Returns:
        A ``pyarrow.Schema``.
    """
    import pyarrow as pa

    kinds = {
        "i64": pa.int64(),
        "i32": pa.int32(),
        "str": pa.string(),
        "bool": pa.bool_(),
        "dec": pa.decimal128(18, scale),
    }
    fields = []
    for name, kind in TABLES[table]:
        fields.append(pa.field(name, kinds[kind]))
        if name in TIMES:
            fields.append(pa.field(TIMES[name], pa.timestamp("us", tz="UTC")))
    return pa.schema(fields, metadata=metadata)


class Rows:
    """Column lists of one table partition (one symbol, one UTC day), not yet in Arrow."""

    __slots__ = ("columns", "table")

    def __init__(self, table: str) -> None:
        self.table = table
        self.columns: list[list[Any]] = [[] for _ in TABLES[table]]

    def __len__(self) -> int:
        return len(self.columns[0])

    def to_arrow(self, schema: Any) -> Any:
        """An Arrow table with ``schema`` (prices given as unscaled ints become exact decimals)."""
        import pyarrow as pa

        arrays = []
        for (name, kind), values in zip(TABLES[self.table], self.columns, strict=False):
            if kind == "dec":
                dec = schema.field(name).type
                wide = pa.decimal128(19, 0)
                arrays.append(
                    pa.array(values, pa.int64())
                    .cast(wide)
                    .view(pa.decimal128(19, dec.scale))
                    .cast(dec)
                )
            else:
                arrays.append(pa.array(values, schema.field(name).type))
            if name in TIMES:
                exact = arrays[-1].view(pa.timestamp("ns", tz="UTC"))
                arrays.append(exact.cast(pa.timestamp("us", tz="UTC"), safe=False))
        return pa.Table.from_arrays(arrays, schema=schema)


class _Bad(Exception):
    """A frame whose content cannot be stored (counted, the raw layer keeps it)."""


class _Candle:
    __slots__ = ("close", "first_seq", "high", "last_seq", "low", "n", "open", "start", "volume")

    def __init__(self, start: int, price: int, qty: int, seq: int) -> None:
        self.start = start
        self.open = self.high = self.low = self.close = price
        self.volume = qty
        self.n = 1
        self.first_seq = self.last_seq = seq


def _qty(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _Bad(f"quantity must be a non-negative int, got {value!r}")
    return value


class _Book:
    """One symbol's levels as unscaled int prices, with the best of each side kept.

    Lighter than `LocalBook`: no sorted structure, since only the top is
    needed; removing the best level rescans that side (rare and short).
    """

    __slots__ = ("asks", "best_ask", "best_bid", "bids", "seq", "stale", "top")

    def __init__(self, seq: int) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.seq = seq
        self.stale = False
        self.top: tuple[int | None, int | None, int | None, int | None] | None = None

    def set(self, side: str, price: int, qty: int) -> None:
        if side == "buy":
            if qty:
                self.bids[price] = qty
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            elif self.bids.pop(price, None) is not None and price == self.best_bid:
                self.best_bid = max(self.bids) if self.bids else None
        elif qty:
            self.asks[price] = qty
            if self.best_ask is None or price < self.best_ask:
                self.best_ask = price
        elif self.asks.pop(price, None) is not None and price == self.best_ask:
            self.best_ask = min(self.asks) if self.asks else None


class TableBuilder:
    """Decodes frames into table rows, keeping the books it needs for ``top_of_book``.

    Args:
        scale: Digits after the point of every stored price.
        candles: Candle intervals (ms) to derive from MD trades.
    """

    def __init__(self, scale: int, candles: Iterable[int] = ()) -> None:
        self.scale = scale
        self.candle_intervals = sorted(set(candles))
        self.parts: dict[tuple[str, str, int], Rows] = {}
        self.rows: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.bad_frames = 0
        self.bad_rows = 0
        self._prices: dict[str, int] = {}
        self._books: dict[str, _Book] = {}
        # sym -> (seq, ts, rows or None for a trade) received while the book was unknown
        self._held: dict[str, deque[tuple[int, int, list[tuple[str, int, int]] | None]]] = {}
        self._candles: dict[tuple[str, int], _Candle] = {}

    # -- helpers --------------------------------------------------------------
    def _unscaled(self, text: Any) -> int:
        if isinstance(text, str):
            cached = self._prices.get(text)
            if cached is not None:
                return cached
        try:
            price = parse_price(text)
        except (PriceError, TypeError) as exc:
            raise _Bad(str(exc)) from None
        value = price.scaleb(self.scale)
        if value != value.to_integral_value() or abs(value) >= MAX_UNSCALED:
            raise _Bad(f"price {text!r} does not fit decimal(18, {self.scale})")
        unscaled = int(value)
        if isinstance(text, str):
            if len(self._prices) > 100_000:
                self._prices.clear()
            self._prices[text] = unscaled
        return unscaled

    def _part(self, table: str, sym: str, recv_ns: int) -> list[list[Any]]:
        key = (table, sym, recv_ns // NS_PER_DAY)
        rows = self.parts.get(key)
        if rows is None:
            rows = self.parts[key] = Rows(table)
        return rows.columns

    def take(self) -> dict[tuple[str, str, int], Rows]:
        """The rows built so far, by ``(table, sym, day)``; the builder starts afresh."""
        parts, self.parts = self.parts, {}
        return parts

    # -- frames -----------------------------------------------------------------
    def gap(self) -> None:
        """Frames were dropped: no book is known until its next snapshot."""
        for book in self._books.values():
            book.stale = True
        self._held.clear()  # what was held cannot be joined to what comes next

    def add(self, channel: str, raw: str | bytes, recv_ns: int) -> None:
        """Decode one frame and append its rows; a bad frame is counted, never raised."""
        try:
            msg = orjson.loads(raw)
            if not isinstance(msg, dict):
                raise _Bad("not an object")
            if channel == "md":
                self._md(msg, recv_ns)
            elif channel == "cmd":
                self._cmd(msg, recv_ns)
        except (_Bad, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.bad_frames += 1

    def _md(self, msg: dict[str, Any], recv_ns: int) -> None:
        ch = msg.get("ch")
        if ch == "book.delta":
            sym = msg["sym"]
            seq = msg["seq"]
            ts = msg.get("ts_ns", 0)
            unscaled = self._unscaled
            rows = [(side, unscaled(price), qty) for side, price, qty in msg["changes"]]
            for side, _, qty in rows:
                if side not in ("buy", "sell") or type(qty) is not int or qty < 0:
                    raise _Bad(f"bad change {side!r} {qty!r}")
            cols = self._part("book_deltas", sym, recv_ns)
            c0, c1, c2, c3, c4, c5 = cols
            for side, price, qty in rows:
                c0.append(ts)
                c1.append(recv_ns)
                c2.append(seq)
                c3.append(side)
                c4.append(price)
                c5.append(qty)
            self.rows["book_deltas"] += len(rows)
            book = self._books.get(sym)
            if book is None or book.stale or seq != book.seq + 1:
                # No snapshot yet, or a hole upstream: unknown until the next snapshot.
                self._hold(sym, seq, ts, rows)
                return
            book.seq = seq
            for side, price, qty in rows:
                book.set(side, price, qty)
            self._top(sym, book, ts, recv_ns, seq, force=False)
        elif ch == "trade":
            sym = msg["sym"]
            price = self._unscaled(msg["price"])
            cols = self._part("trades", sym, recv_ns)
            ts = msg.get("ts_ns", 0)
            seq = msg["seq"]
            qty = msg["qty"]
            for col, value in zip(
                cols,
                (ts, recv_ns, seq, msg.get("trade_id"), price, qty, msg.get("aggressor")),
                strict=True,
            ):
                col.append(value)
            self.rows["trades"] += 1
            book = self._books.get(sym)
            if book is None or book.stale or seq != book.seq + 1:
                self._hold(sym, seq, ts, None)
            else:
                book.seq = seq
            if self.candle_intervals:
                self._candle(sym, ts, recv_ns, price, qty, seq)
        elif ch == "book.snapshot":
            self._snapshot(msg["sym"], msg, msg["seq"], msg.get("ts_ns", 0), recv_ns, "md")

    def _hold(self, sym: str, seq: int, ts: int, rows: list[tuple[str, int, int]] | None) -> None:
        book = self._books.get(sym)
        if book is not None:
            book.stale = True
        held = self._held.get(sym)
        if held is None:
            held = self._held[sym] = deque(maxlen=HELD_INCREMENTS)
        held.append((seq, ts, rows))

    def snapshot(
        self,
        sym: str,
        seq: int,
        bids: Any,
        asks: Any,
        recv_ns: int,
        source: str,
        ts: int = 0,
    ) -> None:
        """A book loaded outside the MD stream (a resync or the handover); a bad one is counted.

        Args:
            sym: The symbol.
            seq: The last increment the book includes.
            bids: ``[price, qty]`` levels, best first.
            asks: ``[price, qty]`` levels, best first.
            recv_ns: Local time it was loaded.
            source: ``"resync"`` or ``"handover"`` (the ``source`` column).
            ts: The gateway's time of the book, if known.
        """
        try:
            if not isinstance(sym, str) or type(seq) is not int:
                raise _Bad("a snapshot needs a str sym and an int seq")
            self._snapshot(sym, {"bids": bids, "asks": asks}, seq, ts, recv_ns, source)
        except (_Bad, KeyError, TypeError, ValueError):
            self.bad_frames += 1

    def _snapshot(
        self, sym: str, msg: dict[str, Any], seq: int, ts: int, recv_ns: int, source: str
    ) -> None:
        bids = msg.get("bids", [])
        asks = msg.get("asks", [])
        rows: list[tuple[Any, ...]] = [
            (ts, recv_ns, seq, source, side, level, self._unscaled(price), _qty(qty))
            for side, levels in (("buy", bids), ("sell", asks))
            for level, (price, qty) in enumerate(levels)
        ]
        book = _Book(seq)
        for row in rows:
            book.set(row[4], row[6], row[7])
        if not rows:  # an empty book still marks where it was loaded
            rows.append((ts, recv_ns, seq, source, None, None, None, 0))
        self._books[sym] = book
        cols = self._part("book_snapshots", sym, recv_ns)
        for row in rows:
            for col, value in zip(cols, row, strict=True):
                col.append(value)
        self.rows["book_snapshots"] += len(rows)
        top_ts = ts
        held = self._held.get(sym)
        if held:
            # Increments received before this snapshot but newer than it (a
            # resync reply comes after the MD frames that followed its seq).
            for held_seq, held_ts, changes in held:
                if held_seq <= book.seq:
                    continue
                if held_seq != book.seq + 1:
                    book.stale = True  # a hole: wait for the next snapshot
                    break
                book.seq = held_seq
                top_ts = held_ts
                for side, price, qty in changes or ():
                    book.set(side, price, qty)
            if not book.stale:
                del self._held[sym]
        if not book.stale:
            self._top(sym, book, top_ts, recv_ns, book.seq, force=True)

    def _top(self, sym: str, book: _Book, ts: int, recv_ns: int, seq: int, *, force: bool) -> None:
        bid = book.best_bid
        ask = book.best_ask
        top = (
            bid,
            None if bid is None else book.bids[bid],
            ask,
            None if ask is None else book.asks[ask],
        )
        if top == book.top and not force:
            return  # a change below the top
        book.top = top
        cols = self._part("top_of_book", sym, recv_ns)
        for col, value in zip(cols, (ts, recv_ns, seq, *top), strict=True):
            col.append(value)
        self.rows["top_of_book"] += 1

    def _candle(self, sym: str, ts: int, recv_ns: int, price: int, qty: int, seq: int) -> None:
        for interval in self.candle_intervals:
            width = interval * 1_000_000
            start = ts - ts % width
            candle = self._candles.get((sym, interval))
            if candle is not None and candle.start == start:
                candle.high = max(candle.high, price)
                candle.low = min(candle.low, price)
                candle.close = price
                candle.volume += qty
                candle.n += 1
                candle.last_seq = seq
                continue
            if candle is not None:
                self._emit_candle(sym, interval, candle, recv_ns, complete=True)
            self._candles[sym, interval] = _Candle(start, price, qty, seq)

    def _emit_candle(
        self, sym: str, interval: int, c: _Candle, recv_ns: int, *, complete: bool
    ) -> None:
        cols = self._part("candles", sym, recv_ns)
        values = (
            c.start,
            interval,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.n,
            c.first_seq,
            c.last_seq,
            complete,
        )
        for col, value in zip(cols, values, strict=False):
            col.append(value)
        self.rows["candles"] += 1

    def finish_candles(self, recv_ns: int) -> None:
        """Emit the candles still open (``complete`` false): the recording ends."""
        for (sym, interval), candle in self._candles.items():
            self._emit_candle(sym, interval, candle, recv_ns, complete=False)
        self._candles.clear()

    def _cmd(self, msg: dict[str, Any], recv_ns: int) -> None:
        kind = msg.get("type")
        if kind == "response":
            # A book.get reply that a client tapped for a resync: a snapshot.
            payload = msg.get("payload")
            if msg.get("op") == "book.get" and isinstance(payload, dict):
                self._snapshot(payload["sym"], payload, payload["seq"], 0, recv_ns, "resync")
            return
        if kind != "event":
            return
        event = msg.get("event")
        payload = msg["payload"]
        order = payload["order"]
        sym = order["sym"]
        event_seq = msg.get("seq")
        name = event[6:] if isinstance(event, str) and event.startswith("order.") else event
        price = order.get("price")
        values = (
            order.get("ts_ns"),
            recv_ns,
            event_seq,
            name,
            order.get("order_id"),
            order.get("client_order_id"),
            order.get("side"),
            order.get("type"),
            order.get("tif"),
            None if price is None else self._unscaled(price),
            order.get("qty"),
            order.get("filled_qty"),
            order.get("leaves_qty"),
            order.get("status"),
            payload.get("reason"),
        )
        fill = payload.get("fill") if event == "order.fill" else None
        fill_values = None
        fill_sym = sym
        if fill is not None:
            fill_sym = fill.get("sym", sym)
            fill_values = (
                fill.get("ts_ns"),
                recv_ns,
                event_seq,
                fill.get("trade_id"),
                fill.get("order_id"),
                order.get("client_order_id"),
                fill.get("side"),
                self._unscaled(fill["price"]),
                fill.get("qty"),
                fill.get("liquidity"),
            )
        for col, value in zip(self._part("orders", sym, recv_ns), values, strict=False):
            col.append(value)
        self.rows["orders"] += 1
        if fill_values is not None:
            for col, value in zip(
                self._part("fills", fill_sym, recv_ns), fill_values, strict=False
            ):
                col.append(value)
            self.rows["fills"] += 1
