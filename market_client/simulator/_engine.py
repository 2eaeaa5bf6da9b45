"""Price-time priority limit order book: plain state, no I/O.

Prices inside the engine are integers counted in ticks of the symbol, so the
hot path compares and hashes ``int`` rather than ``Decimal``. Each side is a
``SortedDict`` keyed so that the best price comes first (asks by ``ticks``,
bids by ``-ticks``); each level is a FIFO ``deque`` of resting orders, which
gives time priority within a price. Cost: O(log n) in the number of levels to
insert or remove a level, O(1) to touch the best level.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from sortedcontainers import SortedDict

__all__ = ["Book", "Execution", "Level", "Order"]

LIVE_STATUSES = frozenset({"open", "partially_filled"})


@dataclass(slots=True, eq=False)
class Order:
    """One order as the engine tracks it (prices in ticks)."""

    order_id: str
    client_order_id: str | None
    user_id: str
    sym: str
    side: str  # "buy" or "sell"
    type: str  # "limit" or "market"
    price: int | None  # ticks; None for market orders
    qty: int
    tif: str
    ts_ns: int
    filled_qty: int = 0
    status: str = "open"

    @property
    def live(self) -> bool:
        """Whether the order can still trade."""
        return self.status in LIVE_STATUSES

    @property
    def leaves_qty(self) -> int:
        """Quantity still working: zero once filled, cancelled or rejected."""
        return self.qty - self.filled_qty if self.status in LIVE_STATUSES else 0


@dataclass(slots=True)
class Level:
    """All resting orders at one price, oldest first, with their total quantity."""

    orders: deque[Order] = field(default_factory=deque)
    qty: int = 0


@dataclass(slots=True, frozen=True)
class Execution:
    """One trade between a resting (maker) order and an incoming (taker) order."""

    maker: Order
    taker: Order
    price: int  # ticks, always the maker's price
    qty: int


class Book:
    """The limit order book of one symbol.

    ``match`` runs an incoming order against the opposite side and rests any
    GTC limit remainder; ``cancel`` removes a resting order. Both return the
    level changes as ``{(side, ticks): new_total}`` so that the caller can
    publish one ``book.delta`` per engine step.
    """

    __slots__ = ("asks", "bids", "by_id")

    def __init__(self) -> None:
        self.bids: SortedDict[int, Level] = SortedDict()  # key: -ticks
        self.asks: SortedDict[int, Level] = SortedDict()  # key: ticks
        self.by_id: dict[str, Order] = {}

    # -- reading -------------------------------------------------------
    def best_bid(self) -> int | None:
        """Best bid in ticks, or None when there are no bids."""
        return -self.bids.peekitem(0)[0] if self.bids else None

    def best_ask(self) -> int | None:
        """Best ask in ticks, or None when there are no asks."""
        return self.asks.peekitem(0)[0] if self.asks else None

    def levels(self, side: str, depth: int | None = None) -> list[tuple[int, int]]:
        """``[(ticks, qty)]`` best first, at most ``depth`` levels."""
        tree = self.bids if side == "buy" else self.asks
        sign = -1 if side == "buy" else 1
        out: list[tuple[int, int]] = []
        for key in tree.islice(0, depth):
            out.append((sign * key, tree[key].qty))
        return out

    def level_count(self, side: str) -> int:
        """How many price levels ``side`` holds."""
        return len(self.bids if side == "buy" else self.asks)

    def has_level(self, side: str, ticks: int) -> bool:
        """Whether ``side`` has orders resting at ``ticks``."""
        return (-ticks in self.bids) if side == "buy" else (ticks in self.asks)

    def resting(self) -> Iterator[Order]:
        """Every resting order, in no particular order."""
        return iter(self.by_id.values())

    def available(self, side: str, limit: int | None, max_orders: int | None = None) -> int:
        """Quantity an incoming ``side`` order could take at ``limit`` or better.

        With ``max_orders``, only from the first that many resting orders in
        priority order (what `match` with the same ``max_executions`` reaches).
        """
        total = 0
        left = max_orders
        tree = self.asks if side == "buy" else self.bids
        sign = 1 if side == "buy" else -1
        for key, level in tree.items():
            ticks = sign * key
            if limit is not None and (ticks > limit if sign == 1 else ticks < limit):
                break
            if left is None or len(level.orders) <= left:
                total += level.qty
                if left is not None:
                    left -= len(level.orders)
                    if not left:
                        break
                continue
            for order in itertools.islice(level.orders, left):
                total += order.qty - order.filled_qty
            break
        return total

    # -- writing -------------------------------------------------------
    def match(
        self, order: Order, max_executions: int | None = None
    ) -> tuple[list[Execution], dict[tuple[str, int], int]]:
        """Match ``order`` against the book; rest a GTC limit remainder.

        The caller decides what happens to any IOC or market remainder and
        must have checked FOK feasibility with `available` first. With
        ``max_executions``, matching stops after that many executions and
        the remainder does not rest (it would cross the book), so the caller
        cancels it as it does an IOC remainder.
        """
        cap = max_executions if max_executions is not None else -1
        executions: list[Execution] = []
        changes: dict[tuple[str, int], int] = {}
        if order.side == "buy":
            opposite, sign, maker_side = self.asks, 1, "sell"
        else:
            opposite, sign, maker_side = self.bids, -1, "buy"
        remaining = order.qty - order.filled_qty
        limit = order.price
        while remaining and opposite and len(executions) != cap:
            key, level = opposite.peekitem(0)
            ticks = sign * key
            if limit is not None and (ticks > limit if sign == 1 else ticks < limit):
                break
            queue = level.orders
            while remaining and queue and len(executions) != cap:
                maker = queue[0]
                qty = min(remaining, maker.qty - maker.filled_qty)
                maker.filled_qty += qty
                order.filled_qty += qty
                remaining -= qty
                level.qty -= qty
                if maker.filled_qty == maker.qty:
                    maker.status = "filled"
                    queue.popleft()
                    del self.by_id[maker.order_id]
                else:
                    maker.status = "partially_filled"
                executions.append(Execution(maker, order, ticks, qty))
            changes[(maker_side, ticks)] = level.qty
            if not queue:
                del opposite[key]
        if order.filled_qty:
            order.status = "filled" if remaining == 0 else "partially_filled"
        if remaining and order.type == "limit" and order.tif == "GTC" and len(executions) != cap:
            assert limit is not None
            self._rest(order, limit)
            changes[(order.side, limit)] = self._level(order.side, limit).qty
        return executions, changes

    def cancel(self, order: Order) -> dict[tuple[str, int], int]:
        """Remove a resting order; returns the level change."""
        assert order.price is not None
        self.by_id.pop(order.order_id, None)
        tree = self.bids if order.side == "buy" else self.asks
        key = -order.price if order.side == "buy" else order.price
        level = tree.get(key)
        if level is None:
            return {}
        try:
            level.orders.remove(order)
        except ValueError:
            return {}
        level.qty -= order.qty - order.filled_qty
        if not level.orders:
            del tree[key]
        return {(order.side, order.price): level.qty}

    def _level(self, side: str, ticks: int) -> Level:
        tree = self.bids if side == "buy" else self.asks
        level: Level = tree[-ticks if side == "buy" else ticks]
        return level

    def _rest(self, order: Order, ticks: int) -> None:
        tree = self.bids if order.side == "buy" else self.asks
        key = -ticks if order.side == "buy" else ticks
        level = tree.get(key)
        if level is None:
            level = tree[key] = Level()
        level.orders.append(order)
        level.qty += order.qty - order.filled_qty
        self.by_id[order.order_id] = order
