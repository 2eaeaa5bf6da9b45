"""The seed's helpers: one checked request each, and the reads of local state.

`Helpers` is a base of `MarketClient`: every method here checks its
arguments (``_checks``), then makes one `send` or reads the session's
`MarketState`. The session itself (sockets, tasks, reconnection) is in
``_client``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar, cast

from ._checks import check_positive_int, check_sym, order_payload, order_ref
from ._models import (
    BestBidAsk,
    BookReply,
    BookSnapshot,
    CandleDict,
    OrderDict,
    OrderReply,
    Portfolio,
    SymbolDict,
)
from ._private import OwnOrders
from ._state import MarketState

__all__ = ["Helpers"]

C = TypeVar("C")


class _ThisClass:
    """A class attribute that is the class itself, so ``Cls.session(...)`` is ``Cls(...)``.

    Type checkers see the constructor's exact signature through it.
    """

    def __get__(self, obj: object, owner: type[C]) -> type[C]:
        return owner


class Helpers:
    """Requests by name and reads of the local books and candles."""

    session = _ThisClass()
    """``MarketClient.session(url, ...)`` is ``MarketClient(url, ...)``: a client to open
    with ``async with``, which reads well at the top of a block."""

    _orders: OwnOrders
    _market: MarketState
    _symbols_cache: list[SymbolDict] | None
    _candle_defaults: dict[str, int]

    async def send(
        self,
        op: str,
        payload: Mapping[str, Any] | None = None,
        *,
        as_role: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the response payload (see `MarketClient.send`)."""
        raise NotImplementedError

    async def get_symbols(self, force_refresh: bool = False) -> list[SymbolDict]:
        """Tradable symbols (cached): ``[{sym, tick, min_qty, lot, status}]``."""
        if self._symbols_cache is None or force_refresh:
            reply = await self.send("symbols.list")
            self._symbols_cache = cast(list[SymbolDict], reply.get("symbols", []))
        return list(self._symbols_cache)

    async def get_book(self, sym: str, depth: int = 20) -> BookReply:
        """The gateway's book: ``{sym, seq, bids, asks}``, ``[price, qty]`` levels best first."""
        check_sym(sym)
        check_positive_int("depth", depth)
        return cast(BookReply, await self.send("book.get", {"sym": sym, "depth": depth}))

    async def place_order(
        self,
        sym: str,
        side: str,
        price: Decimal | str | None = None,
        qty: int = 1,
        tif: str = "GTC",
        type: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderReply:
        """Place an order; returns ``{order, fills}`` (fills of this order's own executions).

        Args:
            sym: Symbol.
            side: ``"buy"`` or ``"sell"``.
            price: Limit price as ``Decimal`` or decimal string (never a float);
                omit it for a market order.
            qty: Positive integer quantity (a multiple of the symbol's lot).
            tif: ``"GTC"``, ``"IOC"`` or ``"FOK"``.
            type: ``"limit"`` or ``"market"``; by default ``"limit"`` with a
                price and ``"market"`` without one.
            client_order_id: Your id for the order, unique among your live
                orders: retrying with the same id after a timeout or a lost
                connection cannot place the order twice.

        Raises:
            ValueError, TypeError: Bad arguments; nothing was sent.
            GatewayError: The gateway rejected the order (e.g. ``invalid_price``).
        """
        if type is None:
            type = "market" if price is None else "limit"
        payload = order_payload(sym, side, price, qty, tif, type, client_order_id)
        reply = cast(OrderReply, await self.send("order.place", payload))
        self._orders.apply(reply.get("order"))
        return reply

    async def cancel_order(
        self, order_id: str | None = None, *, client_order_id: str | None = None
    ) -> OrderReply:
        """Cancel one of your open orders by ``order_id`` or ``client_order_id``."""
        reply = cast(
            OrderReply, await self.send("order.cancel", order_ref(order_id, client_order_id))
        )
        self._orders.apply(reply.get("order"))
        return reply

    async def list_orders(self, status: str = "open") -> list[OrderDict]:
        """Your orders as the gateway has them: ``status="open"`` (default) or ``"all"``."""
        if status not in ("open", "all"):
            raise ValueError(f"status must be 'open' or 'all', got {status!r}")
        reply = await self.send("order.list", {"status": status})
        return cast(list[OrderDict], reply.get("orders", []))

    async def order_history(
        self, order_id: str | None = None, *, client_order_id: str | None = None
    ) -> OrderReply:
        """One of your orders with all its fills: ``{order, fills}``."""
        reply = cast(
            OrderReply, await self.send("order.history", order_ref(order_id, client_order_id))
        )
        self._orders.apply(reply.get("order"))
        return reply

    async def get_portfolio(self) -> Portfolio:
        """Cash and positions: ``{cash, positions: [{sym, qty, avg_price, realized_pnl}]}``."""
        return cast(Portfolio, await self.send("portfolio.get"))

    # -- local market state --------------------------------------------------------
    def book_snapshot(self, sym: str, depth: int = 20) -> BookSnapshot:
        """The local book: ``{sym, seq, bids, asks}`` of ``(Decimal price, qty)`` best first.

        ``seq`` is the last increment (``book.delta`` or ``trade``) applied, so
        it compares with a ``book.get`` reply's ``seq``.

        Raises:
            LookupError: No market data for ``sym`` in this session.
        """
        check_positive_int("depth", depth)
        seq, bids, asks = self._market.snapshot(sym, depth)
        return {"sym": sym, "seq": seq, "bids": bids, "asks": asks}

    def best_bid_ask(self, sym: str) -> BestBidAsk:
        """Top of the local book: ``{bid, ask}``, each ``{price, qty}`` or None when empty.

        Raises:
            LookupError: No market data for ``sym`` in this session.
        """
        bid, ask = self._market.top(sym)
        return {
            "bid": None if bid is None else {"price": bid[0], "qty": bid[1]},
            "ask": None if ask is None else {"price": ask[0], "qty": ask[1]},
        }

    def get_candles(self, sym: str, interval_ms: int | None = None) -> list[CandleDict]:
        """Candles oldest first: ``{t_ns, o, h, l, c, v, n}`` with Decimal prices.

        Args:
            sym: Symbol.
            interval_ms: Which configured interval (default: the first configured).

        Raises:
            LookupError: No candles were configured for ``sym`` at that interval.
        """
        interval = interval_ms if interval_ms is not None else self._candle_defaults.get(sym)
        series = self._market.series(sym, interval)
        if series is None:
            raise LookupError(
                f"no candles configured for {sym!r}"
                + (f" at {interval} ms" if interval else "")
                + ": call configure_candles() first"
            )
        return series.copies()
