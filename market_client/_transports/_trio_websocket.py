"""The ``trio-websocket`` library (Trio only), over a TCP or TLS stream opened here."""

from __future__ import annotations

import contextlib
import ssl as ssl_module
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio

from ._base import (
    Backend,
    TransportClosed,
    TransportOpenError,
    WebSocket,
    WebSocketTransport,
    bound_reader,
    without_token,
)

__all__ = ["TrioWebsocketTransport"]


class _TrioWebsocketSocket(WebSocket):
    """A ``trio-websocket`` connection over a stream this module owns."""

    def __init__(
        self, ws: Any, stream: Any, closed_exc: type[Exception], *, close_timeout: float
    ) -> None:
        super().__init__(close_timeout=close_timeout)
        import trio

        self._ws = ws
        self._stream = stream
        self._closed_exc = closed_exc
        # get_message() takes from a Trio memory channel, always a checkpoint:
        # `recv` takes a waiting message from it without one where the channel
        # is where the library keeps it (trio-websocket 0.12); else it yields.
        self._channel = _waiting_messages(ws)
        self.recv_yields = self._channel is None
        self._not_waiting = (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel)

    def _closed(self, exc: Exception) -> TransportClosed:
        reason = getattr(exc, "reason", None)
        return self._seen_closed(
            TransportClosed(
                getattr(reason, "code", 1006) or 1006, getattr(reason, "reason", "") or ""
            )
        )

    async def send(self, text: str) -> None:
        try:
            await self._ws.send_message(text)
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    async def recv(self) -> str | bytes:
        if self._channel is not None:
            try:
                return self._channel.receive_nowait()  # type: ignore[no-any-return]
            except self._not_waiting:
                pass  # nothing waiting, or closed: get_message() waits or raises
        try:
            return await self._ws.get_message()  # type: ignore[no-any-return]
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    async def ping(self) -> None:
        # trio-websocket's ping() waits for its pong even after the socket
        # closed; the wait ends when recv(), send() or a close sees it closed.
        pong = anyio.Event()

        async def send_ping() -> None:
            try:
                await self._ws.ping()
            except self._closed_exc as exc:
                self._closed(exc)  # ends the wait
            else:
                pong.set()

        await self._pong_or_closed(pong, send_ping)

    async def _close_handshake(self, code: int, reason: str) -> None:
        await self._ws.aclose(code, reason or None)

    async def _drop(self) -> None:
        import trio

        await trio.aclose_forcefully(self._stream)
        # The library's reader task, handing a message to a full queue
        # (max_queue unread), waits for the queue, not for the stream, and
        # would hold the nursery of open() forever. Closing the queue's reading
        # end, as the library's own aclose() does, wakes it (the message is
        # dropped); it then finds the stream closed and ends. recv() raises at
        # once, as after any local close.
        queue = getattr(self._ws, "_recv_channel", None)
        if queue is not None:
            queue.close()


def _waiting_messages(ws: Any) -> Any:
    """The Trio memory channel get_message() takes from, or None if not found."""
    channel = getattr(ws, "_recv_channel", None)
    return channel if hasattr(channel, "receive_nowait") else None


class TrioWebsocketTransport(WebSocketTransport):
    """The ``trio-websocket`` library (Trio only).

    Its own ``open_websocket_url`` leaves the socket to the garbage collector
    when it is cancelled half-way through the handshake, so the TCP (or TLS)
    stream is opened and owned here and trio-websocket only runs the WebSocket
    over it.

    Args:
        max_queue: Messages received but not yet read before the socket stops
            reading from the network.
        close_timeout: Longest closing handshake, in seconds, before the
            connection is dropped.
    """

    name: ClassVar[str] = "trio-websocket"
    backends: ClassVar[tuple[Backend, ...]] = ("trio",)

    @contextlib.asynccontextmanager
    async def open(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None,
        open_timeout: float,
        max_size: int,
    ) -> AsyncIterator[WebSocket]:
        import trio
        import trio_websocket

        where = without_token(url)
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "localhost"
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        error: BaseException | None = None  # raised below, not in the nursery's group
        async with trio.open_nursery() as nursery:
            stream: Any = None
            try:
                with anyio.fail_after(open_timeout):
                    if secure:
                        stream = await trio.open_ssl_over_tcp_stream(
                            host,
                            port,
                            ssl_context=ssl or ssl_module.create_default_context(),
                            https_compatible=True,
                        )
                    else:
                        stream = await trio.open_tcp_stream(host, port)
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,
                        host if port in (80, 443) else f"{host}:{port}",
                        resource,
                        message_queue_size=self.max_queue,
                        max_message_size=max_size,
                    )
            except BaseException as exc:
                if stream is not None:
                    with anyio.CancelScope(shield=True):
                        await trio.aclose_forcefully(stream)
                error = exc
                if isinstance(exc, trio_websocket.ConnectionRejected):
                    error = TransportOpenError(
                        f"{where}: server rejected WebSocket connection: HTTP {exc.status_code}",
                        exc.status_code,
                    )
                    error.__cause__ = exc
                elif isinstance(exc, (trio_websocket.HandshakeError, OSError, TimeoutError)):
                    error = TransportOpenError(f"cannot open {where}: {exc!r}")
                    error.__cause__ = exc
            else:
                try:
                    # connect() closes it before this block ends, which ends the reader
                    yield _TrioWebsocketSocket(
                        ws,
                        stream,
                        trio_websocket.ConnectionClosed,
                        close_timeout=self.close_timeout,
                    )
                except BaseException as exc:
                    error = exc
            finally:
                bound_reader(nursery, self.close_timeout)
        if error is not None:
            raise error
