"""Sans-I/O market state: every symbol's book, sequencer and candle series.

`MarketState` takes MD frames as received (`MarketState.on_frames`) and
``book.get`` / ``candles.get`` replies, and keeps books and candles right. It
never awaits: when a symbol needs a snapshot it says so (`take_resyncs`) and
the MD link fetches one. The read side (`top`, `snapshot`, `candles`) is
what the client's facade shows.

`Sequencer` enforces the protocol's ``seq`` rules for one symbol: it passes
increments (``book.delta`` and ``trade``) through in order, notices a gap
(or an increment before any snapshot), buffers what arrives while a resync
is under way, and after the new snapshot releases only the buffered
increments that are newer than it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson

from ._book import BookError, Level, LocalBook, cached_price
from ._candles import CandleSeries
from ._logs import LogThrottle, held_back

__all__ = ["MarketState", "Sequencer", "SymbolState"]

log = logging.getLogger("market_client")
RECENT_TRADES = 4096  # replayed into candle series re-seeded after they arrived
_loads = orjson.loads


class Sequencer:
    """The ``seq`` rules of one symbol's increments.

    Feed every ``book.delta`` and ``trade`` to `feed`; it returns the
    increments that may be applied now, in order. When it sees a gap it sets
    `need_resync`, starts buffering (at most ``max_buffer`` messages;
    beyond that the oldest are dropped, which the next snapshot detects as a
    hole) and returns nothing until `reset` is called with a snapshot's
    ``seq``.

    Args:
        max_buffer: Most increments held while a resync is under way.
    """

    __slots__ = ("buffer", "need_resync", "repeated", "restarted", "seq", "snapshot_seq", "synced")

    def __init__(self, max_buffer: int = 10_000) -> None:
        self.seq = 0
        self.synced = False
        self.need_resync = False
        self.buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self.snapshot_seq = 0  # the seq of the last snapshot loaded
        self.repeated = 0  # increments with the seq of the last one applied
        self.restarted = 0  # times the stream went back below the last applied seq

    def feed(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one increment; returns what can be applied now, in order.

        A ``seq`` at or below the book's is dropped. Right after a snapshot
        that is the stream catching up with it (a ``book.get`` reply can be
        ahead of the MD stream); once the stream has gone past the snapshot,
        it is a repeat of the last increment (counted in `repeated`) or the
        stream restarted below it (counted in `restarted`; the symbol then
        needs a snapshot, `need_resync`).
        """
        seq = msg["seq"]
        if self.synced:
            if seq == self.seq + 1:
                self.seq = seq
                return [msg]
            if seq <= self.seq:
                if self.seq == self.snapshot_seq:
                    return []  # covered by the snapshot
                if seq == self.seq:
                    self.repeated += 1
                    return []
                # The stream, which had passed the snapshot, went back: a gateway
                # restart or a replay rewind. The book is stale from here on.
                self.restarted += 1
            self.synced = False
        self.need_resync = True
        self.buffer.append(msg)
        return []

    def reset(self, seq: int) -> list[dict[str, Any]]:
        """A snapshot (or ``book.get``) as of ``seq`` was loaded.

        Returns the buffered increments newer than ``seq`` that follow it
        without a hole. If a hole remains, `need_resync` stays set and
        the rest stays buffered for the next snapshot.
        """
        self.seq = self.snapshot_seq = seq
        ready: list[dict[str, Any]] = []
        while self.buffer and self.buffer[0]["seq"] <= seq:
            self.buffer.popleft()
        while self.buffer and self.buffer[0]["seq"] == self.seq + 1:
            msg = self.buffer.popleft()
            self.seq = msg["seq"]
            ready.append(msg)
        if self.buffer:
            self.synced = False
            self.need_resync = True
        else:
            self.synced = True
            self.need_resync = False
        return ready

    def unsync(self) -> None:
        """Forget the position (the link dropped): the next snapshot starts afresh."""
        self.synced = False
        self.need_resync = False
        self.buffer.clear()


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
        self._malformed_warnings = LogThrottle()
        self._resync_queue: list[str] = []
        self._restarts: list[dict[str, Any]] = []  # symbols whose stream went back, for events

    def ensure(self, sym: str) -> SymbolState:
        """The state of ``sym``, created when it is new (inputs only; reads never create)."""
        state = self.symbols.get(sym)
        if state is None:
            state = self.symbols[sym] = SymbolState(self.max_buffer)
        return state

    # -- inputs ------------------------------------------------------------
    def on_frames(self, raws: Sequence[str | bytes]) -> list[dict[str, Any]]:
        """Decode and apply MD frames received together (one read of the socket), in order.

        Returns their messages, in order, but for heartbeats and malformed
        frames (counted in `malformed`; a bad increment also asks for a
        resync of its symbol).
        """
        msgs: list[dict[str, Any]] = []
        symbols = self.symbols
        for raw in raws:
            try:
                msg = _loads(raw)
            except orjson.JSONDecodeError:
                msg = None
            if type(msg) is not dict or msg.get("type") != "md":
                self.malformed += 1
                held = self._malformed_warnings.take()
                if held is not None:
                    log.warning("malformed MD frame ignored: %.200r%s", raw, held_back(held))
                continue
            # The usual frame first: the next increment of a synced symbol (orjson
            # makes exact dicts, ints and strs, so type() checks are enough).
            ch = msg.get("ch")
            if ch == "book.delta" or ch == "trade":
                sym = msg.get("sym", "")  # "": no symbol has it, on_md says what is wrong
                seq = msg.get("seq")
                state = symbols.get(sym) if type(sym) is str else None
                if state is not None and type(seq) is int:
                    sequencer = state.sequencer
                    if sequencer.synced and seq == sequencer.seq + 1:
                        sequencer.seq = seq
                        # _apply, inlined: one call less on every usual frame.
                        try:
                            if ch == "book.delta":
                                state.book.apply(msg.get("changes", ()), seq)
                            else:
                                self._trade(state, msg, seq)
                        except (BookError, TypeError, ValueError) as exc:
                            self._bad_increment(sym, state, msg, exc)
                            continue
                        msgs.append(msg)
                        continue
            elif ch == "heartbeat":
                continue
            if self.on_md(msg) is not None:
                msgs.append(msg)
        return msgs

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
            state = self.ensure(sym)
            sequencer = state.sequencer
            restarts = sequencer.restarted
            for ready in sequencer.feed(msg):
                if not self._apply(sym, state, ready):
                    return None
            if sequencer.restarted != restarts:
                log.warning("the MD stream of %s went back to seq %d: resyncing it", sym, seq)
                self._restarts.append({"sym": sym, "seq": seq})
            if sequencer.need_resync:
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
                self.ensure(sym).status = status
                return ch
            return self._malformed(msg, "no status")
        return self._malformed(msg, f"unknown channel {ch!r}")

    def load_book(self, sym: str, bids: Any, asks: Any, seq: int) -> bool:
        """Load a snapshot (MD ``book.snapshot`` or a ``book.get`` reply)."""
        state = self.ensure(sym)
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
                self._trade(state, msg, msg["seq"])
        except (BookError, TypeError, ValueError) as exc:
            self._bad_increment(sym, state, msg, exc)
            return False
        return True

    @staticmethod
    def _trade(state: SymbolState, msg: dict[str, Any], seq: int) -> None:
        """Fold one trade into the recent trades and every candle series of its symbol."""
        price_text = msg.get("price")
        qty = msg.get("qty")
        ts_ns = msg.get("ts_ns")
        if type(qty) is not int or type(ts_ns) is not int or type(price_text) is not str:
            raise BookError("trade needs price string, integer qty and ts_ns")
        price = cached_price(price_text)
        state.recent_trades.append((ts_ns, price, qty, seq))
        if state.series:
            for series in state.series.values():
                series.add_trade(ts_ns, price, qty, seq)

    def _bad_increment(
        self, sym: str, state: SymbolState, msg: dict[str, Any], exc: Exception
    ) -> None:
        # A bad increment cannot be skipped: the book would be silently wrong.
        self.malformed += 1
        log.warning("malformed %s of %s (%s); resyncing the symbol", msg.get("ch"), sym, exc)
        state.sequencer.unsync()
        state.sequencer.need_resync = True
        self._want_resync(sym, state)

    def _malformed(self, msg: dict[str, Any], why: str) -> str | None:
        self.malformed += 1
        held = self._malformed_warnings.take()
        if held is not None:
            log.warning("malformed MD message (%s): %.200r%s", why, msg, held_back(held))
        return None

    def _want_resync(self, sym: str, state: SymbolState) -> None:
        if not state.resync_pending:
            state.resync_pending = True
            state.resyncs += 1
            self._resync_queue.append(sym)

    @property
    def resync_wanted(self) -> bool:
        """Whether some symbol waits for `take_resyncs` (or a restart for `take_restarts`)."""
        return bool(self._resync_queue or self._restarts)

    def take_restarts(self) -> list[dict[str, Any]]:
        """``{"sym", "seq"}`` of every stream that went back below its book since the last call."""
        restarts, self._restarts = self._restarts, []
        return restarts

    def take_resyncs(self) -> list[str]:
        """Symbols that need a fresh snapshot now (each reported once per resync)."""
        queue, self._resync_queue = self._resync_queue, []
        return queue

    def resync_failed(self, sym: str) -> None:
        """The snapshot request failed; ask again."""
        state = self.ensure(sym)
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

    # -- reads -------------------------------------------------------------
    def synced_state(self, sym: str) -> SymbolState:
        """The state of a symbol that has had a snapshot.

        Raises:
            LookupError: No market data for ``sym`` (it is not subscribed, or
                no snapshot came yet).
        """
        state = self.symbols.get(sym)
        if state is None or not state.has_snapshot:
            raise LookupError(
                f"no market data for {sym!r}: open the session with md=True "
                "and include it in symbols="
            )
        return state

    def top(self, sym: str) -> tuple[Level | None, Level | None]:
        """``(best bid, best ask)`` of ``sym``, each ``(price, qty)`` or None."""
        book = self.synced_state(sym).book
        return book.best_bid(), book.best_ask()

    def snapshot(self, sym: str, depth: int) -> tuple[int, list[Level], list[Level]]:
        """``(seq, bids, asks)`` of ``sym``: ``seq`` is the last increment applied."""
        state = self.synced_state(sym)
        bids, asks = state.book.levels(depth)
        return state.sequencer.seq, bids, asks

    def series(self, sym: str, interval_ms: int | None) -> CandleSeries | None:
        """The candle series of ``sym`` at ``interval_ms``, if configured."""
        state = self.symbols.get(sym)
        if state is None or interval_ms is None:
            return None
        return state.series.get(interval_ms)

    # -- candles -----------------------------------------------------------
    def add_series(self, sym: str, interval_ms: int, depth: int) -> CandleSeries:
        """Create (or resize) the candle series of ``sym`` at ``interval_ms``."""
        state = self.ensure(sym)
        series = CandleSeries(interval_ms, depth)
        state.series[interval_ms] = series
        return series

    def remove_series(self, sym: str, interval_ms: int, series: CandleSeries) -> None:
        """Drop a series (one whose seeding failed), unless another replaced it since."""
        state = self.symbols.get(sym)
        if state is not None and state.series.get(interval_ms) is series:
            del state.series[interval_ms]

    def seed_series(self, sym: str, interval_ms: int, reply: dict[str, Any]) -> None:
        """Seed a series from ``candles.get`` and replay newer trades already seen."""
        state = self.ensure(sym)
        series = state.series.get(interval_ms)
        if series is None:
            return
        series.seed(reply.get("candles", ()), int(reply.get("last_seq", 0)))
        for trade in state.recent_trades:
            series.add_trade(*trade)
