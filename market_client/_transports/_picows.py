"""The ``picows`` library (Cython, asyncio only, optional: ``pip install picows``).

picows reads about twice as fast as ``websockets`` in a session
(docs/benchmarks.md). Its adapter, in ``_picows_socket.py``, imports picows,
so this module (the transport and its options) imports without it.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import AsyncIterator
from typing import ClassVar

from ._base import Backend, WebSocket, WebSocketTransport

__all__ = ["PicowsTransport"]


class PicowsTransport(WebSocketTransport):
    """The ``picows`` library: the fastest market-data reader on asyncio.

    Args:
        max_queue: Messages received but not yet read before the socket stops
            reading from the network.
        close_timeout: Longest closing handshake, in seconds, before the
            connection is dropped.
    """

    name: ClassVar[str] = "picows"
    backends: ClassVar[tuple[Backend, ...]] = ("asyncio",)

    @contextlib.asynccontextmanager
    async def open(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None,
        open_timeout: float,
        max_size: int,
    ) -> AsyncIterator[WebSocket]:
        try:
            from ._picows_socket import open_picows
        except ImportError:
            raise ValueError(
                "transport 'picows' needs the picows package: pip install picows"
            ) from None
        # connect() closes it before this block ends
        yield await open_picows(
            url,
            ssl=ssl,
            open_timeout=open_timeout,
            max_size=max_size,
            max_queue=self.max_queue,
            close_timeout=self.close_timeout,
        )
