"""WebSocket transports: one small interface, one module per library.

`connect_websocket` opens a text WebSocket with the transport asked for (an
object or a name) or the one that suits the running backend, and yields a
`WebSocket`. The interface and its open/close contract are in ``_base.py``;
``_websockets.py`` runs websockets' sans-I/O protocol over an AnyIO byte
stream (one code path for Trio and asyncio); ``_trio_websocket.py``,
``_httpx_ws.py`` and ``_picows.py`` each wrap one library's own client
through its public API; ``_redact.py`` keeps the token out of the libraries'
logs.

``picows`` (Cython, asyncio only, the ``picows`` extra) is the default on
asyncio wherever it is installed (see docs/benchmarks.md); ``websockets`` is
the default everywhere else (Trio always, asyncio without picows) and the
fallback. ``trio-websocket`` is a supported alternative under Trio, and
``httpx-ws`` (AnyIO-native, optional) on both.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import AsyncIterator
from typing import Literal

import sniffio

from ._base import (
    CLOSE_TIMEOUT,
    MAX_MESSAGE,
    MAX_QUEUE,
    OPEN_TIMEOUT,
    Backend,
    TransportClosed,
    TransportOpenError,
    WebSocket,
    WebSocketTransport,
    without_token,
)
from ._httpx_ws import HttpxWsTransport
from ._picows import PicowsTransport
from ._redact import TokenFilter, install_log_redaction, redact
from ._trio_websocket import TrioWebsocketTransport
from ._websockets import WebsocketsTransport

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_MESSAGE",
    "MAX_QUEUE",
    "ONLY_ON",
    "OPEN_TIMEOUT",
    "TRANSPORTS",
    "HttpxWsTransport",
    "PicowsTransport",
    "TokenFilter",
    "TransportClosed",
    "TransportName",
    "TransportOpenError",
    "TrioWebsocketTransport",
    "WebSocket",
    "WebSocketTransport",
    "WebsocketsTransport",
    "connect_websocket",
    "default_transport",
    "install_log_redaction",
    "redact",
    "resolve_transport",
    "without_token",
]

TransportName = Literal["websockets", "trio-websocket", "httpx-ws", "picows"]

# The registry: a name stands for its class with default options.
_REGISTRY: dict[TransportName, type[WebSocketTransport]] = {
    "websockets": WebsocketsTransport,
    "trio-websocket": TrioWebsocketTransport,
    "httpx-ws": HttpxWsTransport,
    "picows": PicowsTransport,
}
TRANSPORTS: tuple[TransportName, ...] = tuple(_REGISTRY)

# Transports that run on one backend only (the others run on both), from
# each class's ``backends``: it drives the ValueError and the tests' skips.
ONLY_ON: dict[TransportName, Backend] = {
    name: cls.backends[0] for name, cls in _REGISTRY.items() if len(cls.backends) == 1
}


def default_transport() -> TransportName:
    """The transport used when none is named.

    On asyncio, ``picows`` where it is installed (``pip install
    market-client[picows]``), else ``websockets``. Under Trio, ``websockets``
    (its sans-I/O protocol over an AnyIO stream, any supported release).

    Returns:
        The name of the transport.
    """
    if sniffio.current_async_library() != "trio" and _picows_installed():
        return "picows"
    return "websockets"


def _picows_installed() -> bool:
    """Whether picows imports here (tried once, on first use).

    Installed is not enough: a wheel built for another ABI is found but fails
    to import, and then the default must fall back to websockets.
    """
    global _PICOWS
    if _PICOWS is None:
        try:
            import picows  # noqa: F401
        except ImportError:
            _PICOWS = False
        else:
            _PICOWS = True
    return _PICOWS


_PICOWS: bool | None = None


def resolve_transport(transport: WebSocketTransport | str | None) -> WebSocketTransport:
    """The transport object for ``transport``: itself, the one it names, or the default.

    Args:
        transport: A transport object, a name from `TRANSPORTS`, or None.

    Returns:
        A transport object.

    Raises:
        ValueError: The name is unknown.
        TypeError: ``transport`` is neither a name nor a `WebSocketTransport`.
    """
    if isinstance(transport, WebSocketTransport):
        return transport
    if transport is None:
        transport = default_transport()
    if not isinstance(transport, str):
        raise TypeError(
            f"transport must be a name or a WebSocketTransport, got {type(transport).__name__}"
        )
    cls = _REGISTRY.get(transport)  # type: ignore[call-overload]
    if cls is None:
        raise ValueError(f"unknown transport {transport!r}; choose from {', '.join(TRANSPORTS)}")
    return cls()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def connect_websocket(
    url: str,
    *,
    transport: WebSocketTransport | TransportName | None = None,
    ssl: ssl_module.SSLContext | None = None,
    open_timeout: float = OPEN_TIMEOUT,
    max_size: int = MAX_MESSAGE,
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``) for the running backend.

    The socket is closed when the block exits (see `WebSocketTransport.connect`).

    Args:
        url: The WebSocket URL.
        transport: A transport object, a name, or None for `default_transport`.
        ssl: TLS context for ``wss://`` (None: the system trust store).
        open_timeout: Deadline of the connection and opening handshake.
        max_size: Largest message accepted; a bigger one closes with 1009.

    Yields:
        The connected socket.

    Raises:
        TransportOpenError: The connection or the opening handshake failed.
        ValueError: The transport does not exist or does not run on this backend.
    """
    chosen = resolve_transport(transport)
    async with chosen.connect(url, ssl=ssl, open_timeout=open_timeout, max_size=max_size) as ws:
        yield ws
