"""``ScriptedWebSocket``: a stand-in socket that plays frames you script."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import orjson

from .._transports import TransportClosed, WebSocket

__all__ = ["ScriptedWebSocket"]

# A frame to play: text or bytes as they would arrive, or a JSON object to encode.
Frame = str | bytes | Mapping[str, Any]


class ScriptedWebSocket(WebSocket):
    """A WebSocket stand-in that plays a script of frames, for unit tests without a server.

    It implements the transports' `WebSocket` interface (``recv``, ``send``,
    ``ping``, ``aclose``, ``abort``), so a `RequestSession` or a market-data reader can be fed
    exactly the frames a test needs, malformed ones included, with no
    gateway, no socket and no timing. It is what our fuzz tests feed
    Hypothesis' frames through.

    ``recv`` returns the scripted frames in order. Once they are all read,
    the peer "closes": ``recv`` raises the transport's close error with
    ``close_code``, as a real socket does, and so does ``send`` from then
    on. With ``close_code=None`` the script stays open instead: ``recv``
    waits for frames added with `push` until `close` is called.

    A ``reply`` function answers what the code under test sends: it gets each
    sent frame decoded from JSON (None when it is not JSON) and returns the
    frames to play next, e.g. the response to a request:

    ```python
    def reply(request):
        return [{"type": "response", "corr_id": request["msg_id"],
                 "status": "ok", "payload": {"symbols": []}}]

    ws = ScriptedWebSocket(reply=reply, close_code=None)
    session = RequestSession(ws, on_event=print)
    ```

    Args:
        frames: The frames to play first. Mappings are encoded as JSON text.
        reply: Called with each frame sent; returns frames to play next.
        close_code: Close code the peer sends once the script is played out;
            None to stay open until `close`.

    Attributes:
        sent: The text frames the code under test sent, in order.
        closed_by_us: The code given to `aclose`, or None while not called.
    """

    def __init__(
        self,
        frames: Iterable[Frame] = (),
        *,
        reply: Callable[[Any], Iterable[Frame]] | None = None,
        close_code: int | None = 1000,
    ) -> None:
        super().__init__()
        self._frames: deque[str | bytes] = deque(_encode(f) for f in frames)
        self._reply = reply
        self._close_code = close_code
        self._peer_closed = False  # recv has reported the close
        self._arrived: anyio.Event | None = None  # made in the event loop, by recv
        self.sent: list[str] = []
        self.closed_by_us: int | None = None

    def push(self, *frames: Frame) -> None:
        """Add frames at the end of the script; a waiting `recv` wakes.

        Args:
            *frames: Frames to play after those already scripted.

        Raises:
            RuntimeError: The script was already closed.
        """
        if self._close_code is not None:
            raise RuntimeError("the script is closed: no frame can follow the close")
        self._frames.extend(_encode(f) for f in frames)
        self._wake()

    def close(self, code: int = 1000) -> None:
        """End the script: after the frames still queued, the peer closes with ``code``.

        Args:
            code: The close code `recv` then reports.
        """
        if self._close_code is None:
            self._close_code = code
        self._wake()

    async def recv(self) -> str | bytes:
        """The next scripted frame (a checkpoint first, as a real socket read is).

        Returns:
            The frame, as text or bytes.

        Raises:
            TransportClosed: The script is played out and closed (or we closed it).
        """
        await anyio.lowlevel.checkpoint()
        while True:
            if self.closed_by_us is not None:
                raise TransportClosed(self.closed_by_us)
            if self._frames:
                return self._frames.popleft()
            if self._close_code is not None:
                self._peer_closed = True
                raise TransportClosed(self._close_code)
            self._arrived = anyio.Event()
            await self._arrived.wait()

    async def send(self, text: str) -> None:
        """Record a frame sent, and play what ``reply`` answers to it.

        Args:
            text: The frame.

        Raises:
            TransportClosed: The peer's close was already received, or we closed it.
        """
        await anyio.lowlevel.checkpoint()
        if self.closed_by_us is not None:
            raise TransportClosed(self.closed_by_us)
        if self._peer_closed and self._close_code is not None:
            raise TransportClosed(self._close_code)
        self.sent.append(text)
        if self._reply is not None:
            try:
                decoded = orjson.loads(text)
            except orjson.JSONDecodeError:
                decoded = None
            self._frames.extend(_encode(f) for f in self._reply(decoded))
            self._wake()

    async def ping(self) -> None:
        """The scripted peer answers every ping at once while it is open.

        Raises:
            TransportClosed: The script is closed, or we closed it.
        """
        await anyio.lowlevel.checkpoint()
        if self.closed_by_us is not None:
            raise TransportClosed(self.closed_by_us)
        if self._peer_closed and self._close_code is not None:
            raise TransportClosed(self._close_code)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close from our side; `recv` and `send` raise from then on.

        Args:
            code: The close code (kept in ``closed_by_us``).
            reason: Ignored (there is no peer to tell).
        """
        await anyio.lowlevel.checkpoint()
        if self.closed_by_us is None:
            self.closed_by_us = code
        self._closing = True
        self._gone.set()
        self._wake()

    async def abort(self) -> None:
        """Drop the link without a close frame (recorded as code 1006)."""
        await self.aclose(1006)

    async def _close_handshake(self, code: int, reason: str) -> None:
        """Nothing to exchange with a scripted peer."""

    async def _drop(self) -> None:
        """Nothing to drop."""

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()

    def __repr__(self) -> str:
        return (
            f"<ScriptedWebSocket {len(self._frames)} frames queued, {len(self.sent)} sent, "
            f"close_code={self._close_code}>"
        )


def _encode(frame: Frame) -> str | bytes:
    if isinstance(frame, (str, bytes)):
        return frame
    if isinstance(frame, Mapping):
        return orjson.dumps(dict(frame)).decode()
    raise TypeError(f"a frame is str, bytes or a mapping, not {type(frame).__name__}")
