"""Typed shapes of what the client returns (wire shapes are the protocol's own)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, TypedDict

__all__ = [
    "BestBidAsk",
    "BookReply",
    "BookSnapshot",
    "CandleDict",
    "FillDict",
    "HandshakeReply",
    "LoginReply",
    "OrderDict",
    "OrderReply",
    "Portfolio",
    "PositionDict",
    "Quote",
    "SymbolDict",
]


class SymbolDict(TypedDict):
    """A tradable symbol; ``tick`` is a decimal string."""

    sym: str
    tick: str
    min_qty: int
    lot: int
    status: Literal["trading", "halted"]


class OrderDict(TypedDict):
    """An order as the gateway reports it; ``price`` is a decimal string (None for market)."""

    order_id: str
    client_order_id: str | None
    user_id: str
    sym: str
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    price: str | None
    qty: int
    filled_qty: int
    leaves_qty: int
    status: Literal["open", "partially_filled", "filled", "cancelled", "rejected"]
    tif: Literal["GTC", "IOC", "FOK"]
    ts_ns: int


class FillDict(TypedDict):
    """One execution of one of your orders."""

    trade_id: str
    order_id: str
    sym: str
    side: Literal["buy", "sell"]
    price: str
    qty: int
    liquidity: Literal["maker", "taker"]
    ts_ns: int


class OrderReply(TypedDict, total=False):
    """Reply of ``place_order``, ``order_history`` (with ``fills``) and ``cancel_order``."""

    order: OrderDict
    fills: list[FillDict]


class BookReply(TypedDict):
    """The gateway's ``book.get`` reply: ``[price, qty]`` levels, best first."""

    sym: str
    seq: int
    bids: list[list[str | int]]
    asks: list[list[str | int]]


class BookSnapshot(TypedDict):
    """The local book: ``(Decimal price, qty)`` levels, best first."""

    sym: str
    seq: int
    bids: list[tuple[Decimal, int]]
    asks: list[tuple[Decimal, int]]


class Quote(TypedDict):
    """One side of the top of book."""

    price: Decimal
    qty: int


class BestBidAsk(TypedDict):
    """Top of the local book; a side is None when it is empty."""

    bid: Quote | None
    ask: Quote | None


class CandleDict(TypedDict):
    """One candle, ready for charting: start time, OHLC (Decimal), volume, trade count."""

    t_ns: int
    o: Decimal
    h: Decimal
    l: Decimal  # noqa: E741 - the protocol's field name
    c: Decimal
    v: int
    n: int


class PositionDict(TypedDict):
    """A position; prices and P&L are decimal strings."""

    sym: str
    qty: int
    avg_price: str
    realized_pnl: str


class Portfolio(TypedDict):
    """Cash (decimal string) and positions."""

    cash: str
    positions: list[PositionDict]


class HandshakeReply(TypedDict):
    """Reply of ``POST /auth/handshake``; ``token`` is a secret."""

    status: str
    user_id: str
    token: str
    is_admin: bool


class _LoginExtras(TypedDict, total=False):
    event_seq: int  # the simulator's extension: seq of the user's last private event


class LoginReply(_LoginExtras):
    """Reply of ``auth.login`` (``event_seq``: the simulator's extension, may be absent)."""

    user_id: str
    session_id: str
    is_admin: bool
