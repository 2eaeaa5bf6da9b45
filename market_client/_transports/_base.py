"""The small interface every WebSocket transport implements, and its contract.

Two classes, as in httpx (a client and its transport):

* `WebSocketTransport` says *how* to open a WebSocket: one library and its
  options. It is a value the user may configure or subclass, and it opens
  connections with `WebSocketTransport.connect`.
* `WebSocket` is one open connection: `recv`, `send`, `ping`, `abort` and
  `aclose`. Library exceptions stop at this interface: a closed socket raises
  `TransportClosed` with its close code, an open that fails raises
  `TransportOpenError`.

Open/close contract:

* `connect()` is an async context manager. It opens the socket, yields it and,
  on exit, closes it by calling `WebSocket.aclose()`. That method is the one
  close path: a body that calls it itself (to choose the close code, or to
  close before leaving the block) closes the socket, and the exit then finds
  it closed and returns at once.
* `aclose(code)` is polite: it sends the close frame and waits for the peer's,
  at most `close_timeout` seconds, and then drops the TCP connection whatever
  the handshake did. Cancelled, it drops the connection at once. It never
  leaves a socket to the garbage collector.
* `abort()` drops the TCP connection now, without a closing handshake: for a
  link known to be dead (a liveness check failed), where a polite close
  would only wait. After it, `recv`, `send` and `ping` raise `TransportClosed`
  and `aclose()` returns at once.
* Cancelled at any point of `connect()`, nothing stays open (the gateway sees
  the connection go).
* Leaving `connect()` is bounded: a library's own reader task (trio-websocket
  runs one in `open()`'s nursery) gets `close_timeout` to end once
  the socket is closed or its opening failed, and is cancelled if it has not
  (`bound_reader`). So leaving takes at most twice `close_timeout`: the
  closing handshake, then the reader.
* The libraries' own keepalive pings are off: whoever owns the link runs its
  liveness check with `ping()`, so pings are never doubled.
"""

from __future__ import annotations

import abc
import contextlib
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ClassVar, Literal, Protocol

import anyio
import sniffio

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_MESSAGE",
    "MAX_QUEUE",
    "OPEN_TIMEOUT",
    "Backend",
    "TransportClosed",
    "TransportOpenError",
    "WebSocket",
    "WebSocketTransport",
    "bound_reader",
    "without_token",
]

Backend = Literal["asyncio", "trio"]
MAX_MESSAGE = 16 * 1024 * 1024  # a full-depth snapshot can be large
# Messages received but not yet read, before the socket stops reading (for the
# libraries that read in a task of their own; ``websockets`` reads only when asked).
MAX_QUEUE = 256
OPEN_TIMEOUT = 10.0
# A closing handshake longer than this ends with an abort: a live peer answers
# a close frame within a round trip, a dead one never does.
CLOSE_TIMEOUT = 1.0


def without_token(url: str) -> str:
    """``url`` without its query (which carries the token), for messages and logs.

    Args:
        url: A URL that may carry ``?token=...``.

    Returns:
        The URL up to its query.
    """
    return url.split("?")[0]


class TransportClosed(Exception):
    """The socket is closed.

    Attributes:
        code: The close code (1006 when no close frame was received or sent).
        reason: The close reason, if one came with the code.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class TransportOpenError(Exception):
    """The socket could not be opened.

    Attributes:
        status: The HTTP status of the refused upgrade, if one came back.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WebSocket(abc.ABC):
    """One open text WebSocket (see the module docstring for the close contract).

    Library adapters implement `recv`, `send`, `ping` and two hooks:
    `_close_handshake` (send a close frame, wait for the peer's) and `_drop`
    (close the TCP connection now). `aclose` and `abort` are written once,
    here, on top of them.
    """

    #: Whether `recv` always lets other tasks run (it is a checkpoint) even with
    #: a message waiting: then a reader under a flood needs no checkpoints of
    #: its own to be fair. False where `recv` returns a waiting message at once
    #: (``websockets``, picows); the MD and CMD readers then checkpoint every
    #: 16 frames. True where the library hands messages over through a memory
    #: channel, whose receive() is always a checkpoint (trio-websocket,
    #: httpx-ws).
    recv_yields: bool = False

    def __init__(self, *, close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.close_timeout = close_timeout
        self._closing = False
        # Set once the socket is known closed: by us, or by recv/send seeing it.
        self._gone = anyio.Event()
        self._seen: TransportClosed | None = None  # how recv/send saw it close

    @abc.abstractmethod
    async def recv(self) -> str | bytes:
        """Receive one message.

        A message that is already waiting is returned without a checkpoint
        where `recv_yields` is False: a loop that reads a flood then gives
        other tasks a turn itself now and then.

        Returns:
            The message (``bytes`` from transports that do not decode text).

        Raises:
            TransportClosed: The socket is closed.
        """

    async def recv_many(self) -> list[str | bytes]:
        """Receive every message already waiting, at least one (waiting for it if none).

        This default returns one message, from `recv`. ``websockets`` returns
        every whole message of one read of the socket, picows every message
        it queued.

        Raises:
            TransportClosed: The socket is closed (and nothing is waiting).
        """
        return [await self.recv()]

    @abc.abstractmethod
    async def send(self, text: str) -> None:
        """Send one text message.

        Args:
            text: The message.

        Raises:
            TransportClosed: The socket is closed.
        """

    @abc.abstractmethod
    async def ping(self) -> None:
        """Send a ping and return when its pong arrives.

        It has no deadline of its own: a peer that stopped answering keeps it
        waiting, so bound it (``anyio.fail_after``) and `abort` on timeout.

        Raises:
            TransportClosed: The socket is closed, or closed while waiting.
        """

    @abc.abstractmethod
    async def _close_handshake(self, code: int, reason: str) -> None:
        """Send a close frame and wait for the peer's and the end of the connection."""

    @abc.abstractmethod
    async def _drop(self) -> None:
        """Close the TCP connection now (idempotent); must complete even if cancelled."""

    @property
    def closed(self) -> bool:
        """Whether `aclose` or `abort` was called, or the socket was seen closed."""
        return self._closing or self._gone.is_set()

    def _seen_closed(self, exc: TransportClosed) -> TransportClosed:
        """Note that the socket is closed (wakes a waiting `ping`); returns ``exc``."""
        self._seen = self._seen or exc
        self._gone.set()
        return exc

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close politely with ``code``, at most `close_timeout` seconds; idempotent.

        Args:
            code: The close code to send.
            reason: The close reason to send.
        """
        if self._closing:
            return
        self._closing = True
        try:
            with anyio.move_on_after(self.close_timeout):
                await self._close_handshake(code, reason)
        finally:
            with anyio.CancelScope(shield=True):
                await self._drop()
            self._gone.set()

    async def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake; idempotent."""
        self._closing = True
        try:
            with anyio.CancelScope(shield=True):
                await self._drop()
        finally:
            self._gone.set()

    async def _pong_or_closed(
        self, pong: _Waitable, send_ping: Callable[[], Coroutine[Any, Any, object]] | None = None
    ) -> None:
        """Wait for ``pong`` (running ``send_ping`` beside, if given).

        Raises:
            TransportClosed: The socket closed first.
        """
        if not self.closed:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    await self._gone.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                if send_ping is not None:
                    tg.start_soon(send_ping)
                await pong.wait()
                tg.cancel_scope.cancel()
        if not pong.is_set():
            seen = self._seen
            raise TransportClosed(seen.code, seen.reason) if seen else TransportClosed(1006)


class _Waitable(Protocol):
    """An event: ``wait()`` and ``is_set()`` (anyio's, trio's)."""

    async def wait(self) -> object: ...

    def is_set(self) -> bool: ...


class WebSocketTransport(abc.ABC):
    """How to open a WebSocket: one library and its options.

    Pass an instance as ``transport=`` to `MarketClient` (a name such as
    ``"picows"`` stands for the instance with default options). Subclass it to
    wrap a library of your own: implement `open`, set `name` and `backends`.

    Args:
        max_queue: Messages received but not yet read before the socket stops
            reading from the network (back-pressure), for a library that reads
            in a task of its own.
        close_timeout: Longest closing handshake, in seconds, before the
            connection is dropped.
    """

    name: ClassVar[str] = ""
    backends: ClassVar[tuple[Backend, ...]] = ("asyncio", "trio")

    def __init__(self, *, max_queue: int = MAX_QUEUE, close_timeout: float = CLOSE_TIMEOUT) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if not close_timeout >= 0:
            raise ValueError(f"close_timeout must be >= 0, got {close_timeout}")
        self.max_queue = max_queue
        self.close_timeout = close_timeout

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_queue={self.max_queue}, close_timeout={self.close_timeout})"
        )

    def check_backend(self) -> None:
        """Raise `ValueError` unless this transport runs on the current backend.

        Raises:
            ValueError: It does not run on this backend.
        """
        backend = sniffio.current_async_library()
        if backend not in self.backends:
            names = {"asyncio": "asyncio", "trio": "Trio"}
            runs = " and ".join(names[b] for b in self.backends)
            raise ValueError(
                f"transport {self.name or type(self).__name__!r} runs only under {runs}; "
                f"use the default 'websockets' on {names.get(backend, backend)}"
            )

    @abc.abstractmethod
    def open(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None,
        open_timeout: float,
        max_size: int,
    ) -> contextlib.AbstractAsyncContextManager[WebSocket]:
        """Open ``url`` with the library; the hook subclasses implement.

        The context manager yields a connected `WebSocket` and, on exit,
        releases what the library needs beside the socket (tasks, nurseries)
        after the socket was closed by `connect`. Cancelled half-way through the
        open, it leaves nothing open.

        Args:
            url: ``ws://`` or ``wss://`` URL (its query carries a secret: keep
                it out of messages, see `without_token`).
            ssl: TLS context for ``wss://`` (None: the system trust store).
            open_timeout: Deadline of the connection and opening handshake.
            max_size: Largest message accepted; a bigger one closes with 1009.

        Returns:
            An async context manager yielding the connected socket.
        """

    @contextlib.asynccontextmanager
    async def connect(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        open_timeout: float = OPEN_TIMEOUT,
        max_size: int = MAX_MESSAGE,
    ) -> AsyncIterator[WebSocket]:
        """Open a WebSocket to ``url`` and close it when the block exits.

        Args:
            url: ``ws://`` or ``wss://`` URL.
            ssl: TLS context for ``wss://`` (None: the system trust store).
            open_timeout: Deadline of the connection and opening handshake.
            max_size: Largest message accepted; a bigger one closes with 1009.

        Yields:
            The connected socket.

        Raises:
            TransportOpenError: The connection or the opening handshake failed.
            ValueError: This transport does not run on the current backend.
        """
        from ._redact import install_log_redaction

        self.check_backend()
        install_log_redaction()
        async with self.open(url, ssl=ssl, open_timeout=open_timeout, max_size=max_size) as ws:
            try:
                yield ws
            finally:
                await ws.aclose()


def bound_reader(nursery: Any, close_timeout: float) -> None:
    """Give the tasks of ``nursery`` (a library's reader) ``close_timeout``, then cancel them.

    Called as ``open()``'s nursery body ends: the socket is closed by then (or
    its opening failed). The reader normally sees that at once; one handing a
    message to its full queue (``max_queue`` unread) waits for the queue, not
    the stream. The bound holds whatever the library does inside, so leaving
    the block never hangs on its reader.
    """
    import trio

    nursery.cancel_scope.deadline = trio.current_time() + close_timeout
