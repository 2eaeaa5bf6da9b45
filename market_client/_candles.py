"""Sans-I/O candle aggregation: OHLCV buckets from trades.

A `CandleSeries` is seeded from a ``candles.get`` reply and then folds
in every MD trade whose ``seq`` is newer than the reply's ``last_seq``, so a
trade is never counted twice nor missed. Like the gateway, it only has
candles for intervals that saw at least one trade, and it keeps the newest
``depth`` of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["Candle", "CandleSeries"]


@dataclass(slots=True)
class Candle:
    """One interval of trading: open, high, low, close, volume and trade count.

    Attributes:
        t_ns: Start of the interval, nanoseconds since the epoch.
        o: First trade price.
        h: Highest trade price.
        l: Lowest trade price.
        c: Last trade price.
        v: Volume (sum of quantities).
        n: Number of trades.
    """

    t_ns: int
    o: Decimal
    h: Decimal
    l: Decimal  # noqa: E741 - the protocol's field name
    c: Decimal
    v: int
    n: int

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Candle:
        """Build from the protocol's ``{"t_ns", "o", "h", "l", "c", "v", "n"}``."""
        return cls(
            int(data["t_ns"]),
            Decimal(data["o"]),
            Decimal(data["h"]),
            Decimal(data["l"]),
            Decimal(data["c"]),
            int(data["v"]),
            int(data["n"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"t_ns", "o", "h", "l", "c", "v", "n"}`` with Decimal prices."""
        return {
            "t_ns": self.t_ns,
            "o": self.o,
            "h": self.h,
            "l": self.l,
            "c": self.c,
            "v": self.v,
            "n": self.n,
        }


class CandleSeries:
    """Candles of one symbol at one interval.

    Args:
        interval_ms: Candle width, a positive multiple of 1000.
        depth: How many candles are kept (the newest).
    """

    __slots__ = ("_width", "candles", "depth", "interval_ms", "last_seq")

    def __init__(self, interval_ms: int, depth: int) -> None:
        if not isinstance(interval_ms, int) or interval_ms <= 0 or interval_ms % 1000:
            raise ValueError(
                f"interval_ms must be a positive multiple of 1000, got {interval_ms!r}"
            )
        if not isinstance(depth, int) or depth <= 0:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        self.interval_ms = interval_ms
        self.depth = depth
        self._width = interval_ms * 1_000_000
        self.candles: deque[Candle] = deque(maxlen=depth)
        self.last_seq = 0

    def seed(self, candles: Iterable[Mapping[str, Any]], last_seq: int) -> None:
        """Replace the window with a ``candles.get`` reply (oldest first)."""
        self.candles = deque((Candle.from_wire(c) for c in candles), maxlen=self.depth)
        self.last_seq = last_seq

    def add_trade(self, ts_ns: int, price: Decimal, qty: int, seq: int) -> bool:
        """Fold one trade in; False when ``seq`` is not newer than what is counted."""
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        start = ts_ns - ts_ns % self._width
        candles = self.candles
        last = candles[-1] if candles else None
        if last is not None and last.t_ns == start:
            if price > last.h:
                last.h = price
            elif price < last.l:
                last.l = price
            last.c = price
            last.v += qty
            last.n += 1
        elif last is None or start > last.t_ns:
            candles.append(Candle(start, price, price, price, price, qty, 1))
        # else: a trade stamped before the newest candle; the gateway's clock
        # never goes back, so this only happens to a malformed frame: skip it.
        return True

    def snapshot(self) -> list[Candle]:
        """The candles, oldest first (copies, safe to keep)."""
        return [Candle(c.t_ns, c.o, c.h, c.l, c.c, c.v, c.n) for c in self.candles]
