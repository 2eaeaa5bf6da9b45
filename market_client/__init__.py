"""market_client: a structured-concurrency client for the HFT simulator gateway.

Runs under Trio or asyncio (through AnyIO):

    async with MarketClient.session("http://localhost:8000") as client:
        await client.place_order("ABC", side="buy", price="100.00", qty=1)

The simulator gateway ships as ``market_client.simulator``; test helpers as
``market_client.testing``; recording as ``market_client.recording``.
"""

from ._blocking import BlockingClient, BlockingEvents
from ._client import MarketClient, RequestSession
from ._compiled import compiled
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
from ._transports import (
    HttpxWsTransport,
    PicowsTransport,
    TransportClosed,
    TransportOpenError,
    TrioWebsocketTransport,
    WebSocket,
    WebsocketsTransport,
    WebSocketTransport,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BestBidAsk",
    "BlockingClient",
    "BlockingEvents",
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
    "HttpxWsTransport",
    "LoginReply",
    "MarketClient",
    "MarketClientError",
    "OrderDict",
    "OrderReply",
    "PicowsTransport",
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
    "TransportClosed",
    "TransportOpenError",
    "TrioWebsocketTransport",
    "WebSocket",
    "WebSocketTransport",
    "WebsocketsTransport",
    "__version__",
    "compiled",
]
