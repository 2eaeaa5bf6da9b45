"""Candles of one symbol, built from its trades: 1-second buckets merged on request."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ._fields import Json

__all__ = ["CANDLE_SECONDS_KEPT", "CandleSeries"]

CANDLE_SECONDS_KEPT = 86_400
"""1-second buckets kept per symbol: a day of trading, whatever the interval asked."""
NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


class CandleSeries:
    """The trades of one symbol as 1-second buckets, oldest first.

    A bucket is ``[t_ns, o, h, l, c, v, n, last_seq]`` with prices in ticks;
    any wider interval is merged from them when asked, so one series serves
    every ``interval_ms``. At most `CANDLE_SECONDS_KEPT` buckets are kept.
    """

    __slots__ = ("buckets", "last_trade_seq")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque(maxlen=CANDLE_SECONDS_KEPT)
        self.last_trade_seq = 0

    def add(self, ts_ns: int, price: int, qty: int, seq: int) -> None:
        """Fold one trade in (``price`` in ticks, ``seq`` its MD seq)."""
        start = ts_ns - ts_ns % NS_PER_S
        buckets = self.buckets
        if buckets and buckets[-1][0] == start:
            c = buckets[-1]
            c[2] = max(c[2], price)
            c[3] = min(c[3], price)
            c[4] = price
            c[5] += qty
            c[6] += 1
            c[7] = seq
        else:
            buckets.append([start, price, price, price, price, qty, 1, seq])
        self.last_trade_seq = seq

    def query(
        self,
        interval_ms: int,
        limit: int,
        since_ns: int | None,
        until_ns: int | None,
        fmt: Callable[[int], str],
    ) -> tuple[int, list[Json]]:
        """The newest ``limit`` candles of ``interval_ms`` with a trade, oldest first.

        A candle is included when ``since_ns <= t_ns < until_ns``.

        Returns:
            ``(last_seq, candles)``: ``last_seq`` is the MD seq of the newest
            trade included (of any trade so far when ``until_ns`` is None).
        """
        width = interval_ms * NS_PER_MS
        merged: list[list[int]] = []  # newest first while building
        last_seq = 0
        for c in reversed(self.buckets):
            start = c[0] - c[0] % width
            if until_ns is not None and start >= until_ns:
                continue
            if since_ns is not None and start < since_ns:
                break
            if merged and merged[-1][0] == start:
                m = merged[-1]
                m[1] = c[1]  # walking back in time: the open is the older one
                m[2] = max(m[2], c[2])
                m[3] = min(m[3], c[3])
                m[5] += c[5]
                m[6] += c[6]
            else:
                if len(merged) == limit:
                    break
                merged.append([start, c[1], c[2], c[3], c[4], c[5], c[6]])
            last_seq = max(last_seq, c[7])
        if until_ns is None:
            last_seq = self.last_trade_seq
        candles = [
            {
                "t_ns": m[0],
                "o": fmt(m[1]),
                "h": fmt(m[2]),
                "l": fmt(m[3]),
                "c": fmt(m[4]),
                "v": m[5],
                "n": m[6],
            }
            for m in reversed(merged)
        ]
        return last_seq, candles
