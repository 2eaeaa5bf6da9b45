"""Sans-I/O market state: every symbol's book, sequencer and candle series.

`MarketState` takes decoded MD messages and ``book.get`` /
``candles.get`` replies and keeps books and candles right. It never awaits:
when a symbol needs a snapshot it says so (`take_resyncs`) and the
I/O layer fetches one.
"""

from __future__ import annotations

import logging
from collections import deque
from decimal import Decimal, InvalidOperation
from typing import Any

from ._book import BookError, LocalBook, Sequencer
from ._candles import CandleSeries

__all__ = ["MarketState", "SymbolState"]

log = logging.getLogger("market_client")
RECENT_TRADES = 4096  # replayed into candle series re-seeded after they arrived


class SymbolState:
    """Book, sequencer and candles of one symbol."""

    __slots__ = (
        "book",
        "has_snapshot",
        "recent_trades",
        "resync_pending",
        "resyncs",
        "sequencer",
        "series",
        "status",
    )

    def __init__(self, max_buffer: int) -> None:
        self.book = LocalBook()
        self.sequencer = Sequencer(max_buffer)
        self.series: dict[int, CandleSeries] = {}
        self.recent_trades: deque[tuple[int, Decimal, int, int]] = deque(maxlen=RECENT_TRADES)
        self.resyncs = 0
        self.resync_pending = False
        self.has_snapshot = False
        self.status = "trading"


class MarketState:
    """All MD-driven state of a session.

    Args:
        max_buffer: Increments buffered per symbol during a resync.
    """

    def __init__(self, max_buffer: int = 10_000) -> None:
        self.max_buffer = max_buffer
        self.symbols: dict[str, SymbolState] = {}
        self.malformed = 0
        self._resync_queue: list[str] = []

    def sym(self, sym: str) -> SymbolState:
        """The state of ``sym``, created on first use."""
        state = self.symbols.get(sym)
        if state is None:
            state = self.symbols[sym] = SymbolState(self.max_buffer)
        return state

    # -- inputs ------------------------------------------------------------
    def on_md(self, msg: dict[str, Any]) -> str | None:
        """Apply one MD message; returns its channel, or None when it was malformed."""
        ch = msg.get("ch")
        sym = msg.get("sym")
        if ch == "heartbeat":
            return "heartbeat"
        if not isinstance(sym, str) or not isinstance(ch, str):
            return self._malformed(msg, "no sym/ch")
        if ch in ("book.delta", "trade"):
            seq = msg.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                return self._malformed(msg, "no integer seq")
            state = self.sym(sym)
            for ready in state.sequencer.feed(msg):
                if not self._apply(sym, state, ready):
                    return None
            if state.sequencer.need_resync:
                self._want_resync(sym, state)
            return ch
        if ch == "book.snapshot":
            seq = msg.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                return self._malformed(msg, "no integer seq")
            if not self.load_book(sym, msg.get("bids", ()), msg.get("asks", ()), seq):
                return None
            return ch
        if ch == "status":
            status = msg.get("status")
            if isinstance(status, str):
                self.sym(sym).status = status
                return ch
            return self._malformed(msg, "no status")
        return self._malformed(msg, f"unknown channel {ch!r}")

    def load_book(self, sym: str, bids: Any, asks: Any, seq: int) -> bool:
        """Load a snapshot (MD ``book.snapshot`` or a ``book.get`` reply)."""
        state = self.sym(sym)
        try:
            state.book.load(bids, asks, seq)
        except (BookError, TypeError, IndexError) as exc:
            self.malformed += 1
            log.warning("malformed snapshot of %s (%s); asking for another", sym, exc)
            self._want_resync(sym, state)
            return False
        state.has_snapshot = True
        state.resync_pending = False
        for ready in state.sequencer.reset(seq):
            if not self._apply(sym, state, ready):
                return False
        if state.sequencer.need_resync:
            self._want_resync(sym, state)
        return True

    def _apply(self, sym: str, state: SymbolState, msg: dict[str, Any]) -> bool:
        try:
            if msg["ch"] == "book.delta":
                state.book.apply(msg.get("changes", ()), msg["seq"])
            else:
                price_text = msg.get("price")
                qty = msg.get("qty")
                ts_ns = msg.get("ts_ns")
                if (
                    not isinstance(price_text, str)
                    or not isinstance(qty, int)
                    or not isinstance(ts_ns, int)
                ):
                    raise BookError("trade needs price string, integer qty and ts_ns")
                try:
                    price = Decimal(price_text)
                except InvalidOperation:
                    raise BookError(f"trade price {price_text!r} is not a decimal") from None
                trade = (ts_ns, price, qty, msg["seq"])
                state.recent_trades.append(trade)
                for series in state.series.values():
                    series.add_trade(*trade)
        except (BookError, TypeError, ValueError) as exc:
            # A bad increment cannot be skipped: the book would be silently wrong.
            self.malformed += 1
            log.warning("malformed %s of %s (%s); resyncing the symbol", msg.get("ch"), sym, exc)
            state.sequencer.unsync()
            state.sequencer.need_resync = True
            self._want_resync(sym, state)
            return False
        return True

    def _malformed(self, msg: dict[str, Any], why: str) -> str | None:
        self.malformed += 1
        log.warning("malformed MD message (%s): %.200r", why, msg)
        return None

    def _want_resync(self, sym: str, state: SymbolState) -> None:
        if not state.resync_pending:
            state.resync_pending = True
            state.resyncs += 1
            self._resync_queue.append(sym)

    @property
    def resync_wanted(self) -> bool:
        """Whether some symbol waits for `take_resyncs`."""
        return bool(self._resync_queue)

    def take_resyncs(self) -> list[str]:
        """Symbols that need a fresh snapshot now (each reported once per resync)."""
        queue, self._resync_queue = self._resync_queue, []
        return queue

    def resync_failed(self, sym: str) -> None:
        """The snapshot request failed; ask again."""
        state = self.sym(sym)
        state.resync_pending = False
        state.resyncs -= 1
        self._want_resync(sym, state)

    def unsync_all(self) -> None:
        """The MD link dropped: every book waits for a fresh snapshot.

        Books stay readable at their last known state (see
        `out_of_sync`). Trades seen so far are forgotten for candle
        replay: a gateway that restarted numbers its ``seq`` afresh, and the
        candles are re-seeded from ``candles.get`` anyway.
        """
        for state in self.symbols.values():
            state.sequencer.unsync()
            state.resync_pending = False
            state.recent_trades.clear()
        self._resync_queue.clear()

    def out_of_sync(self) -> list[str]:
        """Symbols whose book waits for a snapshot (it shows its last known state)."""
        return sorted(
            sym
            for sym, state in self.symbols.items()
            if state.has_snapshot and not state.sequencer.synced
        )

    # -- candles -----------------------------------------------------------
    def add_series(self, sym: str, interval_ms: int, depth: int) -> CandleSeries:
        """Create (or resize) the candle series of ``sym`` at ``interval_ms``."""
        state = self.sym(sym)
        series = CandleSeries(interval_ms, depth)
        state.series[interval_ms] = series
        return series

    def seed_series(self, sym: str, interval_ms: int, reply: dict[str, Any]) -> None:
        """Seed a series from ``candles.get`` and replay newer trades already seen."""
        state = self.sym(sym)
        series = state.series.get(interval_ms)
        if series is None:
            return
        series.seed(reply.get("candles", ()), int(reply.get("last_seq", 0)))
        for trade in state.recent_trades:
            series.add_trade(*trade)
