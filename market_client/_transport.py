"""Temporary shim: the transports moved to the `_transports` package.

Kept so that modules not yet switched over import as before; import from
``market_client._transports`` instead.
"""

from __future__ import annotations

from ._transports import (
    CLOSE_TIMEOUT,
    MAX_MESSAGE,
    MAX_QUEUE,
    ONLY_ON,
    OPEN_TIMEOUT,
    TRANSPORTS,
    TransportClosed,
    TransportName,
    TransportOpenError,
    WebSocket,
    connect_websocket,
    default_transport,
    without_token,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_MESSAGE",
    "MAX_QUEUE",
    "ONLY_ON",
    "OPEN_TIMEOUT",
    "TRANSPORTS",
    "TransportClosed",
    "TransportName",
    "TransportOpenError",
    "WebSocket",
    "connect_websocket",
    "default_transport",
    "without_token",
]
