"""One socket's outgoing side: a bounded queue drained by one writer task.

The engine never awaits a socket: it pushes with `Outbox.push` and moves on.
An outbox whose queue is full (a consumer that fell too far behind) closes
its socket with 1013 instead of buffering without bound.

Market data goes to many sockets at once, so a message is a `SharedFrame`:
serialized once, and framed as WebSocket bytes once, for every subscriber.
Under Hypercorn the writer then hands everything queued for its socket to the
server as one write of ready frames, instead of one ASGI ``websocket.send``
(one wsproto encoding and one socket write) per message per subscriber; that
per-frame cost was nine tenths of the gateway's time with ten subscribers.
Any other server, or a socket that negotiated an extension such as
permessage-deflate (whose frames differ per connection), gets the plain ASGI
path, one message at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio
from hypercorn.protocol.events import Data
from wsproto.connection import ConnectionState

from ._accounts import Session

__all__ = [
    "RAW_SEND",
    "TEXT_SINK",
    "Outbox",
    "RawSendMiddleware",
    "SharedFrame",
    "TextSink",
    "hypercorn_stream",
]

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN_LATER = 1013

#: The scope key under which `RawSendMiddleware` keeps the server's own ``send``.
RAW_SEND = "market_client.raw_send"
#: The scope key under which an in-process transport offers its `TextSink`.
TEXT_SINK = "market_client.text_sink"
BATCH_FRAMES = 512  # at most this many messages go to the server in one write

# Server frames are unmasked and, without extensions, the same bytes for every
# connection: FIN and the text opcode, then the payload's length in 7 bits, or
# 126 and 16 bits, or 127 and 64 bits (RFC 6455, 5.2), then the UTF-8 payload.
# What wsproto's FrameProtocol(client=False, extensions=[]).send_data(text,
# fin=True) gives (a test checks it), at a tenth of its cost: a replay at full
# speed frames every recorded message.
_SHORT_HEADERS = [bytes((0x81, n)) for n in range(126)]


def frame_bytes(text: str) -> bytes:
    """``text`` as one unmasked WebSocket text frame (no extensions)."""
    data = text.encode()
    size = len(data)
    if size < 126:
        return _SHORT_HEADERS[size] + data
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + data
    return b"\x81\x7f" + size.to_bytes(8, "big") + data


class SharedFrame:
    """One outgoing text message, framed once for every socket that sends it.

    Args:
        text: The message (a JSON document).
    """

    __slots__ = ("_wire", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        """The message as WebSocket frame bytes (built on first use)."""
        wire = self._wire
        if wire is None:
            wire = self._wire = frame_bytes(self.text)
        return wire


class RawSendMiddleware:
    """ASGI middleware that keeps the server's ``send`` in a WebSocket scope.

    Starlette wraps ``send`` on its way to an endpoint; the writer needs the
    server's own to recognise Hypercorn.

    Args:
        app: The wrapped ASGI application.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "websocket":
            scope[RAW_SEND] = send
        await self.app(scope, receive, send)


class TextSink:
    """Where a writer may hand a batch of text messages at once, instead of one ASGI send each.

    An in-process transport (a backtest's) puts one in the scope under
    `TEXT_SINK`: the messages go straight to its queue, in order with what
    the ASGI ``send`` delivers.
    """

    async def send_texts(self, texts: list[str]) -> None:
        """Deliver ``texts`` in order, waiting for room if the receiver is bounded."""
        raise NotImplementedError

    def offer_text(self, text: str) -> bool:
        """Deliver one message now if there is room; False (nothing done) if not.

        The outbox calls it only while its writer is idle with nothing queued,
        so the message cannot overtake one still on its way.
        """
        return False


def hypercorn_stream(scope: MutableMapping[str, Any]) -> Any | None:
    """Where the writer may send batches: Hypercorn's stream, or an in-process `TextSink`.

    Returns None for any other server, or when the client offered an
    extension (frames would differ per connection).
    """
    sink = scope.get(TEXT_SINK)
    if isinstance(sink, TextSink):
        return sink
    stream = getattr(scope.get(RAW_SEND), "__self__", None)
    kind = type(stream)
    if kind.__name__ != "WSStream" or not kind.__module__.startswith("hypercorn."):
        return None
    if any(name.lower() == b"sec-websocket-extensions" for name, _ in scope.get("headers", ())):
        return None
    if not all(hasattr(stream, a) for a in ("send", "stream_id", "closed", "connection")):
        return None
    return stream


class Outbox:
    """A socket's bounded outgoing queue and the writer that drains it.

    Args:
        user_id: Whose socket it is (for logs and ``admin.disconnect``).
        max_queue: Messages queued before the consumer is cut off with 1013.
        session: The CMD session of the socket (None on MD sockets).
    """

    __slots__ = (
        "_closed",
        "_queue",
        "_room",
        "_sink",
        "_wake",
        "close_code",
        "close_reason",
        "max_queue",
        "scope",
        "session",
        "user_id",
    )

    def __init__(self, user_id: str, max_queue: int, session: Session | None = None) -> None:
        self.user_id = user_id
        self.max_queue = max_queue
        self.session = session
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        self.scope = anyio.CancelScope()
        self._queue: deque[SharedFrame] = deque()
        self._wake: anyio.Event | None = None
        self._room: anyio.Event | None = None
        self._closed = False
        # An in-process receiver, set only while the writer waits with nothing queued:
        # a message can then go straight to it instead of waking the writer.
        self._sink: TextSink | None = None

    def push(self, item: str | SharedFrame) -> bool:
        """Queue one message; False when it was not (closed, or the queue was full).

        A full queue cuts the consumer off with 1013.
        """
        if self._closed:
            return False
        queue = self._queue
        sink = self._sink
        if sink is not None and sink.offer_text(item if isinstance(item, str) else item.text):
            return True
        if len(queue) >= self.max_queue:
            self.kill(CLOSE_TRY_AGAIN_LATER, "consumer too slow: outgoing queue full")
            return False
        queue.append(SharedFrame(item) if isinstance(item, str) else item)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()
        return True

    def offer(self, item: str | SharedFrame) -> bool:
        """Queue one message if there is room; never cuts the consumer off.

        For what may be skipped without harm (a heartbeat to a socket that
        has data queued anyway).
        """
        if self._closed or len(self._queue) >= self.max_queue:
            return False
        return self.push(item)

    def offer_many(self, frames: Sequence[SharedFrame]) -> int:
        """Queue as many of ``frames``, in order, as there is room for; how many that was.

        Never cuts the consumer off. One step for the whole batch (a replay at
        full speed hands over its frames this way); what does not fit is for
        `put_many`.
        """
        if self._closed:
            return 0
        if self._sink is not None:  # the writer is idle: the first ones may go straight through
            done = 0
            for frame in frames:
                if not self.offer(frame):
                    break
                done += 1
            return done
        queue = self._queue
        room = self.max_queue - len(queue)
        if room <= 0:
            return 0
        if len(frames) > room:
            frames = frames[:room]
        if not frames:
            return 0
        queue.extend(frames)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()
        return len(frames)

    async def put_many(self, frames: Sequence[SharedFrame]) -> int:
        """Queue every one of ``frames``, in order, waiting for room as `put` does.

        Returns how many were queued: all of them, unless the socket closed first.
        """
        done = self.offer_many(frames)
        while done < len(frames) and not self._closed:
            room = self._room = anyio.Event()
            await room.wait()
            done += self.offer_many(frames[done:])
        return done

    async def put(self, item: str | SharedFrame) -> bool:
        """Queue one message, waiting for room instead of cutting the consumer off.

        Back-pressure for a producer that may wait (a replay at full speed
        goes as fast as its slowest subscriber reads). False when closed.
        """
        while not self._closed and len(self._queue) >= self.max_queue:
            room = self._room = anyio.Event()
            await room.wait()
        return self.push(item)

    def _made_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            room.set()

    def kill(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` (the first code given wins)."""
        if self.close_code == CLOSE_NORMAL:
            self.close_code = code
            self.close_reason = reason
        self._closed = True
        self.scope.cancel()
        self._made_room()

    def close(self) -> None:
        """Accept nothing more; what is queued is dropped."""
        self._closed = True
        self._queue.clear()
        self._made_room()

    async def _ready(self) -> None:
        while not self._queue:
            wake = self._wake = anyio.Event()
            await wake.wait()

    async def run_writer(
        self, send_text: Callable[[str], Awaitable[None]], stream: Any | None
    ) -> None:
        """Write what is queued until cancelled.

        Args:
            send_text: The ASGI way to send one text message.
            stream: Hypercorn's stream or a `TextSink` (see `hypercorn_stream`), or None.
        """
        queue = self._queue
        sink = stream if isinstance(stream, TextSink) else None
        while True:
            if sink is not None and not queue:
                self._sink = sink
                try:
                    await self._ready()
                finally:
                    self._sink = None
            else:
                await self._ready()
            if sink is not None:
                if len(queue) <= BATCH_FRAMES:
                    texts = [frame.text for frame in queue]
                    queue.clear()
                else:
                    texts = [queue.popleft().text for _ in range(BATCH_FRAMES)]
                self._made_room()
                await sink.send_texts(texts)
                continue
            if stream is None:
                item = queue.popleft()
                self._made_room()
                await send_text(item.text)
                continue
            if stream.closed or stream.connection.state is not ConnectionState.OPEN:
                return  # the peer is closing; the reader sees it end
            if len(queue) <= BATCH_FRAMES:
                batch = list(queue)
                queue.clear()
            else:
                batch = [queue.popleft() for _ in range(BATCH_FRAMES)]
            self._made_room()
            data = b"".join([frame.wire for frame in batch])
            await stream.send(Data(stream_id=stream.stream_id, data=data))
