"""Sans-I/O market-data state: the local order book and the per-symbol sequencer.

`LocalBook` holds price levels in two ``SortedDict`` (bids keyed by
``-price`` so the best level is first on both sides): O(log n) per level
change, O(depth) for a snapshot, O(1) for the top of book.

`Sequencer` enforces the protocol's ``seq`` rules for one symbol: it
passes increments (``book.delta`` and ``trade``) through in order, notices a
gap (or an increment before any snapshot), buffers what arrives while a
resync is under way, and after the new snapshot releases only the buffered
increments that are newer than it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sortedcontainers import SortedDict

__all__ = ["BookError", "LocalBook", "Sequencer"]

Level = tuple[Decimal, int]


class BookError(ValueError):
    """A book message could not be applied (malformed price, side or quantity)."""


_PRICES: dict[str, Decimal] = {}  # text -> validated price: books reuse a few thousand prices
_PRICES_MAX = 100_000


def _price(text: Any) -> Decimal:
    if not isinstance(text, str):
        raise BookError(f"price must be a decimal string, got {text!r}")
    price = _PRICES.get(text)
    if price is not None:
        return price
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise BookError(f"price {text!r} is not a decimal") from None
    if not price.is_finite() or price <= 0:
        raise BookError(f"price {text!r} is not a positive decimal")
    if len(_PRICES) >= _PRICES_MAX:
        _PRICES.clear()
    _PRICES[text] = price
    return price


def _qty(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BookError(f"quantity must be a non-negative integer, got {value!r}")
    return value


def _levels(levels: Any) -> Iterable[Level]:
    if not isinstance(levels, (list, tuple)):
        raise BookError(f"levels must be a list of [price, qty], got {levels!r:.50}")
    for level in levels:
        if not isinstance(level, (list, tuple)) or len(level) != 2:
            raise BookError(f"a level is [price, qty], got {level!r:.50}")
        yield _price(level[0]), _qty(level[1])


class LocalBook:
    """One symbol's order book as built from snapshots and deltas."""

    __slots__ = ("asks", "bids", "seq")

    def __init__(self) -> None:
        self.bids: SortedDict[Decimal, int] = SortedDict()  # key: -price
        self.asks: SortedDict[Decimal, int] = SortedDict()  # key: price
        self.seq = 0

    def load(self, bids: Iterable[Sequence[Any]], asks: Iterable[Sequence[Any]], seq: int) -> None:
        """Replace the whole book (from a snapshot or ``book.get``).

        Raises:
            BookError: A level is malformed; the book is left unchanged.
        """
        new_bids = SortedDict({-price: qty for price, qty in _levels(bids) if qty})
        new_asks = SortedDict({price: qty for price, qty in _levels(asks) if qty})
        self.bids, self.asks, self.seq = new_bids, new_asks, seq

    def apply(self, changes: Iterable[Sequence[Any]], seq: int) -> None:
        """Apply one ``book.delta``: each change sets the total at a price, 0 removes it.

        Raises:
            BookError: A change is malformed; no change of this delta is applied.
        """
        parsed = []
        if not isinstance(changes, (list, tuple)):
            raise BookError(f"changes must be a list, got {changes!r:.50}")
        for change in changes:
            if not isinstance(change, (list, tuple)) or len(change) != 3:
                raise BookError(f"a change is [side, price, qty], got {change!r}")
            side, price, qty = change
            if side == "buy":
                parsed.append((self.bids, -_price(price), _qty(qty)))
            elif side == "sell":
                parsed.append((self.asks, _price(price), _qty(qty)))
            else:
                raise BookError(f"side must be 'buy' or 'sell', got {side!r}")
        for tree, key, qty in parsed:
            if qty:
                tree[key] = qty
            else:
                tree.pop(key, None)  # deleting an unknown level is normal
        self.seq = seq

    def best_bid(self) -> Level | None:
        """``(price, qty)`` of the best bid, or None."""
        if not self.bids:
            return None
        key, qty = self.bids.peekitem(0)
        return -key, qty

    def best_ask(self) -> Level | None:
        """``(price, qty)`` of the best ask, or None."""
        if not self.asks:
            return None
        key, qty = self.asks.peekitem(0)
        return key, qty

    def levels(self, depth: int | None = 20) -> tuple[list[Level], list[Level]]:
        """``(bids, asks)``, best first, at most ``depth`` levels a side."""
        bids = [(-k, self.bids[k]) for k in self.bids.islice(0, depth)]
        asks = [(k, self.asks[k]) for k in self.asks.islice(0, depth)]
        return bids, asks

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


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

    __slots__ = ("buffer", "gaps", "need_resync", "seq", "stale", "synced")

    def __init__(self, max_buffer: int = 10_000) -> None:
        self.seq = 0
        self.synced = False
        self.need_resync = False
        self.buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self.gaps = 0
        self.stale = 0

    def feed(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one increment; returns what can be applied now, in order."""
        seq = msg["seq"]
        if self.synced:
            if seq == self.seq + 1:
                self.seq = seq
                return [msg]
            if seq <= self.seq:
                self.stale += 1  # already covered by the snapshot
                return []
            self.synced = False
            self.gaps += 1
        self.need_resync = True
        self.buffer.append(msg)
        return []

    def reset(self, seq: int) -> list[dict[str, Any]]:
        """A snapshot (or ``book.get``) as of ``seq`` was loaded.

        Returns the buffered increments newer than ``seq`` that follow it
        without a hole. If a hole remains, `need_resync` stays set and
        the rest stays buffered for the next snapshot.
        """
        self.seq = seq
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
