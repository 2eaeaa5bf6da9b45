"""The ``websockets`` library: its asyncio client, and its Trio client (websockets 17+)."""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import sniffio

from ._base import (
    CLOSE_TIMEOUT,
    MAX_QUEUE,
    Backend,
    TransportClosed,
    TransportOpenError,
    WebSocket,
    WebSocketTransport,
    bound_reader,
    without_token,
)

__all__ = ["WebsocketsTransport"]


class _WebsocketsSocket(WebSocket):
    """A ``websockets`` connection (the asyncio and the Trio one share most of the API)."""

    __slots__ = (
        "_assembler",
        "_binary",
        "_closed_exc",
        "_in_progress",
        "_open",
        "_queue",
        "_text",
        "_trio",
        "_ws",
    )

    def __init__(self, ws: Any, closed_exc: type[Exception], *, close_timeout: float) -> None:
        super().__init__(close_timeout=close_timeout)
        self._ws = ws
        self._closed_exc = closed_exc
        self._trio = not hasattr(ws, "transport")
        from websockets.frames import Opcode
        from websockets.protocol import State

        self._text, self._binary = Opcode.TEXT, Opcode.BINARY
        # The asyncio client's recv() returns a waiting message at once. The
        # Trio client's takes it from a Trio memory channel, always a
        # checkpoint: a scheduling round per message, half a Trio session's
        # time under a flood. `recv` takes a whole waiting message from that
        # channel's queue itself, as the library's recv() would, where the
        # library is laid out as expected (websockets 17); else it yields.
        self._assembler: Any = None
        self._queue: deque[Any] = deque()
        if self._trio:
            queue = _waiting_frames(ws)
            if queue is not None:
                self._assembler, self._queue = ws.recv_messages, queue
        self.recv_yields = self._trio and self._assembler is None

        self._open = State.OPEN
        # `try_send` uses the asyncio connection's own attributes, looked up here
        # once: a release without one of them only loses the fast path. This one
        # is set while a fragmented message goes out (its name since websockets
        # 16, and before); "" means no fast path.
        self._in_progress = ""
        if not self._trio and all(hasattr(ws, n) for n in ("protocol", "send_data", "paused")):
            self._in_progress = next(
                (n for n in ("send_in_progress", "fragmented_send_waiter") if hasattr(ws, n)), ""
            )

    def _closed(self, exc: Exception) -> TransportClosed:
        # The peer's close frame; else ours (1009 when a frame was too big).
        close = getattr(exc, "rcvd", None) or getattr(exc, "sent", None)
        return self._seen_closed(
            TransportClosed(
                close.code if close is not None else 1006,
                close.reason if close is not None else "",
            )
        )

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    def try_send(self, text: str) -> bool:
        # The asyncio client's send() writes at once unless a fragmented
        # message is going out or the transport is paused (then its drain()
        # waits): here the same steps without its async context manager.
        if not self._in_progress or self._closing:
            return False  # the Trio client, or a release without the attributes
        ws = self._ws
        protocol = ws.protocol
        if (
            getattr(ws, self._in_progress) is not None
            or ws.paused
            or protocol.state is not self._open
            or ws.transport.is_closing()
        ):
            return False
        try:
            protocol.send_text(text.encode())
            ws.send_data()
        except Exception as exc:
            # What send() turns into ConnectionClosed: the connection is done for.
            # Not False: the frame may be on its way, and send() would repeat it.
            ws.transport.abort()
            raise self._seen_closed(TransportClosed(1006)) from exc
        return True

    def _waiting(self) -> str | bytes | None:
        """A whole message that is waiting, taken without a checkpoint; else None.

        What the library's recv() would return, without its checkpoint (its
        Assembler.get, unfragmented). Anything else (text that is not UTF-8:
        the library fails the connection with 1007; a frame left of a
        message it refused) is the library's to handle.
        """
        queue = self._queue  # empty but for the Trio client's waiting frames
        if queue and queue[0].fin and not self._assembler.get_in_progress:
            frame = queue[0]
            message: str | bytes | None = None
            if frame.opcode is self._text:
                with contextlib.suppress(UnicodeDecodeError):
                    message = frame.data.decode()
            elif frame.opcode is self._binary:
                message = bytes(frame.data)
            if message is not None:
                queue.popleft()
                self._assembler.maybe_resume()
                return message
        return None

    async def recv(self) -> str | bytes:
        message = self._waiting()
        if message is not None:
            return message
        try:
            return await self._ws.recv()  # type: ignore[no-any-return]
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    async def recv_many(self) -> list[str | bytes]:
        messages: list[str | bytes] = []
        while (message := self._waiting()) is not None:
            messages.append(message)
        return messages or [await self.recv()]

    async def ping(self) -> None:
        try:
            if self._trio:
                from websockets.protocol import State

                pong = await self._ws.ping(ack_on_close=True)
                await pong.wait()  # also set when the connection closes
                if self._ws.protocol.state is State.CLOSED:
                    raise self._closed(self._ws.protocol.close_exc)
            else:
                await await_future(await self._ws.ping())
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    async def _close_handshake(self, code: int, reason: str) -> None:
        if self._trio:
            await self._ws.aclose(code, reason)
        else:
            await self._ws.close(code, reason)

    async def _drop(self) -> None:
        if self._trio:
            import trio

            await trio.aclose_forcefully(self._ws.stream)
            # The library's reader task does not always see the stream close:
            # with more than max_queue messages unread it waits for the queue
            # to drain, not for the stream (websockets 17), and would wait
            # forever, holding the nursery of open() and with it the block's
            # exit. Woken, it finds the stream closed and ends the connection
            # as it does on EOF (queue closed, pings acknowledged).
            paused = getattr(self._ws, "recv_flow_control", None)
            if paused is not None:
                paused.set()
        else:
            self._ws.transport.abort()
            # connection_lost runs on the next loop iteration; wait for it so
            # that nothing of the connection outlives this call.
            await self._ws.wait_closed()


async def await_future(future: Any) -> None:
    """Await an asyncio future (kept apart for the type checker)."""
    await future


def _waiting_frames(ws: Any) -> deque[Any] | None:
    """The queue of frames the Trio client's recv() takes from, if laid out as expected.

    Its ``recv_messages`` (an ``Assembler``) puts each frame on a Trio memory
    channel; the channel's state keeps the waiting ones in a deque. None
    where any of that differs (another release): `recv` then always awaits
    the library's own recv().
    """
    assembler = getattr(ws, "recv_messages", None)
    channel = getattr(assembler, "recv_frames", None)
    queue = getattr(getattr(channel, "_state", None), "data", None)
    if not isinstance(queue, deque) or not all(
        hasattr(assembler, name) for name in ("get_in_progress", "maybe_resume")
    ):
        return None
    return queue


class WebsocketsTransport(WebSocketTransport):
    """The ``websockets`` library: the default, on both backends.

    Under Trio it needs the library's Trio client (websockets 17 or newer,
    which needs Python 3.11+).

    Args:
        max_queue: Messages received but not yet read before the socket stops
            reading from the network.
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
        from websockets.exceptions import (
            ConnectionClosed,
            InvalidHandshake,
            InvalidStatus,
            InvalidURI,
        )

        where = without_token(url)
        options: dict[str, Any] = {
            "ssl": ssl,
            "compression": self.compression,
            "max_size": max_size,
            "max_queue": self.max_queue,
            "open_timeout": open_timeout,
            # also bounds the wait for the TCP close after the peer's close frame
            "close_timeout": self.close_timeout,
            "ping_interval": None,
            "proxy": None,
        }
        if sniffio.current_async_library() == "trio":
            try:
                from websockets.trio.client import connect as connect_trio
            except ImportError:
                raise ValueError(
                    "transport 'websockets' needs websockets 17 or newer under Trio "
                    "(Python 3.11+); use 'trio-websocket', the default there"
                ) from None
            import trio

            # The library's own context manager would close the socket a
            # second time; its nursery (the reader task) is ours instead.
            error: BaseException | None = None  # raised below, not in the nursery's group
            async with trio.open_nursery() as nursery:
                try:
                    ws = await connect_trio(url, **options).connect(nursery)
                except InvalidURI:
                    # Its message holds the whole URL, token included: not chained.
                    error = TransportOpenError(f"cannot open {where}: not a valid URL")
                except InvalidStatus as exc:
                    error = TransportOpenError(f"{where}: {exc}", exc.response.status_code)
                    error.__cause__ = exc
                except (InvalidHandshake, OSError, TimeoutError) as exc:
                    error = TransportOpenError(f"cannot open {where}: {exc}")
                    error.__cause__ = exc
                else:
                    try:
                        # connect() closes it before this block ends, which ends the reader (_drop)
                        yield _WebsocketsSocket(
                            ws, ConnectionClosed, close_timeout=self.close_timeout
                        )
                    except BaseException as exc:
                        error = exc
                finally:
                    bound_reader(nursery, self.close_timeout)
            if error is not None:
                raise error
        else:
            from websockets.asyncio.client import connect as connect_asyncio

            try:
                ws2 = await connect_asyncio(url, **options)
            except InvalidURI:
                # Its message holds the whole URL, token included: not chained.
                raise TransportOpenError(f"cannot open {where}: not a valid URL") from None
            except InvalidStatus as exc:
                raise TransportOpenError(f"{where}: {exc}", exc.response.status_code) from exc
            except (InvalidHandshake, OSError, TimeoutError) as exc:
                raise TransportOpenError(f"cannot open {where}: {exc}") from exc
            yield _WebsocketsSocket(ws2, ConnectionClosed, close_timeout=self.close_timeout)
