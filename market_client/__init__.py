"""market_client: a structured-concurrency client for the HFT simulator gateway.

Runs under Trio or asyncio (through AnyIO):

    async with MarketClient.session("http://localhost:8000") as client:
        await client.place_order("ABC", side="buy", price="100.00", qty=1)

The simulator gateway ships as `market_client.simulator`.
"""

from ._client import MarketClient, RequestSession
from ._events import Event, EventStream
from ._exceptions import (
    AuthError,
    ConnectError,
    ConnectionLost,
    EventOverflow,
    GatewayError,
    MarketClientError,
    ReconnectFailed,
    RequestTimeout,
    SessionClosed,
    TooManyInFlight,
)
from ._models import (
    BestBidAsk,
    BookReply,
    BookSnapshot,
    CandleDict,
    FillDict,
    HandshakeReply,
    LoginReply,
    OrderDict,
    OrderReply,
    Portfolio,
    PositionDict,
    Quote,
    SymbolDict,
)
from ._reconnect import ReconnectPolicy

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BestBidAsk",
    "BookReply",
    "BookSnapshot",
    "CandleDict",
    "ConnectError",
    "ConnectionLost",
    "Event",
    "EventOverflow",
    "EventStream",
    "FillDict",
    "GatewayError",
    "HandshakeReply",
    "LoginReply",
    "MarketClient",
    "MarketClientError",
    "OrderDict",
    "OrderReply",
    "Portfolio",
    "PositionDict",
    "Quote",
    "ReconnectFailed",
    "ReconnectPolicy",
    "RequestSession",
    "RequestTimeout",
    "SessionClosed",
    "SymbolDict",
    "TooManyInFlight",
    "__version__",
]
