"""The ``httpx-ws`` library (AnyIO-native: one code path for both backends; optional)."""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from ._base import (
    Backend,
    TransportClosed,
    TransportOpenError,
    WebSocket,
    WebSocketTransport,
    without_token,
)

__all__ = ["HttpxWsTransport"]


class _HttpxWsSocket(WebSocket):
    """An ``httpx-ws`` session."""

    # receive() takes from an AnyIO memory stream: a checkpoint every time, so
    # the MD and CMD readers add none of their own.
    recv_yields = True

    def __init__(self, ws: Any, *, close_timeout: float, max_size: int) -> None:
        super().__init__(close_timeout=close_timeout)
        self._max_size = max_size
        import httpx_ws
        import wsproto.utilities

        self._ws = ws
        self._errors = (
            httpx_ws.WebSocketDisconnect,
            httpx_ws.WebSocketNetworkError,
            wsproto.utilities.LocalProtocolError,
        )
        self._disconnect = httpx_ws.WebSocketDisconnect

    def _closed(self, exc: Exception) -> TransportClosed:
        if isinstance(exc, self._disconnect):
            return self._seen_closed(TransportClosed(exc.code, exc.reason or ""))
        return self._seen_closed(TransportClosed(1006))

    async def send(self, text: str) -> None:
        try:
            await self._ws.send_text(text)
        except self._errors as exc:
            raise self._closed(exc) from exc

    async def recv(self) -> str | bytes:
        try:
            event = await self._ws.receive()
        except self._errors as exc:
            raise self._closed(exc) from exc
        data: str | bytes = event.data
        # httpx-ws 0.9 (the newest on Python 3.10) hands over a message above
        # max_message_size_bytes: the limit is kept here, as the library's
        # later releases keep it (a str has at most 4 bytes a character).
        size = len(data)
        if size * 4 > self._max_size and (
            size > self._max_size
            or len(data.encode() if isinstance(data, str) else data) > self._max_size
        ):
            await self.aclose(1009, "message too big")
            raise self._seen_closed(TransportClosed(1009, "message too big"))
        return data

    async def ping(self) -> None:
        try:
            pong = await self._ws.ping()
        except self._errors as exc:
            raise self._closed(exc) from exc
        await self._pong_or_closed(pong)

    async def _close_handshake(self, code: int, reason: str) -> None:
        # httpx-ws sends its close frame and closes the stream at once, without
        # waiting for the peer's close frame.
        await self._ws.close(code, reason or None)

    async def _drop(self) -> None:
        # httpcore's TLS stream is not "standard compatible": closing it never
        # waits for the peer.
        await self._ws.stream.aclose()


class HttpxWsTransport(WebSocketTransport):
    """The ``httpx-ws`` library, on both backends (``pip install httpx-ws``).

    Args:
        max_queue: Messages received but not yet read before the socket stops
            reading from the network.
        close_timeout: Longest closing handshake, in seconds, before the
            connection is dropped.
    """

    name: ClassVar[str] = "httpx-ws"
    backends: ClassVar[tuple[Backend, ...]] = ("asyncio", "trio")

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
            import httpx
            import httpx_ws
        except ImportError:
            raise ValueError(
                "transport 'httpx-ws' needs the httpx-ws package: pip install httpx-ws"
            ) from None
        where = without_token(url)
        body_error: BaseException | None = None
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx.AsyncClient(verify=ssl if ssl is not None else True, timeout=open_timeout)
            )
            try:
                ws: Any = await stack.enter_async_context(
                    httpx_ws.aconnect_ws(
                        "http" + url[2:],
                        http,
                        max_message_size_bytes=max_size,
                        queue_size=self.max_queue,
                        keepalive_ping_interval_seconds=None,
                    )
                )
            except httpx_ws.WebSocketUpgradeError as exc:
                raise TransportOpenError(
                    f"{where}: server rejected WebSocket connection: "
                    f"HTTP {exc.response.status_code}",
                    exc.response.status_code,
                ) from exc
            except (httpx.HTTPError, OSError) as exc:
                raise TransportOpenError(f"cannot open {where}: {exc!r}") from exc
            try:
                # connect() closes it before this block ends
                yield _HttpxWsSocket(ws, close_timeout=self.close_timeout, max_size=max_size)
            except BaseException as exc:  # re-raised below, not in the session's task group
                body_error = exc
        if body_error is not None:
            raise body_error
