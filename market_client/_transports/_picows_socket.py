"""picows' own callback API behind `WebSocket` (imported only when picows is used).

picows (a Cython WebSocket library) reads about twice as fast as
``websockets`` in a session (docs/benchmarks.md). Its core hands over frames,
not messages, so this adapter does what its callers expect of a WebSocket:

* joins fragmented messages, and refuses one over ``max_size`` with 1009
  (picows itself refuses a single frame over it, with the same code, but
  still hands the frame over: it is dropped here);
* keeps at most ``max_queue`` messages: beyond that the socket stops reading
  until ``recv()`` catches up, as ``websockets`` does;
* answers a peer's close, and reports the close code the peer sent, or the
  one picows sent on a protocol error, or 1006;
* waits while the socket's write buffer is over its high-water mark;
* sends pings and matches their pongs (picows answers the peer's pings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl as ssl_module
from collections import deque

import anyio
import anyio.lowlevel
from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSHandshakeError,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSProtocolError,
    WSTransport,
    ws_connect,
)

from ._base import TransportClosed, TransportOpenError, WebSocket, without_token

__all__ = ["PicowsWebSocket", "open_picows"]


class _Listener(WSListener):
    """picows' callbacks: messages into a bounded queue, the close state."""

    def __init__(self, max_size: int, max_queue: int) -> None:
        super().__init__()
        self.max_size = max_size
        self.max_queue = max_queue
        self.transport: WSTransport | None = None
        self.messages: deque[bytes] = deque()
        self.parts: list[bytes] = []  # a fragmented message so far
        self.size = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.disconnected = False
        self.close_code: int | None = None  # what the peer sent
        self.close_reason = ""
        self.failure: tuple[int, str] | None = None  # what we sent on a protocol error
        self.pings: dict[bytes, asyncio.Future[bool]] = {}  # True: its pong came

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.failure is not None:  # frames already read when we gave up on the socket
            return
        if frame.payload_size > self.max_size:
            # picows refuses it (and closes with 1009), yet still hands it over.
            return
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if self.parts:
                self._fail(
                    transport, WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented one"
                )
            elif frame.fin:
                self._deliver(transport, frame.get_payload_as_bytes())
            else:
                self.parts.append(frame.get_payload_as_bytes())
                self.size = len(self.parts[0])
        elif kind is WSMsgType.CONTINUATION:
            if not self.parts:
                self._fail(transport, WSCloseCode.PROTOCOL_ERROR, "continuation without a message")
                return
            self.size += frame.payload_size
            if self.size > self.max_size:
                self._fail(transport, WSCloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            self.parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                message = b"".join(self.parts)
                self.parts.clear()
                self._deliver(transport, message)
        elif kind is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            self.close_reason = frame.get_close_reason() or ""
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif kind is WSMsgType.PONG:
            pong = self.pings.pop(frame.get_payload_as_bytes(), None)
            if pong is not None and not pong.done():
                pong.set_result(True)
        # PING is answered by picows (enable_auto_pong).

    def _deliver(self, transport: WSTransport, message: bytes) -> None:
        self.messages.append(message)
        if len(self.messages) >= self.max_queue and not self.paused:
            self.paused = True
            transport.underlying_transport.pause_reading()
        self._wake()

    def _fail(self, transport: WSTransport, code: WSCloseCode, reason: str) -> None:
        self.failure = (code.value, reason)
        self.parts.clear()
        transport.send_close(code, reason.encode())
        transport.disconnect(False)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True
        self.writable.set()
        self._wake()
        for pong in self.pings.values():
            if not pong.done():
                pong.set_result(False)
        self.pings.clear()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class PicowsWebSocket(WebSocket):
    """A connected picows WebSocket with the `WebSocket` interface."""

    def __init__(
        self, transport: WSTransport, listener: _Listener, *, close_timeout: float
    ) -> None:
        super().__init__(close_timeout=close_timeout)
        self._transport = transport
        self._listener = listener

    async def _closed(self) -> TransportClosed:
        listener = self._listener
        self._transport.disconnect(False)
        try:
            await self._transport.wait_disconnected()
        except WSProtocolError as exc:  # picows refused a frame and sent this code
            listener.failure = listener.failure or (int(exc.code), str(exc))
        except WSError:
            pass
        if listener.close_code is not None:
            return self._seen_closed(TransportClosed(listener.close_code, listener.close_reason))
        if listener.failure is not None:
            return self._seen_closed(TransportClosed(*listener.failure))
        return self._seen_closed(TransportClosed(1006))

    async def send(self, text: str) -> None:
        listener = self._listener
        if not listener.writable.is_set():
            await listener.writable.wait()
        if listener.disconnected or self._transport.is_close_frame_sent:
            raise await self._closed()
        self._transport.send(WSMsgType.TEXT, text.encode())

    async def _until_waiting(self) -> None:
        """Return once a message waits; raise if the socket closed with none."""
        listener = self._listener
        while not listener.messages:
            if listener.disconnected:
                raise await self._closed()
            listener.waiter = asyncio.get_running_loop().create_future()
            await listener.waiter

    async def recv(self) -> str | bytes:
        listener = self._listener
        messages = listener.messages
        if not messages:
            await self._until_waiting()
        message = messages.popleft()
        if listener.paused and len(messages) <= listener.max_queue // 4:
            listener.paused = False
            self._transport.underlying_transport.resume_reading()
        return message

    async def recv_many(self) -> list[str | bytes]:
        listener = self._listener
        messages = listener.messages
        if not messages:
            await self._until_waiting()
        batch: list[str | bytes] = list(messages)
        messages.clear()
        if listener.paused:
            listener.paused = False
            self._transport.underlying_transport.resume_reading()
        return batch

    async def ping(self) -> None:
        listener = self._listener
        if listener.disconnected or self._transport.is_close_frame_sent:
            raise await self._closed()
        payload = os.urandom(4)
        pong = asyncio.get_running_loop().create_future()
        listener.pings[payload] = pong
        try:
            self._transport.send_ping(payload)
            if not await pong:
                raise await self._closed()
        finally:
            listener.pings.pop(payload, None)

    async def _close_handshake(self, code: int, reason: str) -> None:
        transport = self._transport
        if not transport.is_disconnected:
            try:
                close_code = WSCloseCode(code)
            except ValueError:  # picows names only the codes of RFC 6455
                close_code = WSCloseCode.OK
            transport.send_close(close_code, reason.encode() or None)
            with contextlib.suppress(WSError):
                await transport.wait_disconnected()

    async def _drop(self) -> None:
        transport = self._transport
        transport.disconnect(False)  # a no-op once closed
        with contextlib.suppress(WSError):
            await transport.wait_disconnected()


async def open_picows(
    url: str,
    *,
    ssl: ssl_module.SSLContext | None,
    open_timeout: float,
    max_size: int,
    max_queue: int,
    close_timeout: float,
) -> PicowsWebSocket:
    """Open ``url``; the caller must ``aclose()`` the result.

    Raises:
        TransportOpenError: The connection or the opening handshake failed.
    """
    where = without_token(url)
    try:
        # Cancelled half-way through its handshake, ws_connect leaves the socket
        # open (the gateway keeps the connection until the garbage collector
        # closes it). So it is not cancelled from outside: its own handshake
        # timeout bounds it, and a cancellation is delivered once it returns.
        with anyio.CancelScope(shield=True), anyio.fail_after(open_timeout + 1):
            transport, listener = await ws_connect(
                lambda: _Listener(max_size, max_queue),
                url,
                ssl_context=ssl,
                websocket_handshake_timeout=open_timeout,
                max_frame_size=max_size,
                # Given a Logger, picows logs on a child per socket, which the
                # token filter on "picows.client" would not see; given an
                # adapter, it logs on "picows.client" itself.
                logger_name=logging.LoggerAdapter(logging.getLogger("picows.client"), {}),
            )
    except WSInvalidStatusError as exc:
        status = exc.response.status if exc.response is not None else None
        raise TransportOpenError(f"{where}: HTTP {status}", status) from exc
    except (WSHandshakeError, OSError, TimeoutError) as exc:
        raise TransportOpenError(f"cannot open {where}: {exc!r}") from exc
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        transport.disconnect(False)
        raise
    assert isinstance(listener, _Listener)
    return PicowsWebSocket(transport, listener, close_timeout=close_timeout)
