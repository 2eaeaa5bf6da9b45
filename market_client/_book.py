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
_BID_KEYS: dict[str, Decimal] = {}  # text -> -price, the key of a bid level
_PRICES_MAX = 100_000
_contains = dict.__contains__
_set = dict.__setitem__


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
        _BID_KEYS.clear()
    _PRICES[text] = price
    return price


def _bid_key(text: Any) -> Decimal:
    """``-price`` of a price text (the key of a bid level), cached like the price."""
    key = _BID_KEYS.get(text) if type(text) is str else None
    if key is None:
        key = -cached_price(text)
        if len(_BID_KEYS) < _PRICES_MAX:
            _BID_KEYS[text] = key
    return key


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
        if type(changes) is list and len(changes) == 1:
            # The usual delta, as orjson decodes it: one change, checked inline
            # and applied at once (nothing to undo), through the dict's own
            # methods where the sorted keys stay as they are (an existing
            # level's new quantity). Anything unusual takes the general path.
            change = changes[0]
            if type(change) is list and len(change) == 3:
                side, price, qty = change
                if type(qty) is int and qty >= 0 and type(price) is str:
                    if side == "buy":
                        tree = self.bids
                        key = _BID_KEYS.get(price)
                        if key is None:
                            key = _bid_key(price)
                    elif side == "sell":
                        tree = self.asks
                        key = _PRICES.get(price)
                        if key is None:
                            key = cached_price(price)
                    else:
                        raise BookError(f"side must be 'buy' or 'sell', got {side!r}")
                    if qty:
                        if _contains(tree, key):
                            _set(tree, key, qty)
                        else:
                            tree[key] = qty
                    elif _contains(tree, key):
                        del tree[key]  # deleting an unknown level is normal
                    self.seq = seq
                    return
        if not isinstance(changes, (list, tuple)):
            raise BookError(f"changes must be a list, got {changes!r:.50}")
        # Several changes, or one in another shape (a tuple, a price to check):
        # all are checked (_parse says what is wrong) before any is applied.
        parsed = [self._parse(change) for change in changes]
        for tree, key, qty in parsed:
            if qty:
                tree[key] = qty
            else:
                tree.pop(key, None)
        self.seq = seq

    def _parse(self, change: Any) -> tuple[SortedDict[Decimal, int], Decimal, int]:
        """``(side's tree, key, qty)`` of one ``[side, price, qty]`` change."""
        if not isinstance(change, (list, tuple)) or len(change) != 3:
            raise BookError(f"a change is [side, price, qty], got {change!r}")
        side, price, qty = change
        if type(qty) is not int or qty < 0:
            qty = _qty(qty)
        if side == "buy":
            return self.bids, _bid_key(price), qty
        if side == "sell":
            key = _PRICES.get(price) if type(price) is str else None
            return self.asks, key if key is not None else cached_price(price), qty
        raise BookError(f"side must be 'buy' or 'sell', got {side!r}")

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
