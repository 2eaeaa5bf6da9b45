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
from decimal import Decimal
from typing import Any

from ._book import cached_price
from ._models import CandleDict
from ._wire import MAX_CANDLES, MAX_INTERVAL_MS

__all__ = ["CandleSeries"]


def _from_wire(data: Mapping[str, Any]) -> CandleDict:
    """A candle of a ``candles.get`` reply, prices as exact Decimals."""
    return {
        "t_ns": int(data["t_ns"]),
        "o": cached_price(data["o"]),
        "h": cached_price(data["h"]),
        "l": cached_price(data["l"]),
        "c": cached_price(data["c"]),
        "v": int(data["v"]),
        "n": int(data["n"]),
    }


class CandleSeries:
    """Candles of one symbol at one interval.

    Args:
        interval_ms: Candle width, a positive multiple of 1000.
        depth: How many candles are kept (the newest).
    """

    __slots__ = ("_width", "candles", "depth", "interval_ms", "last_seq")

    def __init__(self, interval_ms: int, depth: int) -> None:
        if not isinstance(interval_ms, int) or isinstance(interval_ms, bool):
            raise TypeError(f"interval_ms must be an int of milliseconds, got {interval_ms!r}")
        if not 0 < interval_ms <= MAX_INTERVAL_MS or interval_ms % 1000:
            raise ValueError(
                "interval_ms must be a positive multiple of 1000 up to one day "
                f"({MAX_INTERVAL_MS}), got {interval_ms!r}"
            )
        if not isinstance(depth, int) or isinstance(depth, bool) or not 0 < depth <= MAX_CANDLES:
            raise ValueError(f"depth must be an integer from 1 to {MAX_CANDLES}, got {depth!r}")
        self.interval_ms = interval_ms
        self.depth = depth
        self._width = interval_ms * 1_000_000
        self.candles: deque[CandleDict] = deque(maxlen=depth)
        self.last_seq = 0

    def seed(self, candles: Iterable[Mapping[str, Any]], last_seq: int) -> None:
        """Replace the window with a ``candles.get`` reply (oldest first)."""
        self.candles = deque((_from_wire(c) for c in candles), maxlen=self.depth)
        self.last_seq = last_seq

    def add_trade(self, ts_ns: int, price: Decimal, qty: int, seq: int) -> bool:
        """Fold one trade in; False when ``seq`` is not newer than what is counted."""
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        start = ts_ns - ts_ns % self._width
        candles = self.candles
        last = candles[-1] if candles else None
        if last is not None and last["t_ns"] == start:
            if price > last["h"]:
                last["h"] = price
            elif price < last["l"]:
                last["l"] = price
            last["c"] = price
            last["v"] += qty
            last["n"] += 1
        elif last is None or start > last["t_ns"]:
            candles.append(
                {"t_ns": start, "o": price, "h": price, "l": price, "c": price, "v": qty, "n": 1}
            )
        # else: a trade stamped before the newest candle; the gateway's clock
        # never goes back, so this only happens to a malformed frame: skip it.
        return True

    def copies(self) -> list[CandleDict]:
        """The candles, oldest first, as copies safe to keep."""
        return [CandleDict(**c) for c in self.candles]
