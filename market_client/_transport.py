"""The one small interface the client needs from a WebSocket library.

:func:`connect_websocket` opens a text WebSocket with the library that suits
the running backend and yields a :class:`WebSocket`: ``send``, ``recv`` and
``close_code``. Library-specific exceptions stop here: a socket that closes
raises :class:`TransportClosed` with its close code, a socket that cannot be
opened raises :class:`TransportOpenError`.

Measured here (see docs/benchmarks.md), the ``websockets`` library's native
clients are the fastest pure-Python ones on both backends, so they are the
default; ``trio-websocket`` is a supported alternative under Trio, and
``httpx-ws`` (AnyIO-native, optional: ``pip install httpx-ws``) on both.
``picows`` (Cython, asyncio only, optional: ``pip install picows``) is the
fastest of all on asyncio; its adapter is in ``_picows.py``.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

import anyio
import anyio.lowlevel
import sniffio

__all__ = [
    "ONLY_ON",
    "TRANSPORTS",
    "TransportClosed",
    "TransportName",
    "TransportOpenError",
    "WebSocket",
    "connect_websocket",
    "without_token",
]

TransportName = Literal["websockets", "trio-websocket", "httpx-ws", "picows"]
TRANSPORTS: tuple[TransportName, ...] = ("websockets", "trio-websocket", "httpx-ws", "picows")
MAX_MESSAGE = 16 * 1024 * 1024  # a full-depth snapshot can be large
MAX_QUEUE = 256  # messages received but not yet read, before the socket stops reading
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 0.5  # a closing handshake longer than this ends with an abort (picows)
# Transports that run on one backend only; the others run on both.
ONLY_ON: dict[TransportName, Literal["asyncio", "trio"]] = {
    "picows": "asyncio",
    "trio-websocket": "trio",
}


def without_token(url: str) -> str:
    """``url`` without its query (which carries the token), for messages and logs."""
    return url.split("?")[0]


class TransportClosed(Exception):
    """The socket is closed; ``code`` is the close code (1006 when none was received)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class TransportOpenError(Exception):
    """The socket could not be opened; ``status`` is the HTTP status if one came back."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WebSocket(Protocol):
    """A connected text WebSocket."""

    async def send(self, text: str) -> None:
        """Send one text frame; raises :class:`TransportClosed` if the socket is closed."""

    async def recv(self) -> str | bytes:
        """Receive one frame; raises :class:`TransportClosed` once the socket is closed."""

    async def aclose(self, code: int = 1000) -> None:
        """Close the socket (idempotent)."""


class _Websockets:
    """Adapter for ``websockets`` (its asyncio and its Trio client share the API)."""

    __slots__ = ("_closed_exc", "_ws")

    def __init__(self, ws: object, closed_exc: type[Exception]) -> None:
        self._ws = ws
        self._closed_exc = closed_exc

    def _closed(self, exc: Exception) -> TransportClosed:
        # The peer's close frame; else ours (1009 when a frame was too big).
        close = getattr(exc, "rcvd", None) or getattr(exc, "sent", None)
        return TransportClosed(
            close.code if close is not None else 1006, close.reason if close is not None else ""
        )

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)  # type: ignore[attr-defined]
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    async def recv(self) -> str | bytes:
        try:
            return await self._ws.recv()  # type: ignore[attr-defined, no-any-return]
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    async def aclose(self, code: int = 1000) -> None:
        # The asyncio client calls it close(), the Trio client aclose().
        closer = getattr(self._ws, "aclose", None) or self._ws.close  # type: ignore[attr-defined]
        await closer(code)


class _TrioWebsocket:
    """Adapter for ``trio-websocket``."""

    __slots__ = ("_closed_exc", "_ws")

    def __init__(self, ws: object, closed_exc: type[Exception]) -> None:
        self._ws = ws
        self._closed_exc = closed_exc

    def _closed(self, exc: Exception) -> TransportClosed:
        reason = getattr(exc, "reason", None)
        return TransportClosed(
            getattr(reason, "code", 1006) or 1006, getattr(reason, "reason", "") or ""
        )

    async def send(self, text: str) -> None:
        try:
            await self._ws.send_message(text)  # type: ignore[attr-defined]
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    async def recv(self) -> str | bytes:
        try:
            return await self._ws.get_message()  # type: ignore[attr-defined, no-any-return]
        except self._closed_exc as exc:
            raise self._closed(exc) from exc

    async def aclose(self, code: int = 1000) -> None:
        await self._ws.aclose(code)  # type: ignore[attr-defined]


class _HttpxWs:
    """Adapter for ``httpx-ws`` (AnyIO-native: one code path for both backends)."""

    __slots__ = ("_errors", "_ws")

    def __init__(self, ws: Any, errors: Any) -> None:
        self._ws = ws
        self._errors = errors

    def _closed(self, exc: Exception) -> TransportClosed:
        if isinstance(exc, self._errors.WebSocketDisconnect):
            return TransportClosed(exc.code, exc.reason)
        return TransportClosed(1006, str(exc))

    async def send(self, text: str) -> None:
        try:
            await self._ws.send_text(text)
        except (self._errors.WebSocketDisconnect, self._errors.WebSocketNetworkError) as exc:
            raise self._closed(exc) from exc

    async def recv(self) -> str | bytes:
        try:
            event = await self._ws.receive()
        except (self._errors.WebSocketDisconnect, self._errors.WebSocketNetworkError) as exc:
            raise self._closed(exc) from exc
        return event.data  # type: ignore[no-any-return]

    async def aclose(self, code: int = 1000) -> None:
        await self._ws.close(code)


@contextlib.asynccontextmanager
async def _open_trio_websocket(
    url: str, ssl: ssl_module.SSLContext | None, open_timeout: float
) -> AsyncIterator[_TrioWebsocket]:
    """trio-websocket over a TCP (or TLS) stream opened and closed here.

    Its own ``open_websocket_url`` leaves the socket to the garbage collector
    when it is cancelled half-way through the handshake, so the stream is ours
    and trio-websocket only runs the WebSocket over it. Like trio-websocket,
    this lets an error of the ``async with`` body out as itself, not wrapped in
    the group of the nursery that runs the reader.
    """
    import trio
    import trio_websocket

    where = without_token(url)
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
        try:
            with anyio.fail_after(open_timeout):
                stream: Any
                if secure:
                    stream = await trio.open_ssl_over_tcp_stream(
                        host,
                        port,
                        ssl_context=ssl or ssl_module.create_default_context(),
                        https_compatible=True,
                    )
                else:
                    stream = await trio.open_tcp_stream(host, port)
                stack.push_async_callback(stream.aclose)
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host if port in (80, 443) else f"{host}:{port}",
                    resource,
                    message_queue_size=MAX_QUEUE,
                    max_message_size=MAX_MESSAGE,
                )
        except trio_websocket.ConnectionRejected as exc:
            raise TransportOpenError(
                f"{where}: server rejected WebSocket connection: HTTP {exc.status_code}",
                exc.status_code,
            ) from exc
        except (trio_websocket.HandshakeError, OSError, TimeoutError) as exc:
            raise TransportOpenError(f"cannot open {where}: {exc!r}") from exc
        stack.push_async_callback(ws.aclose)
        try:
            yield _TrioWebsocket(ws, trio_websocket.ConnectionClosed)
        except BaseException as exc:  # re-raised below, once the nursery is closed
            body_error = exc
    if body_error is not None:
        raise body_error


def default_transport() -> TransportName:
    """The transport used when none is named.

    ``websockets`` on both backends; under Trio it needs the library's native
    Trio client (websockets 17 or newer, which needs Python 3.11+), and falls
    back to ``trio-websocket`` where that is not installed.
    """
    if sniffio.current_async_library() == "trio":
        try:
            import websockets.trio.client  # noqa: F401
        except ImportError:
            return "trio-websocket"
    return "websockets"


@contextlib.asynccontextmanager
async def connect_websocket(
    url: str,
    *,
    transport: TransportName | None = None,
    ssl: ssl_module.SSLContext | None = None,
    open_timeout: float = OPEN_TIMEOUT,
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``) for the running backend.

    Raises:
        TransportOpenError: The connection or the opening handshake failed.
        ValueError: The transport does not exist or does not run on this backend.
    """
    name = transport or default_transport()
    if name not in TRANSPORTS:
        raise ValueError(f"unknown transport {name!r}; choose from {', '.join(TRANSPORTS)}")
    backend = sniffio.current_async_library()
    only = ONLY_ON.get(name)
    if only is not None and backend != only:
        raise ValueError(
            f"transport {name!r} runs only under {'Trio' if only == 'trio' else 'asyncio'}; "
            f"use the default 'websockets' on {'asyncio' if backend == 'asyncio' else 'Trio'}"
        )
    where = without_token(url)
    async with contextlib.AsyncExitStack() as stack:
        if name == "websockets":
            from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

            options: dict[str, Any] = {
                "ssl": ssl,
                "compression": None,
                "max_size": MAX_MESSAGE,
                "max_queue": MAX_QUEUE,
                "open_timeout": open_timeout,
                "proxy": None,
            }
            if backend == "trio":
                try:
                    from websockets.trio.client import connect as connect_trio
                except ImportError:
                    raise ValueError(
                        "transport 'websockets' needs websockets 17 or newer under Trio "
                        "(Python 3.11+); use 'trio-websocket', the default there"
                    ) from None
                cm: Any = connect_trio(url, **options)
            else:
                from websockets.asyncio.client import connect as connect_asyncio

                cm = connect_asyncio(url, **options)
            try:
                ws = await stack.enter_async_context(cm)
            except InvalidStatus as exc:
                raise TransportOpenError(f"{where}: {exc}", exc.response.status_code) from exc
            except (InvalidHandshake, OSError, TimeoutError) as exc:
                raise TransportOpenError(f"cannot open {where}: {exc}") from exc
            yield _Websockets(ws, ConnectionClosed)
        elif name == "picows":
            try:
                from ._picows import open_picows
            except ImportError:
                raise ValueError(
                    "transport 'picows' needs the picows package: pip install picows"
                ) from None
            ws4 = await open_picows(
                url, ssl=ssl, open_timeout=open_timeout, max_size=MAX_MESSAGE, max_queue=MAX_QUEUE
            )
            stack.push_async_callback(ws4.aclose)
            yield ws4
        elif name == "httpx-ws":
            try:
                import httpx
                import httpx_ws
            except ImportError:
                raise ValueError(
                    "transport 'httpx-ws' needs the httpx-ws package: pip install httpx-ws"
                ) from None
            http = await stack.enter_async_context(
                httpx.AsyncClient(verify=ssl if ssl is not None else True, timeout=open_timeout)
            )
            try:
                ws3: Any = await stack.enter_async_context(
                    httpx_ws.aconnect_ws(
                        "http" + url[2:],
                        http,
                        max_message_size_bytes=MAX_MESSAGE,
                        queue_size=MAX_QUEUE,
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
            yield _HttpxWs(ws3, httpx_ws)
        else:
            yield await stack.enter_async_context(_open_trio_websocket(url, ssl, open_timeout))
