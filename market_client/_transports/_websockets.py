"""``websockets``' sans-I/O protocol over an AnyIO byte stream: one code path for both backends.

websockets' `ClientProtocol` takes bytes in (`receive_data`, `receive_eof`)
and gives frames out (`events_received`) and bytes to write
(`data_to_send`), with no I/O of its own. This module feeds it from an AnyIO
TCP (or TLS) stream, the same on Trio and asyncio, as the library's own
``trio/connection.py`` and ``asyncio/connection.py`` do with their runtimes,
but without their reader task and message queue:

* **Reading happens in the caller.** `recv`/`recv_many` read the stream
  only when asked: one ``receive()`` gives every frame the protocol parses out
  of those bytes, and `recv_many` returns all the whole messages among them
  at once (the natural batch). Nothing reads while nobody asks, so
  back-pressure is TCP's: the gateway's writes stall once the kernel's
  buffers are full. A pong or a close frame arrives the same way, so a
  socket that is pinged must be one that is being read (the client's MD and
  CMD readers always are).
* **Writing happens in the sender.** Each ``send_*`` call queues bytes in the
  protocol; whoever holds the write lock writes everything `data_to_send`
  has, in order, through the stream's own ``send()`` (AnyIO refuses two
  concurrent ``send()`` calls). Pongs and close replies the protocol queues
  while reading go out the same way.
"""

from __future__ import annotations

import contextlib
import os
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar, cast

import anyio
import anyio.abc
import anyio.lowlevel

from ._base import (
    CLOSE_TIMEOUT,
    MAX_QUEUE,
    Backend,
    TransportClosed,
    TransportOpenError,
    WebSocket,
    WebSocketTransport,
    without_token,
)

if TYPE_CHECKING:
    from websockets.client import ClientProtocol
    from websockets.frames import Frame
    from websockets.protocol import Event

__all__ = ["WebsocketsTransport"]

# Bytes asked of the stream per read: a read returns what is there, up to this.
READ_SIZE = 65536
# A frame begun is written whole (half a frame would corrupt the stream): a peer
# that does not take it within close_timeout, and at least this, is dropped.
MIN_WRITE_TIME = 0.1
# What a read returns when the stream ended, broke, or was closed by us.
_STREAM_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class _WebsocketsSocket(WebSocket):
    """One connection: a `ClientProtocol` and the byte stream it runs over.

    Text messages come back as `str`, binary ones as `bytes`. The protocol
    does not check that text is UTF-8 (the library's connections do it when
    they decode), and a check is a pass over the bytes anyway: decoding is
    that pass, so a message that is not UTF-8 fails the connection with 1007,
    as the library's own clients do. orjson parses a `str` as fast as bytes,
    and a short frame's decode costs a tenth of its parse; the MD and CMD
    readers and the recorders take either, and a `str` is what the other
    pure-Python transports return.
    """

    # recv() returns a message already parsed without a checkpoint; the MD and
    # CMD readers give other tasks a turn every 16 frames themselves.
    recv_yields = False

    def __init__(
        self, stream: anyio.abc.ByteStream, protocol: ClientProtocol, *, close_timeout: float
    ) -> None:
        super().__init__(close_timeout=close_timeout)
        from websockets.frames import Opcode
        from websockets.protocol import State

        self._stream = stream
        self._protocol = protocol
        self._text, self._binary, self._cont = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
        self._pong = Opcode.PONG
        self._open_state, self._closed_state = State.OPEN, State.CLOSED
        # Messages parsed and not yet returned: what one read gave beyond the
        # one message `recv` returned. Never more than one read's worth.
        self._waiting: deque[str | bytes] = deque()
        self._parts: list[bytes] = []  # a fragmented message so far
        self._parts_text = False
        self._flush_due = False  # the frames just read queued a pong or a close reply
        # Frames taken from the protocol and not yet written, in order: each a
        # whole frame, so one not yet begun can be withdrawn (a cancelled send).
        self._outgoing: deque[bytes] = deque()
        self._dropped = False  # the TCP connection is closed: nothing more goes out
        self._pings: dict[bytes, anyio.Event] = {}  # payload -> set when its pong came
        # fast_acquire: no checkpoint when uncontended (the stream's own call has one).
        self._reading = anyio.Lock(fast_acquire=True)
        self._writing = anyio.Lock(fast_acquire=True)
        self._deadline: float | None = None  # when a closing peer must have ended TCP

    # -- reading ---------------------------------------------------------------
    def _closed_error(self) -> TransportClosed:
        """The `TransportClosed` for the socket now: the peer's close code, else ours, else 1006."""
        protocol = self._protocol
        close = protocol.close_rcvd or protocol.close_sent
        exc = TransportClosed(close.code, close.reason) if close else TransportClosed(1006)
        if protocol.state is self._closed_state:
            exc.__cause__ = protocol.close_exc  # says why (a frame too big, bad UTF-8, EOF)
        return self._seen_closed(exc)

    async def _receive(self) -> bytes:
        """One read of the stream; ``b""`` once it ended, broke or was closed."""
        try:
            if self._deadline is None:
                if not self._protocol.close_expected():
                    return await self._stream.receive(READ_SIZE)
                # A close frame went out: the peer has close_timeout to end TCP.
                self._deadline = anyio.current_time() + self.close_timeout
            with anyio.CancelScope(deadline=self._deadline):
                return await self._stream.receive(READ_SIZE)
            return b""  # the peer never ended the connection: it is dropped
        except _STREAM_GONE:
            return b""

    async def _read_once(self) -> None:
        """Read the stream once; the whole messages that completed go to ``_waiting``.

        The caller holds ``_reading``. Once the stream ended, the protocol is
        CLOSED and the stream closed.
        """
        protocol = self._protocol
        state = protocol.state
        data = await self._receive()
        if data and protocol.state is not self._closed_state:  # not dropped meanwhile
            protocol.receive_data(data)
            events = protocol.events_received()
            if events:
                # Kept before any await: a cancel at the flush below loses nothing.
                self._waiting.extend(self._take(cast("list[Frame]", events)))
            if (self._flush_due or protocol.state is not state) and not self._writing.locked():
                # (A writer at work sends what the protocol queued, pongs included.)
                self._flush_due = False
                with contextlib.suppress(TransportClosed):  # the next read sees it end
                    await self._flush()
            return
        protocol.receive_eof()
        with anyio.CancelScope(shield=True):
            await self._drop()
        self._closed_error()  # known closed: wakes a waiting ping

    async def _begin(self, events: list[Event]) -> None:
        """Take the frames that came in the same read as the handshake's answer."""
        from websockets.http11 import Response

        frames = [e for e in events if not isinstance(e, Response)]
        self._waiting.extend(self._take(cast("list[Frame]", frames)))
        self._flush_due = False
        with contextlib.suppress(TransportClosed):  # a pong, a close reply or ours
            await self._flush()

    def _take(self, events: list[Frame]) -> list[str | bytes]:
        """The whole messages among ``events``; pongs matched to their pings."""
        messages: list[str | bytes] = []
        text, binary, cont = self._text, self._binary, self._cont
        for frame in events:
            opcode = frame.opcode
            if opcode is text:
                if frame.fin:
                    try:
                        # A parsed frame's data is bytes (BytesLike is for frames sent).
                        messages.append(frame.data.decode())  # type: ignore[union-attr]
                    except UnicodeDecodeError as exc:
                        self._invalid_text(exc)
                        break
                else:
                    self._parts, self._parts_text = [bytes(frame.data)], True
            elif opcode is binary:
                if frame.fin:
                    messages.append(bytes(frame.data))
                else:
                    self._parts, self._parts_text = [bytes(frame.data)], False
            elif opcode is cont:
                # The protocol checked the order and the size (max_size is the
                # whole message's: it counts the fragments so far).
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    whole, self._parts = b"".join(self._parts), []
                    if not self._parts_text:
                        messages.append(whole)
                        continue
                    try:
                        messages.append(whole.decode())
                    except UnicodeDecodeError as exc:
                        self._invalid_text(exc)
                        break
            elif opcode is self._pong:
                self._acknowledge(bytes(frame.data))
            else:  # a ping (the protocol queued its pong) or a close (its reply)
                self._flush_due = True
        return messages

    def _invalid_text(self, exc: UnicodeDecodeError) -> None:
        """Fail the connection with 1007, as websockets' clients do on text that is not UTF-8."""
        from websockets.frames import CloseCode

        self._parts = []
        self._protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")

    def _acknowledge(self, data: bytes) -> None:
        """A pong answers its ping and every earlier one (a peer may answer only the latest)."""
        if data not in self._pings:
            return  # unsolicited: allowed, ignored
        while self._pings:
            payload, pong = next(iter(self._pings.items()))
            del self._pings[payload]
            pong.set()
            if payload == data:
                return

    async def _read(self) -> None:
        """Read until at least one whole message waits; raise once the socket closed."""
        while not self._waiting:
            if self._closing or self._protocol.state is self._closed_state:
                raise self._closed_error()
            async with self._reading:
                if not self._waiting:  # another reader may have read meanwhile
                    await self._read_once()

    async def recv(self) -> str | bytes:
        if self._closing:
            raise self._closed_error()
        if not self._waiting:
            await self._read()
        return self._waiting.popleft()

    async def recv_many(self) -> list[str | bytes]:
        if self._closing:
            raise self._closed_error()
        if not self._waiting:
            await self._read()  # every message of one read
        messages = list(self._waiting)
        self._waiting.clear()
        return messages

    # -- writing ---------------------------------------------------------------
    async def _flush(self) -> None:
        """Write every frame queued, in order, by whoever holds the write lock.

        A cancel before a frame is begun leaves it queued (`send` withdraws
        its own). A frame begun is written whole, shielded from
        cancellation: half a frame on the wire would corrupt every later
        one. A peer that does not take it within ``close_timeout`` (it reads
        nothing) gets its connection dropped; a deadline that passed
        meanwhile takes effect after it.

        Raises:
            TransportClosed: The connection broke (or was dropped) before or under the write.
        """
        protocol = self._protocol
        outgoing = self._outgoing
        async with self._writing:
            outgoing.extend(protocol.data_to_send())
            while outgoing:
                if self._dropped:
                    outgoing.clear()
                    raise self._closed_error()
                chunk = outgoing[0]
                if not chunk:  # end of data after the peer's EOF: the reader closes the stream
                    outgoing.popleft()
                    continue
                await anyio.lowlevel.checkpoint_if_cancelled()
                # One scope: shielded from the caller's cancellation, bounded by its own deadline.
                limit = anyio.current_time() + max(self.close_timeout, MIN_WRITE_TIME)
                with anyio.CancelScope(shield=True, deadline=limit) as stuck:
                    try:
                        await self._stream.send(chunk)
                    except _STREAM_GONE as exc:
                        await self._drop()
                        raise self._closed_error() from exc
                if stuck.cancelled_caught:
                    with anyio.CancelScope(shield=True):
                        await self._drop()
                    raise self._closed_error()
                if self._dropped:  # aborted while the frame went out: the queue is gone
                    raise self._closed_error()
                outgoing.popleft()
                outgoing.extend(protocol.data_to_send())

    async def send(self, text: str) -> None:
        protocol = self._protocol
        if self._closing or protocol.state is not self._open_state:
            raise self._closed_error()
        protocol.send_text(text.encode())
        frames = protocol.data_to_send()
        self._outgoing.extend(frames)
        try:
            await self._flush()
        except anyio.get_cancelled_exc_class():
            # Cancelled before its frame was begun: withdrawn, never sent. (An
            # equal frame of another sender is the same bytes on the wire.)
            for frame in frames:
                with contextlib.suppress(ValueError):  # already written
                    self._outgoing.remove(frame)
            raise

    async def ping(self) -> None:
        """Send a ping and return when its pong arrives.

        The pong is read by whoever reads the socket (`recv`, `recv_many`):
        ping a socket that is being read, as the MD and CMD readers always do.

        Raises:
            TransportClosed: The socket is closed, or closed while waiting.
        """
        protocol = self._protocol
        if self.closed or protocol.state is not self._open_state:
            raise self._closed_error()
        payload = os.urandom(4)
        while payload in self._pings:
            payload = os.urandom(4)
        pong = anyio.Event()
        self._pings[payload] = pong
        try:
            protocol.send_ping(payload)
            await self._flush()
            await self._pong_or_closed(pong)
        finally:
            self._pings.pop(payload, None)

    # -- closing ---------------------------------------------------------------
    async def _close_handshake(self, code: int, reason: str) -> None:
        from websockets.exceptions import ProtocolError

        protocol = self._protocol
        if protocol.state is self._open_state:
            try:
                protocol.send_close(code, reason)
            except ProtocolError as exc:  # a code one may not send (1005, 1006, 1015...)
                raise ValueError(f"cannot close with code {code}: {exc}") from None
            try:
                await self._flush()
            except TransportClosed:
                return
        # The peer answers with its close frame and then ends the TCP connection
        # (a client waits for the server to end it). A reader in recv() holds
        # the stream meanwhile; it releases it with the read that got the reply.
        async with self._reading:
            while protocol.state is not self._closed_state:
                await self._read_once()  # messages after our close frame are dropped

    async def _drop(self) -> None:
        self._dropped = True
        self._outgoing.clear()
        await anyio.aclose_forcefully(self._stream)
        self._protocol.receive_eof()  # idempotent: the protocol is CLOSED
        self._protocol.data_to_send()


class WebsocketsTransport(WebSocketTransport):
    """``websockets``' sans-I/O protocol over an AnyIO stream, on both backends.

    The default on Trio, and on asyncio where picows is not installed.

    Args:
        max_queue: Accepted for a uniform signature; this transport keeps no
            queue. It reads the socket only when `recv` or `recv_many` asks,
            so at most one read's messages wait in memory, and back-pressure
            is TCP's.
        close_timeout: Longest closing handshake, in seconds, before the
            connection is dropped.
        compression: ``"deflate"`` to offer permessage-deflate (off by default:
            market data is small frames, where it costs more CPU than it saves).
    """

    name: ClassVar[str] = "websockets"
    backends: ClassVar[tuple[Backend, ...]] = ("asyncio", "trio")

    def __init__(
        self,
        *,
        max_queue: int = MAX_QUEUE,
        close_timeout: float = CLOSE_TIMEOUT,
        compression: str | None = None,
    ) -> None:
        super().__init__(max_queue=max_queue, close_timeout=close_timeout)
        if compression not in (None, "deflate"):
            raise ValueError(f"compression must be None or 'deflate', got {compression!r}")
        self.compression = compression

    @contextlib.asynccontextmanager
    async def open(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None,
        open_timeout: float,
        max_size: int,
    ) -> AsyncIterator[WebSocket]:
        from websockets.client import ClientProtocol
        from websockets.exceptions import InvalidStatus, InvalidURI
        from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
        from websockets.http11 import USER_AGENT
        from websockets.protocol import State
        from websockets.uri import parse_uri

        where = without_token(url)
        try:
            uri = parse_uri(url)
        except InvalidURI:
            # Its message holds the whole URL, token included: not chained.
            raise TransportOpenError(f"cannot open {where}: not a valid URL") from None
        protocol = ClientProtocol(
            uri,
            extensions=enable_client_permessage_deflate(None) if self.compression else None,
            max_size=max_size,
        )
        stream: anyio.abc.ByteStream | None = None
        try:
            with anyio.fail_after(open_timeout):
                if uri.secure:
                    stream = await anyio.connect_tcp(
                        uri.host,
                        uri.port,
                        tls=True,
                        ssl_context=ssl or ssl_module.create_default_context(),
                        tls_hostname=uri.host,
                        # The WebSocket closing handshake ends the session; a
                        # peer that ends TCP without TLS' close_notify is fine.
                        tls_standard_compatible=False,
                    )
                else:
                    stream = await anyio.connect_tcp(uri.host, uri.port)
                request = protocol.connect()
                request.headers.setdefault("User-Agent", USER_AGENT)
                protocol.send_request(request)
                for chunk in protocol.data_to_send():
                    await stream.send(chunk)
                events: list[Event] = []
                while protocol.state is State.CONNECTING and protocol.handshake_exc is None:
                    try:
                        data = await stream.receive(READ_SIZE)
                    except _STREAM_GONE:
                        protocol.receive_eof()  # handshake_exc: no valid response
                    else:
                        protocol.receive_data(data)
                    events += protocol.events_received()
            failure = protocol.handshake_exc
            if isinstance(failure, InvalidStatus):
                status = failure.response.status_code
                raise TransportOpenError(f"{where}: {failure}", status) from failure
            if failure is not None:
                raise TransportOpenError(f"cannot open {where}: {failure}") from failure
        except BaseException as exc:
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
            if isinstance(exc, (OSError, TimeoutError, anyio.BrokenResourceError)):
                raise TransportOpenError(f"cannot open {where}: {exc!r}") from exc
            raise
        assert stream is not None
        ws = _WebsocketsSocket(stream, protocol, close_timeout=self.close_timeout)
        try:
            await ws._begin(events)
            # connect() closes it before this block ends; this is for a caller of open()
            yield ws
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)
