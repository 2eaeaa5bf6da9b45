"""Sans-I/O local order book.

`LocalBook` holds price levels in two ``SortedDict`` (bids keyed by
``-price`` so the best level is first on both sides): O(log n) per level
change, O(depth) for a snapshot, O(1) for the top of book. Prices are read
by the one parser of ``_wire``, behind a cache: a book sees a few thousand
distinct price texts, and a cache hit costs a dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sortedcontainers import SortedDict

from ._wire import parse_price

__all__ = ["BookError", "LocalBook", "cached_price"]

Level = tuple[Decimal, int]


class BookError(ValueError):
    """A book message could not be applied (malformed price, side or quantity)."""


_PRICES: dict[str, Decimal] = {}  # text -> validated price: books reuse a few thousand prices
_PRICES_MAX = 100_000


def cached_price(text: Any) -> Decimal:
    """A price text from a frame as a ``Decimal``; `BookError` when it is not one."""
    if not isinstance(text, str):
        raise BookError(f"price must be a decimal string, got {text!r:.50}")
    price = _PRICES.get(text)
    if price is not None:
        return price
    try:
        price = parse_price(text)
    except ValueError as exc:
        raise BookError(str(exc)) from None
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
        yield cached_price(level[0]), _qty(level[1])


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
                parsed.append((self.bids, -cached_price(price), _qty(qty)))
            elif side == "sell":
                parsed.append((self.asks, cached_price(price), _qty(qty)))
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
