"""Every bound of the gateway in one place, with the reason for its size.

Whatever one client's input can grow is bounded here, so that memory stays
bounded and every reply and MD frame fits the client's 16 MiB frame limit
(``market_client._wire.MD_FRAME_LIMIT``). docs/protocol.md ("Bounds of this
gateway") states the same numbers; `tests/test_gateway_bounds.py` fills them
and measures the frames.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The gateway's bounds (the defaults are the documented ones).

    Attributes:
        max_open_orders: Live orders per user; one more GTC limit order is
            rejected with ``too_many_orders``.
        max_closed_orders: Finished orders a user can still read
            (``order.list status=all``, ``order.history``); older ones are
            forgotten with their fills and ``client_order_id``.
        max_fills_per_order: Fills kept per order for ``order.history``
            (the newest), and executions one incoming order may make: the
            remainder of an order that meets more resting orders is cancelled.
        max_levels_per_side: Price levels one side of a book may hold; an
            order that would open one more is rejected with ``too_many_orders``.
            With 1e12 ticks at most and quantities in 64 bits, 100,000 levels
            a side make a snapshot of at most about 8 MB.
        max_price_ticks: The highest price, in ticks of the symbol.
        max_users: Users the gateway remembers. When a handshake needs one
            more, the user idle longest with no open order and no connection
            is forgotten (its token brings it back with fresh cash); when none
            is idle, the handshake gets 503.
        max_connections_per_user: CMD and MD sockets open at once per user;
            one more is closed with 1013.
        max_md_gap: Largest pending ``admin.md_gap`` count per symbol.
    """

    max_open_orders: int = 1_000
    max_closed_orders: int = 10_000
    max_fills_per_order: int = 10_000
    max_levels_per_side: int = 100_000
    max_price_ticks: int = 10**12
    max_users: int = 10_000
    max_connections_per_user: int = 64
    max_md_gap: int = 1_000_000
