"""Market-data publishing: per-symbol ``seq``, snapshots, deltas, trades, status, the gap knob.

Also the read ops on the market (``symbols.list``, ``book.get``,
``candles.get``), which answer from the same per-symbol state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._wire import BOOK_SIDES
from ._accounts import Session
from ._candles import CandleSeries
from ._engine import Book
from ._fields import Json, OpError, choice, integer, optional_int64
from ._sink import Sink
from ._symbols import SymbolSpec

__all__ = ["MarketData", "SymbolState"]

FMT_CACHE = 100_000  # price texts remembered per symbol before the cache starts over
MAX_BOOK_DEPTH = 1000  # ``book.get`` depth; the full depth goes out in snapshots only
MAX_CANDLES = 10_000  # ``candles.get`` limit: 10,000 candles are about 1.5 MB


class SymbolState:
    """One symbol's book, MD sequence, trading status, pending gap and candles."""

    __slots__ = ("book", "candles", "fmt", "gap", "seq", "spec", "status")

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.book = Book()
        self.seq = 0
        self.status = "trading"
        self.gap = 0
        self.candles = CandleSeries()
        cache: dict[int, str] = {}
        tick = spec.tick

        def fmt(ticks: int) -> str:
            text = cache.get(ticks)
            if text is None:
                if len(cache) > FMT_CACHE:
                    cache.clear()
                text = cache[ticks] = str(ticks * tick)
            return text

        self.fmt: Callable[[int], str] = fmt


class MarketData:
    """The symbols' public state and every MD message about it.

    Args:
        symbols: What trades here.
        sink: Receives the MD messages.
        now_ns: The exchange's clock.
        max_gap: Largest pending ``admin.md_gap`` count per symbol.
    """

    def __init__(
        self,
        symbols: Iterable[SymbolSpec],
        sink: Sink,
        now_ns: Callable[[], int],
        *,
        max_gap: int,
    ) -> None:
        self.symbols: dict[str, SymbolState] = {s.sym: SymbolState(s) for s in symbols}
        self.sink = sink
        self.now_ns = now_ns
        self.max_gap = max_gap
        self.ops: dict[str, Callable[[Session, Json], Json]] = {
            "symbols.list": self._op_symbols,
            "book.get": self._op_book,
            "candles.get": self._op_candles,
        }

    def get(self, payload: Json) -> SymbolState:
        """The symbol named by ``payload["sym"]``.

        Raises:
            OpError: ``bad_request`` when ``sym`` is not a string,
                ``unknown_symbol`` when nothing trades under that name.
        """
        sym = payload.get("sym")
        if not isinstance(sym, str):
            raise OpError("bad_request", "'sym' (a string) is required")
        state = self.symbols.get(sym)
        if state is None:
            raise OpError("unknown_symbol", f"unknown symbol {sym[:40]!r}")
        return state

    # -- publishing ------------------------------------------------------
    def trade(
        self, state: SymbolState, trade_id: str, ticks: int, qty: int, aggressor: str, now: int
    ) -> None:
        """Publish one trade under the symbol's next ``seq`` and fold it into the candles."""
        state.seq += 1
        state.candles.add(now, ticks, qty, state.seq)
        self.publish(
            state,
            {
                "type": "md",
                "ch": "trade",
                "sym": state.spec.sym,
                "seq": state.seq,
                "trade_id": trade_id,
                "price": state.fmt(ticks),
                "qty": qty,
                "aggressor": aggressor,
                "ts_ns": now,
            },
        )

    def delta(self, state: SymbolState, changes: dict[tuple[str, int], int], now: int) -> None:
        """Publish the level changes of one engine step as one ``book.delta``."""
        fmt = state.fmt
        self.delta_wire(state, [[side, fmt(p), q] for (side, p), q in changes.items()], now)

    def delta_wire(self, state: SymbolState, changes: list[list[Any]], now: int) -> None:
        """Publish one ``book.delta`` of wire-form changes under the symbol's next ``seq``."""
        state.seq += 1
        self.publish(
            state,
            {
                "type": "md",
                "ch": "book.delta",
                "sym": state.spec.sym,
                "seq": state.seq,
                "changes": changes,
                "ts_ns": now,
            },
        )

    def publish(self, state: SymbolState, msg: Json) -> None:
        """Send a sequenced message, unless ``admin.md_gap`` asked to skip it (its seq is used)."""
        if state.gap > 0:
            state.gap -= 1
            return
        self.sink.md(state.spec.sym, msg)

    def set_status(self, state: SymbolState, status: str) -> None:
        """Change the trading status and publish it (status messages carry no seq)."""
        state.status = status
        sym = state.spec.sym
        self.sink.md(
            sym,
            {"type": "md", "ch": "status", "sym": sym, "status": status, "ts_ns": self.now_ns()},
        )

    def add_gap(self, state: SymbolState, count: int) -> int:
        """Skip the next ``count`` sequenced messages more; returns the pending total."""
        state.gap = min(self.max_gap, state.gap + count)
        return state.gap

    def snapshot(self, sym: str) -> Json:
        """A full-depth ``book.snapshot`` MD message of ``sym`` as of now."""
        state = self.symbols[sym]
        fmt = state.fmt
        return {
            "type": "md",
            "ch": "book.snapshot",
            "sym": sym,
            "seq": state.seq,
            "bids": [[fmt(p), q] for p, q in state.book.levels("buy")],
            "asks": [[fmt(p), q] for p, q in state.book.levels("sell")],
            "ts_ns": self.now_ns(),
        }

    @staticmethod
    def symbol_json(state: SymbolState) -> Json:
        """Wire form of a symbol."""
        spec = state.spec
        return {
            "sym": spec.sym,
            "tick": str(spec.tick),
            "min_qty": spec.min_qty,
            "lot": spec.lot,
            "status": state.status,
        }

    def candles(
        self,
        sym: str,
        interval_ms: int,
        limit: int = 50,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Json:
        """The ``candles.get`` reply for ``sym`` (see `CandleSeries.query`)."""
        state = self.symbols[sym]
        last_seq, candles = state.candles.query(interval_ms, limit, since_ns, until_ns, state.fmt)
        return {"sym": sym, "interval_ms": interval_ms, "last_seq": last_seq, "candles": candles}

    # -- ops ---------------------------------------------------------------
    def _op_symbols(self, session: Session, payload: Json) -> Json:
        return {"symbols": [self.symbol_json(s) for s in self.symbols.values()]}

    def _op_book(self, session: Session, payload: Json) -> Json:
        state = self.get(payload)
        depth = integer(payload, "depth", 20, 1, MAX_BOOK_DEPTH)
        # "bids"/"asks" are accepted as spellings of "buy"/"sell".
        side = choice(payload, "side", "both", (*BOOK_SIDES, "bids", "asks"), "invalid_side")
        fmt = state.fmt
        levels = state.book.levels
        bids = [] if side in ("sell", "asks") else [[fmt(p), q] for p, q in levels("buy", depth)]
        asks = [] if side in ("buy", "bids") else [[fmt(p), q] for p, q in levels("sell", depth)]
        return {"sym": state.spec.sym, "seq": state.seq, "bids": bids, "asks": asks}

    def _op_candles(self, session: Session, payload: Json) -> Json:
        state = self.get(payload)
        interval_ms = integer(payload, "interval_ms", None, 1000, 86_400_000)
        if interval_ms % 1000:
            raise OpError("bad_request", "interval_ms must be a positive multiple of 1000")
        limit = integer(payload, "limit", 50, 1, MAX_CANDLES)
        since = optional_int64(payload, "since_ns")
        until = optional_int64(payload, "until_ns")
        return self.candles(state.spec.sym, interval_ms, limit, since, until)
