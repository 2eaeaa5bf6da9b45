"""Sans-I/O private state: the user's event sequence and the view of its own orders.

`EventSequence` follows the ``seq`` of the user's private events: it finds
events missed across a reconnect (from the ``event_seq`` the gateway reports
at login, or from a jump at the next event) and notices a gateway that
restarted and forgot them.

`OwnOrders` is the session's view of its own open orders, built from order
replies and order events. After a reconnect it is compared with the
gateway's ``order.list`` (`OwnOrders.to_check`): the orders that changed
while the client could not see them are fetched with ``order.history`` and
applied (`OwnOrders.settle`), which yields the ``order.reconciled`` events.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, cast

from ._models import OrderDict

__all__ = ["LIVE", "EventSequence", "OwnOrders"]

log = logging.getLogger("market_client")

LIVE = frozenset({"open", "partially_filled"})
TERMINAL = frozenset({"filled", "cancelled", "rejected"})
MAX_OPEN = 100_000  # far above any gateway's cap (the simulator's is 1,000)
MAX_DONE = 10_000  # ids of finished orders remembered, so a late reply cannot revive one


class EventSequence:
    """The ``seq`` of the user's private events, as seen by this session."""

    __slots__ = ("events", "gateway_resets", "last", "missed")

    def __init__(self) -> None:
        self.events = 0
        self.last = 0
        self.missed = 0
        self.gateway_resets = 0

    def on_event(self, seq: int) -> tuple[int, int] | None:
        """An event arrived; returns the ``(first, last)`` seqs missed before it, if any."""
        self.events += 1
        gap = None
        if self.last and seq > self.last + 1:
            gap = (self.last + 1, seq - 1)
            self.missed += seq - 1 - self.last
        self.last = max(self.last, seq)
        return gap

    def on_login(self, event_seq: Any, *, again: bool) -> tuple[int, int] | None:
        """A CMD connection logged in; ``event_seq`` is what the gateway says it sent last.

        Returns the seqs missed while the link was down (``again``: not the
        first login). A gateway that does not report ``event_seq`` shows gaps at
        the next event instead. One that reports less than we saw restarted
        (`gateway_resets`).
        """
        if not isinstance(event_seq, int) or isinstance(event_seq, bool):
            return None
        gap = None
        if again and event_seq > self.last:
            gap = (self.last + 1, event_seq)
            self.missed += event_seq - self.last
        elif event_seq < self.last:
            self.gateway_resets += 1
            log.warning("the gateway restarted and lost this user's orders")
        self.last = event_seq
        return gap


def _is_order(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("order_id"), str)
        and isinstance(value.get("status"), str)
        and isinstance(value.get("filled_qty", 0), int)
    )


def _progress(order: Mapping[str, Any]) -> tuple[int, int]:
    """How far an order got: a later state never has less."""
    return (1 if order["status"] in TERMINAL else 0, int(order.get("filled_qty", 0)))


class OwnOrders:
    """The session's own open orders, as far as it has seen them.

    States arrive from two places that race: the reader applies order events
    as they come, and the task that waited for a reply applies the reply
    when it runs, possibly after later events. So a state is taken only
    when it is not behind the one held (`filled_qty`, then a final status),
    and the ids of finished orders are remembered, so that a late reply
    saying "open" cannot bring a filled order back.

    Args:
        max_open: Most orders tracked (the oldest are forgotten beyond it).
        max_done: How many finished order ids are remembered.
    """

    def __init__(self, max_open: int = MAX_OPEN, max_done: int = MAX_DONE) -> None:
        self.max_open = max_open
        self._open: dict[str, OrderDict] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._max_done = max_done

    def __len__(self) -> int:
        return len(self._open)

    def open_orders(self) -> list[OrderDict]:
        """The open orders, oldest first (copies)."""
        return [cast(OrderDict, dict(o)) for o in self._open.values()]

    def apply(self, order: Any) -> bool:
        """Take an order's state from a reply or an event; False when it is stale or malformed."""
        if not _is_order(order):
            return False
        order_id = order["order_id"]
        if order_id in self._done:
            return False  # finished already: any state now is an older one
        held = self._open.get(order_id)
        if held is not None and _progress(order) < _progress(held):
            return False
        if order["status"] in LIVE:
            if held is None and len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open)))
                log.warning(
                    "more than %d open orders: the oldest is no longer tracked", self.max_open
                )
            self._open[order_id] = cast(OrderDict, dict(order))
        else:
            self._finish(order_id)
        return True

    def _finish(self, order_id: str) -> None:
        self._open.pop(order_id, None)
        self._done[order_id] = None
        if len(self._done) > self._max_done:
            self._done.popitem(last=False)

    def on_event(self, frame: Mapping[str, Any]) -> None:
        """A private event: order events carry the order's new state."""
        payload = frame.get("payload")
        if isinstance(payload, Mapping) and str(frame.get("event", "")).startswith("order."):
            self.apply(payload.get("order"))

    def to_check(self, listed: Iterable[Any]) -> list[str]:
        """The ids to fetch with ``order.history`` after a reconnect.

        ``listed`` is the gateway's ``order.list`` (open orders). An order
        changed while we were away when the list is *ahead* of what we hold
        (more filled), when it lists an order we never saw, or when we hold
        one it no longer lists. A list *behind* us (events we already applied
        arrived after it was made) is not a change.
        """
        seen: set[str] = set()
        changed: list[str] = []
        for order in listed:
            if not _is_order(order):
                continue
            order_id = order["order_id"]
            seen.add(order_id)
            if order_id in self._done:
                continue
            held = self._open.get(order_id)
            if held is None or _progress(order) > _progress(held):
                changed.append(order_id)
        changed.extend(oid for oid in self._open if oid not in seen)
        return changed

    def gateway_restarted(self) -> None:
        """The gateway lost its orders and numbers new ones afresh: old ids mean nothing."""
        self._done.clear()

    def forget(self, order_id: str) -> None:
        """The gateway does not know this order (it restarted): it is not open."""
        self._finish(order_id)

    def settle(self, order: Any) -> bool:
        """The gateway's state of an order found by `to_check`; False when we already knew it.

        Returns whether the state held changed, that is whether an
        ``order.reconciled`` event is due.
        """
        if not _is_order(order):
            return False
        held = self._open.get(order["order_id"])
        if held is not None and dict(held) == dict(order):
            return False
        return self.apply(order)
