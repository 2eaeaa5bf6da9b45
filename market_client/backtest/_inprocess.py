"""A client connected to a gateway in the same process: no sockets, the same ASGI app.

`InProcessTransport` is a `WebSocketTransport` that opens a WebSocket by
calling the gateway's ASGI application directly, with two bounded in-memory queues
for the two directions: the gateway's own routes, authentication and queues
serve it, unchanged. `InProcessClient` is a `MarketClient` whose handshake
and HTTP requests go to the same gateway's `Exchange` instead of over HTTP.
"""

from __future__ import annotations

import contextlib
import math
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel

from .._client import MarketClient
from .._events import LoopEvent, loop_event_type
from .._exceptions import AuthError
from .._models import HandshakeReply
from .._protocol import payload_or_raise
from .._transports import TransportClosed, TransportOpenError, WebSocket, WebSocketTransport
from ..simulator._accounts import Session
from ..simulator._app import Gateway
from ..simulator._fields import OpError
from ..simulator._outbox import TEXT_SINK, TextSink

__all__ = ["IN_PROCESS_URL", "InProcessClient", "InProcessTransport"]

IN_PROCESS_URL = "http://in-process.invalid"
"""The base URL of an in-process client (``.invalid``: it is never resolved)."""

Message = dict[str, Any]


class _Pipe(TextSink):
    """One direction of an in-process WebSocket: a bounded queue of ASGI messages.

    A plain deque and two events (the loop's own, made in the loop that
    uses the pipe): taking a queued message never yields, and a writer
    hands its whole batch over at once (`send_texts`).
    """

    def __init__(self, limit: float) -> None:
        self.items: deque[Message] = deque()
        self.limit = limit
        self.closed = False
        self._event = loop_event_type()
        self._data: LoopEvent | None = None
        self._room: LoopEvent | None = None

    def _wake_data(self) -> None:
        data = self._data
        if data is not None:
            self._data = None
            data.set()

    def _wake_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            room.set()

    async def _wait_room(self) -> None:
        while not self.closed and len(self.items) >= self.limit:
            room = self._room = self._room or self._event()
            await room.wait()
        if self.closed:
            raise anyio.ClosedResourceError

    async def put(self, msg: Message) -> None:
        """Queue one message, waiting for room.

        Raises:
            anyio.ClosedResourceError: The pipe is closed.
        """
        await self._wait_room()
        self.items.append(msg)
        self._wake_data()

    def put_nowait(self, msg: Message) -> None:
        """Queue one message regardless of the bound (a close).

        Raises:
            anyio.ClosedResourceError: The pipe is closed.
        """
        if self.closed:
            raise anyio.ClosedResourceError
        self.items.append(msg)
        self._wake_data()

    async def send_texts(self, texts: list[str]) -> None:
        """Queue text messages in order, waiting for room as needed (dropped once closed)."""
        items = self.items
        i = 0
        while i < len(texts):
            try:
                await self._wait_room()
            except anyio.ClosedResourceError:
                return
            room = max(1, int(min(self.limit - len(items), len(texts) - i)))
            items.extend({"type": "websocket.send", "text": t} for t in texts[i : i + room])
            i += room
            self._wake_data()

    def offer_text(self, text: str) -> bool:
        """Queue one text message now if there is room (dropped once closed)."""
        items = self.items
        if len(items) >= self.limit:
            return False
        if not self.closed:
            items.append({"type": "websocket.send", "text": text})
            self._wake_data()
        return True

    def get_nowait(self) -> Message:
        """The next message.

        Raises:
            anyio.WouldBlock: None is queued.
            anyio.EndOfStream: None is queued and the pipe is closed.
        """
        items = self.items
        if items:
            msg = items.popleft()
            self._wake_room()
            return msg
        if self.closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def get(self) -> Message:
        """The next message, waiting for one.

        Raises:
            anyio.EndOfStream: The pipe is closed and empty.
        """
        while not self.items and not self.closed:
            data = self._data = self._data or self._event()
            await data.wait()
        return self.get_nowait()

    def close(self) -> None:
        """No more messages (those queued can still be taken); wakes every waiter."""
        self.closed = True
        self._wake_data()
        self._wake_room()


class _InProcessSocket(WebSocket):
    def __init__(
        self,
        tx: _Pipe,
        rx: _Pipe,
        server: anyio.CancelScope,
        close_timeout: float,
    ) -> None:
        super().__init__(close_timeout=close_timeout)
        self._tx = tx
        self._rx = rx
        self._server = server

    def _closed_error(self) -> TransportClosed:
        seen = self._seen
        return TransportClosed(seen.code, seen.reason) if seen else TransportClosed(1006)

    async def recv(self) -> str | bytes:
        if self._seen is not None or self._closing:
            raise self._closed_error()
        rx = self._rx
        if rx.items:
            # Without a checkpoint while frames are queued, as every transport
            # does (recv_yields is False: the readers checkpoint every 16 frames).
            msg = rx.get_nowait()
        else:
            try:
                msg = await rx.get()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                raise self._seen_closed(TransportClosed(1006)) from None
        if msg["type"] == "websocket.send":
            data = msg.get("text")
            return data if data is not None else cast(bytes, msg.get("bytes", b""))
        raise self._seen_closed(TransportClosed(msg.get("code", 1000), msg.get("reason") or ""))

    async def recv_many(self) -> list[str | bytes]:
        # Every message queued, up to a close: what a socket read would give.
        messages = [await self.recv()]
        items = self._rx.items
        while items and items[0]["type"] == "websocket.send":
            msg = self._rx.get_nowait()
            data = msg.get("text")
            messages.append(data if data is not None else cast(bytes, msg.get("bytes", b"")))
        return messages

    async def send(self, text: str) -> None:
        if self._seen is not None or self._closing:
            raise self._closed_error()
        try:
            await self._tx.put({"type": "websocket.receive", "text": text})
        except anyio.ClosedResourceError:
            raise self._seen_closed(TransportClosed(1006)) from None

    async def ping(self) -> None:
        if self._seen is not None or self._closing:
            raise self._closed_error()
        await anyio.lowlevel.checkpoint()

    async def _close_handshake(self, code: int, reason: str) -> None:
        with contextlib.suppress(anyio.ClosedResourceError):
            self._tx.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})

    async def _drop(self) -> None:
        self._tx.close()
        self._rx.close()
        self._server.cancel()


class InProcessTransport(WebSocketTransport):
    """WebSockets to a `Gateway` in this process, through its ASGI app, without sockets.

    Args:
        gateway: The gateway (its ``app`` serves the connections).
        **options: ``max_queue`` and ``close_timeout`` of `WebSocketTransport`.
    """

    name = "in-process"

    def __init__(self, gateway: Gateway, **options: Any) -> None:
        super().__init__(**options)
        self.gateway = gateway

    @contextlib.asynccontextmanager
    async def open(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None,
        open_timeout: float,
        max_size: int,
    ) -> AsyncIterator[WebSocket]:
        """Open one in-process WebSocket to ``url``'s path and query (see `WebSocketTransport`).

        Raises:
            TransportOpenError: The gateway refused it before accepting.
        """
        parts = urlsplit(url)
        scope: Message = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("in-process.invalid", 80),
            "client": ("127.0.0.1", 0),
            "root_path": "",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "headers": [],
            "subprotocols": [],
            "state": {},
        }
        up = _Pipe(math.inf)
        down = _Pipe(self.max_queue)
        scope[TEXT_SINK] = down  # the gateway's writer hands its batches over directly
        accepted = anyio.Event()
        refused: list[Message] = []
        connected = False

        async def receive() -> Message:
            nonlocal connected
            if not connected:
                connected = True
                return {"type": "websocket.connect"}
            try:
                return await up.get()
            except anyio.EndOfStream:
                return {"type": "websocket.disconnect", "code": 1006}

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                accepted.set()
                return
            if kind == "websocket.close" and not accepted.is_set():
                refused.append(message)
                accepted.set()
                return
            with contextlib.suppress(anyio.ClosedResourceError):
                await down.put(message)
            if kind == "websocket.close":
                down.close()

        server_scope = anyio.CancelScope()

        async def serve() -> None:
            with server_scope:
                try:
                    await self.gateway.app(scope, receive, send)  # type: ignore[arg-type]
                finally:
                    down.close()
                    up.close()
                    accepted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            with anyio.fail_after(open_timeout):
                await accepted.wait()
            if refused:
                tg.cancel_scope.cancel()
                code = refused[0].get("code", 1000)
                raise TransportOpenError(f"the gateway refused the WebSocket (close {code})", 403)
            ws = _InProcessSocket(up, down, server_scope, self.close_timeout)
            try:
                yield ws
            finally:
                await ws.abort()
                tg.cancel_scope.cancel()


class InProcessClient(MarketClient):
    """A `MarketClient` connected to a gateway in this process (no sockets at all).

    Its WebSockets go through `InProcessTransport`; its handshake and HTTP
    requests (``api_request``) are answered by the gateway's exchange
    directly. Everything else is the ordinary client.

    Args:
        gateway: The gateway to talk to.
        **options: The other arguments of `MarketClient` (not ``transport``).
    """

    def __init__(self, gateway: Gateway, **options: Any) -> None:
        super().__init__(IN_PROCESS_URL, transport=InProcessTransport(gateway), **options)
        self._gateway = gateway

    async def handshake(self) -> HandshakeReply:
        """Create a user (or resume the held token's) in the in-process gateway.

        Raises:
            AuthError: The gateway does not know the token.
        """
        try:
            reply = self._gateway.exchange.handshake(self.token)
        except OpError as exc:
            raise AuthError(exc.code, exc.message, "handshake") from None
        self._token = reply["token"]
        self.user_id = reply["user_id"]
        self.is_admin = bool(reply.get("is_admin"))
        return cast(HandshakeReply, reply)

    async def api_request(
        self,
        op: str,
        payload: Mapping[str, Any] | None = None,
        *,
        as_role: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request as over ``POST /api/request``, answered in-process; raises like `send`."""
        if self.token is None:
            await self.handshake()
        exchange = self._gateway.exchange
        user = exchange.user_for_token(self.token)
        if user is None:
            payload_or_raise(
                {"status": "error", "error": {"code": "unauthorized", "message": "unknown token"}},
                op,
            )
        assert user is not None
        frame: Message = {"op": op, "payload": dict(payload or {})}
        if as_role is not None:
            frame["as"] = as_role
        await anyio.lowlevel.checkpoint()
        return payload_or_raise(
            exchange.handle(Session(user, logged_in=True, session_id="http"), frame), op
        )
