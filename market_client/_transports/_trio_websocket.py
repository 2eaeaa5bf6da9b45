"""The ``trio-websocket`` library (Trio only), over a TCP or TLS stream opened here."""

from __future__ import annotations

import contextlib
import ssl as ssl_module
import sys
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

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

    # get_message() takes from a Trio memory channel: a checkpoint every time,
    # so the MD and CMD readers add none of their own.
    recv_yields = True

    def __init__(
        self, ws: Any, stream: Any, closed_exc: type[Exception], *, close_timeout: float
    ) -> None:
        super().__init__(close_timeout=close_timeout)
        self._ws = ws
        self._stream = stream
        self._closed_exc = closed_exc

    def _closed(self, exc: Any) -> TransportClosed:
        """The `TransportClosed` for ``exc`` (a ConnectionClosed) or the socket's ``closed``."""
        reason = getattr(exc, "reason", None) or getattr(exc, "closed", None)
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
        if self._closing:  # closed or dropped by us: the library may still hold messages
            raise self._closed(self._ws)  # its ``closed`` property: the CloseReason, or None
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

        # The library's reader task sees the stream close and ends, unless it
        # is handing a message to its full queue (max_queue unread): then it
        # waits for the queue, not for the stream, and the nursery of open()
        # cancels it close_timeout after this (`bound_reader`).
        await trio.aclose_forcefully(self._stream)


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
        try:
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
                        status = exc.status_code
                        error = TransportOpenError(
                            f"{where}: server rejected WebSocket connection: HTTP {status}", status
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
        except BaseExceptionGroup as group:
            # A refused upgrade: the library's reader task raises it in the
            # nursery (and the handshake's wait is cancelled).
            rejected, rest = group.split(trio_websocket.ConnectionRejected)
            if rejected is None or rest is not None:
                raise
            refusal: BaseException = rejected.exceptions[0]
            while isinstance(refusal, BaseExceptionGroup):
                refusal = refusal.exceptions[0]
            code = getattr(refusal, "status_code", None)
            raise TransportOpenError(
                f"{where}: server rejected WebSocket connection: HTTP {code}", code
            ) from refusal
        if error is not None:
            raise error
