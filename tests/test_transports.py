"""Every transport against a peer we control: liveness, abort, polite close, secrets.

The peer is a WebSocket server made of ``wsproto`` over an AnyIO listener, so
it runs on both backends. Silent, it completes the opening handshake and then
neither reads nor answers (a gateway stopped with SIGSTOP looks the same from
the client); otherwise it echoes, answers pings and records the close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import sniffio
from anyio.abc import SocketStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from market_client import MarketClient, RequestSession, RequestTimeout
from market_client._transports import (
    ONLY_ON,
    TRANSPORTS,
    HttpxWsTransport,
    PicowsTransport,
    TokenFilter,
    TransportClosed,
    TransportName,
    TransportOpenError,
    TrioWebsocketTransport,
    WebsocketsTransport,
    WebSocketTransport,
    connect_websocket,
    redact,
    resolve_transport,
)
from market_client.simulator import RunningSimulator

from .rawws import new_token
from .support import free_port, skip_unless_runs_on

pytestmark = pytest.mark.anyio


class Peer:
    """A one-connection-at-a-time WebSocket server on 127.0.0.1."""

    def __init__(self, *, silent: bool, flood: int = 0, then: bytes = b"") -> None:
        self.silent = silent
        self.flood = flood  # messages sent with the handshake's answer, in the same write
        self.then = then  # raw frames sent after them, in the same write
        self.url = ""
        self.accepted = anyio.Event()  # the opening handshake is done
        self.release = anyio.Event()  # a silent peer reads again (to see the client go)
        self.gone = anyio.Event()  # the client's TCP connection ended
        self.close_code: int | None = None  # the code of the client's close frame

    async def handle(self, stream: SocketStream) -> None:
        conn = WSConnection(ConnectionType.SERVER)
        try:
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                conn.receive_data(data)
                for event in conn.events():
                    if isinstance(event, Request):
                        flood = (conn.send(TextMessage(f"m{i}")) for i in range(self.flood))
                        accept = conn.send(AcceptConnection())
                        await stream.send(accept + b"".join(flood) + self.then)
                        self.accepted.set()
                        if self.silent:
                            await self.release.wait()  # meanwhile nothing is read
                    elif isinstance(event, Ping):
                        await stream.send(conn.send(event.response()))
                    elif isinstance(event, TextMessage):
                        await stream.send(conn.send(TextMessage(event.data)))
                    elif isinstance(event, CloseConnection):
                        self.close_code = event.code
                        await stream.send(conn.send(event.response()))
                        return
        finally:
            self.gone.set()
            await stream.aclose()

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[Peer]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.url = f"ws://127.0.0.1:{port}/ws/md?token=peer-secret"
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, self.handle)
            try:
                yield self
            finally:
                self.release.set()
                tg.cancel_scope.cancel()


def transports(backend: str) -> list[WebSocketTransport]:
    """A fresh object of every transport that runs on ``backend``."""
    every: list[WebSocketTransport] = [
        WebsocketsTransport(close_timeout=0.3),
        TrioWebsocketTransport(close_timeout=0.3),
        HttpxWsTransport(close_timeout=0.3),
        PicowsTransport(close_timeout=0.3),
    ]
    return [t for t in every if backend in t.backends]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, anyio_backend: str) -> WebSocketTransport:
    name: TransportName = request.param
    skip_unless_runs_on(anyio_backend, name)
    if name == "websockets" and anyio_backend == "trio":
        pytest.importorskip("websockets.trio.client")
    chosen = resolve_transport(name)
    chosen.close_timeout = 0.3
    return chosen


def tasks() -> set[Any]:
    """The asyncio tasks alive now (Trio's cannot outlive their nursery)."""
    if sniffio.current_async_library() == "asyncio":
        return {t for t in asyncio.all_tasks() if not t.done()}
    return set()


async def test_a_silent_peer_keeps_ping_waiting_and_abort_drops_it_at_once(
    transport: WebSocketTransport,
) -> None:
    before = tasks()
    async with Peer(silent=True).serve() as peer:
        async with transport.connect(peer.url, open_timeout=5) as ws:
            await peer.accepted.wait()
            with anyio.move_on_after(0.3) as waited:
                await ws.ping()
            assert waited.cancelled_caught  # no pong from a peer that does not answer
            start = anyio.current_time()
            await ws.abort()
            assert anyio.current_time() - start < 0.2
            assert ws.closed
            with pytest.raises(TransportClosed):
                await ws.recv()
            with pytest.raises(TransportClosed):
                await ws.ping()
            left = anyio.current_time()
        assert anyio.current_time() - left < 0.2  # leaving the block closes nothing twice
        peer.release.set()
        await peer.gone.wait()  # the peer sees the connection end
    gc.collect()  # a socket left to the collector would warn here (warnings are errors)
    assert tasks() <= before


# Where a request's frame can go out without a wait (then no cancel scope is needed).
WRITES_AT_ONCE = {("picows", "asyncio"), ("websockets", "asyncio")}


async def test_try_send_writes_at_once_only_while_there_is_room(
    transport: WebSocketTransport, anyio_backend: str
) -> None:
    async with (
        Peer(silent=True).serve() as peer,  # reads nothing: the buffers fill
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        await peer.accepted.wait()
        if (transport.name, anyio_backend) not in WRITES_AT_ONCE:
            assert not ws.try_send("x")  # cannot tell: requests use send()
            await ws.abort()
            return
        assert ws.try_send("first")
        chunk = "x" * (1 << 20)
        for _ in range(1000):  # at most 1 GB, far beyond any socket buffer
            if not ws.try_send(chunk):
                break
        else:
            pytest.fail("the socket never pushed back")
        waited: list[str] = []
        send = ws.send

        async def waiting_send(text: str) -> None:
            waited.append(text)
            await send(text)

        ws.send = waiting_send  # type: ignore[method-assign]
        session = RequestSession(ws, on_event=lambda event: None)
        start = anyio.current_time()
        with pytest.raises(RequestTimeout):
            await session.request("portfolio.get", timeout=0.2)
        assert 0.2 <= anyio.current_time() - start < 2
        assert len(waited) == 1  # it waited for room in send(), inside the deadline
        assert len(session.correlator) == 0
        await ws.abort()
        assert not ws.try_send("after")  # closed: nothing sent, nothing raised


class _Connection:
    """The parts of a ``websockets`` asyncio connection that `try_send` uses."""

    def __init__(self, *, fails: bool, in_progress: str = "send_in_progress") -> None:
        from websockets.protocol import State

        self.fails = fails
        self.written: list[bytes] = []
        self.aborted = False
        self.paused = False
        setattr(self, in_progress, None)
        self.protocol = SimpleNamespace(state=State.OPEN, send_text=self.written.append)
        self.transport = SimpleNamespace(is_closing=lambda: self.aborted, abort=self.abort)

    def abort(self) -> None:
        self.aborted = True

    def send_data(self) -> None:
        if self.fails:
            raise OSError("the write failed")


@pytest.mark.parametrize("in_progress", ["send_in_progress", "fragmented_send_waiter"])
async def test_websockets_try_send_on_each_release_and_when_the_write_fails(
    in_progress: str,
) -> None:
    from market_client._transports._websockets import _WebsocketsSocket

    # websockets 16 renamed fragmented_send_waiter: both releases take the fast path.
    conn = _Connection(fails=False, in_progress=in_progress)
    assert _WebsocketsSocket(conn, ConnectionError, close_timeout=1).try_send("a")
    assert conn.written == [b"a"]
    setattr(conn, in_progress, object())  # a fragmented message is going out: wait
    assert not _WebsocketsSocket(conn, ConnectionError, close_timeout=1).try_send("b")
    # A write that fails closes the connection, as send() would: never False,
    # which would have the frame sent again.
    failing = _Connection(fails=True, in_progress=in_progress)
    ws = _WebsocketsSocket(failing, ConnectionError, close_timeout=1)
    with pytest.raises(TransportClosed) as info:
        ws.try_send("c")
    assert info.value.code == 1006 and failing.aborted
    assert not ws.try_send("d")


async def test_abort_ends_a_ping_waiting_in_another_task(transport: WebSocketTransport) -> None:
    async with (
        Peer(silent=True).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        await peer.accepted.wait()
        outcome: list[BaseException] = []

        async def pinger(*, task_status: Any) -> None:
            task_status.started()
            try:
                await ws.ping()
            except TransportClosed as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            await tg.start(pinger)
            await ws.abort()
        assert len(outcome) == 1


async def test_closing_on_a_silent_peer_is_bounded_by_close_timeout(
    transport: WebSocketTransport,
) -> None:
    async with Peer(silent=True).serve() as peer:
        async with transport.connect(peer.url, open_timeout=5) as ws:
            await peer.accepted.wait()
            start = anyio.current_time()
        # close_timeout is 0.3 s; the library's own default would be 10 s on asyncio
        assert anyio.current_time() - start < 1.5
        assert ws.closed
        peer.release.set()
        await peer.gone.wait()
    gc.collect()


@pytest.mark.parametrize("how", ["aclose", "abort"])
async def test_closing_with_more_than_max_queue_messages_unread_is_bounded(
    transport: WebSocketTransport, how: str
) -> None:
    # The messages come with the handshake's answer: the socket has them queued,
    # beyond max_queue (it stopped reading), before the block starts. The Trio
    # readers of websockets (on any close) and trio-websocket (on abort) then
    # waited for the queue to drain, not for the stream: the block never ended.
    await close_with_more_than_max_queue_unread(transport, how)
    # close_timeout is 0.3 s: the peer's close frame is behind the unread ones


async def close_with_more_than_max_queue_unread(transport: WebSocketTransport, how: str) -> None:
    """Leave a connection with 100 messages sent and max_queue 4, within 1.5 s."""
    transport.max_queue = 4
    async with Peer(silent=False, flood=100).serve() as peer:
        with anyio.fail_after(5):
            async with transport.connect(peer.url, open_timeout=5) as ws:
                assert await ws.recv() in ("m0", b"m0")
                start = anyio.current_time()
                if how == "abort":
                    await ws.abort()
            assert anyio.current_time() - start < 1.5
            assert ws.closed
            await peer.gone.wait()
    gc.collect()


def waiting(ws: Any) -> int:
    """Messages the socket's library holds for recv() now (httpx-ws holds at most one).

    Read from the library's own objects, whether or not `recv` takes from them.
    """
    from market_client._transports._httpx_ws import _HttpxWsSocket
    from market_client._transports._trio_websocket import _TrioWebsocketSocket
    from market_client._transports._websockets import _WebsocketsSocket

    if isinstance(ws, _WebsocketsSocket):
        if ws._trio:
            return int(ws._ws.recv_messages.recv_frames.statistics().current_buffer_used)
        return len(ws._ws.recv_messages.frames)
    if isinstance(ws, _TrioWebsocketSocket):
        return int(ws._ws._recv_channel.statistics().current_buffer_used)
    if isinstance(ws, _HttpxWsSocket):
        stats = ws._ws._receive_event.statistics()
        return int(stats.current_buffer_used + stats.tasks_waiting_send)
    return len(ws._listener.messages)  # picows


async def wait_until_waiting(ws: Any, count: int) -> None:
    """Until the library's own reader has queued ``count`` messages (there is no event to await)."""
    with anyio.fail_after(5):
        while waiting(ws) < count:
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def holding_messages(transport: WebSocketTransport) -> AsyncIterator[tuple[Any, int]]:
    """A socket that returned "m0", its library holding what it will of 99 more: (it, how many)."""
    async with (
        Peer(silent=False, flood=100).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        assert await ws.recv() in ("m0", b"m0")
        await wait_until_waiting(ws, 1 if isinstance(transport, HttpxWsTransport) else 60)
        yield ws, waiting(ws)


async def without_a_turn(receive: Callable[[], Awaitable[list[str | bytes]]]) -> list[str | bytes]:
    """What ``receive()`` returns, checking that no other task ran meanwhile."""
    ran: list[int] = []

    async def mark() -> None:
        ran.append(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(mark)
        got = await receive()
        assert ran == [], "taking waiting messages let another task run"
    return got


def _text(messages: list[str | bytes]) -> list[str]:
    return [m if isinstance(m, str) else m.decode() for m in messages]


async def test_recv_returns_waiting_messages_without_a_checkpoint(
    transport: WebSocketTransport,
) -> None:
    # What the MD reader's fairness checkpoints, one every 16 frames, are
    # for: on every transport recv() hands over a waiting message at once
    # (a Trio memory channel's receive() would cost a scheduling round per
    # message, half a Trio session's time under a flood), whole and in order.
    async with holding_messages(transport) as (ws, held):
        assert not ws.recv_yields

        async def take() -> list[str | bytes]:
            return [await ws.recv() for _ in range(held)]

        got = await without_a_turn(take)
    assert _text(got) == [f"m{i}" for i in range(1, held + 1)]


async def test_recv_many_takes_every_waiting_message_at_once_in_order(
    transport: WebSocketTransport,
) -> None:
    # The MD reader reads through recv_many(), and hands a recorder what it
    # returns with one receive time: every message waiting, whole and in
    # order, without a checkpoint. picows and websockets' Trio client hand
    # them all over at once; the others one a call (the default).
    from market_client._transports._websockets import _WebsocketsSocket

    async with holding_messages(transport) as (ws, held):
        got = await without_a_turn(ws.recv_many)
        picows = type(ws).__name__ == "PicowsWebSocket"  # (picows may not be installed)
        drains = picows or (isinstance(ws, _WebsocketsSocket) and ws._trio)
        assert len(got) == (held if drains else 1)
        while len(got) < 99:
            got += await ws.recv_many()
    assert _text(got) == [f"m{i}" for i in range(1, 100)]


async def test_recv_many_reads_a_flood_past_max_queue_whole(
    transport: WebSocketTransport,
) -> None:
    # Taking every waiting message at once must resume a socket the library
    # paused above max_queue (else the connection hangs).
    transport.max_queue = 4
    got: list[str | bytes] = []
    async with (
        Peer(silent=False, flood=30_000).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        while len(got) < 30_000:
            got += await ws.recv_many()
    assert _text(got) == [f"m{i}" for i in range(30_000)]


async def test_a_fragmented_message_among_waiting_ones_comes_whole_and_in_order(
    transport: WebSocketTransport,
) -> None:
    frames = (
        b"\x81\x02m1"  # text "m1", one frame
        + b"\x01\x03fra"  # text "fragment", in three frames
        + b"\x00\x03gme"
        + b"\x80\x02nt"
        + b"\x81\x02m2"
    )
    async with (
        Peer(silent=False, flood=1, then=frames).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        got = [await ws.recv() for _ in range(4)]
    assert [m if isinstance(m, str) else m.decode() for m in got] == ["m0", "m1", "fragment", "m2"]


async def test_a_waiting_text_message_that_is_not_utf8_closes_the_link_with_1007(
    transport: WebSocketTransport,
) -> None:
    # The one check the library makes in the recv() that `recv` takes a waiting
    # message without (websockets' Trio client): the link still fails as it would.
    if not isinstance(transport, WebsocketsTransport):
        pytest.skip("only websockets' recv() is taken over; the others return what it did")
    async with Peer(silent=False, flood=1, then=b"\x81\x02\xff\xfe").serve() as peer:
        async with transport.connect(peer.url, open_timeout=5) as ws:
            assert await ws.recv() == "m0"
            with pytest.raises(TransportClosed) as caught:
                await ws.recv()
            assert caught.value.code == 1007
        await peer.gone.wait()
    assert peer.close_code == 1007


async def test_a_flood_past_max_queue_is_read_whole_as_reading_resumes(
    transport: WebSocketTransport,
) -> None:
    # The library stops reading the socket above max_queue waiting messages and
    # resumes once fewer wait: a `recv` that takes them from its queue must
    # resume it as the library's recv() does (else the connection hangs).
    transport.max_queue = 4
    async with (
        Peer(silent=False, flood=30_000).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        got = [await ws.recv() for _ in range(30_000)]
    assert [m if isinstance(m, str) else m.decode() for m in got] == [
        f"m{i}" for i in range(30_000)
    ]


async def test_a_close_waiting_behind_a_message_ends_recv_with_its_code(
    transport: WebSocketTransport,
) -> None:
    # httpx-ws queues the peer's close as an event beside the messages: taken
    # from its queue, it is the same TransportClosed its receive() gives.
    close = b"\x88\x05" + (4001).to_bytes(2, "big") + b"bye"
    async with (
        Peer(silent=False, flood=1, then=close).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        assert await ws.recv() in ("m0", b"m0")
        if isinstance(transport, HttpxWsTransport):
            await wait_until_waiting(ws, 1)  # the close, waiting to be taken
        with pytest.raises(TransportClosed) as caught:
            await ws.recv()
        assert (caught.value.code, caught.value.reason) == (4001, "bye")


async def test_recv_yields_every_time_where_the_library_is_not_laid_out_as_expected(
    transport: WebSocketTransport, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another release of a library whose queue `recv` takes from directly:
    # recv() is the library's own, a checkpoint every time, and the socket says
    # so (the MD reader then skips its own checkpoints). trio-websocket queues
    # one message per turn of its reader, so the test first waits until it
    # holds them; httpx-ws holds at most one: there the claim rests on AnyIO's
    # receive(), a checkpoint before it looks.
    from market_client._transports import _httpx_ws, _trio_websocket, _websockets

    if isinstance(transport, PicowsTransport) or (
        isinstance(transport, WebsocketsTransport) and anyio_backend == "asyncio"
    ):
        pytest.skip("its library's recv() returns a waiting message at once itself")
    monkeypatch.setattr(_websockets, "_waiting_frames", lambda ws: None)
    monkeypatch.setattr(_trio_websocket, "_waiting_messages", lambda ws: None)
    monkeypatch.setattr(_httpx_ws, "_waiting_events", lambda ws: None)
    async with (
        Peer(silent=False, flood=100).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        assert await ws.recv() in ("m0", b"m0")
        assert ws.recv_yields
        if isinstance(transport, TrioWebsocketTransport):
            await wait_until_waiting(ws, 60)
        ran: list[int] = []

        async def mark(i: int) -> None:
            ran.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(1, 60):
                tg.start_soon(mark, i)
                assert await ws.recv() in (f"m{i}", f"m{i}".encode())
                # The task started before the previous recv() has run by now
                # (Trio may run it one scheduling batch after that recv()).
                assert i == 1 or i - 1 in ran, (i, ran)


async def test_a_trio_reader_that_never_wakes_still_ends_within_close_timeout(
    transport: WebSocketTransport, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As before the fix in _drop (or with a library version whose internals it
    # no longer finds): the library's reader stays asleep on its full queue.
    # The nursery of open() then cancels it close_timeout after the close.
    if anyio_backend != "trio" or isinstance(transport, HttpxWsTransport):
        pytest.skip("only the Trio libraries run their own reader task in open()'s nursery")
    import trio

    if isinstance(transport, WebsocketsTransport):
        from market_client._transports._websockets import _WebsocketsSocket

        async def library_drop_only(self: Any) -> None:
            await trio.aclose_forcefully(self._ws.stream)

        monkeypatch.setattr(_WebsocketsSocket, "_drop", library_drop_only)
    elif isinstance(transport, TrioWebsocketTransport):
        from market_client._transports._trio_websocket import _TrioWebsocketSocket

        async def library_drop_only(self: Any) -> None:
            await trio.aclose_forcefully(self._stream)

        monkeypatch.setattr(_TrioWebsocketSocket, "_drop", library_drop_only)
    else:
        pytest.fail(f"a new Trio transport: say how its reader is left asleep ({transport!r})")
    # the abort at once, then close_timeout (0.3 s) for the reader
    await close_with_more_than_max_queue_unread(transport, "abort")


@pytest.mark.parametrize("code", [1000, 1001])
async def test_a_healthy_link_pings_and_closes_politely_with_its_code(
    transport: WebSocketTransport, code: int
) -> None:
    async with Peer(silent=False).serve() as peer:
        async with transport.connect(peer.url, open_timeout=5) as ws:
            await ws.send("hello")
            assert await ws.recv() in ("hello", b"hello")
            for _ in range(3):
                await ws.ping()
            if code != 1000:
                await ws.aclose(code)
        await peer.gone.wait()
        assert peer.close_code == code


async def test_a_transport_object_and_a_name_open_the_same_library(
    anyio_backend: str, sim: RunningSimulator
) -> None:
    for chosen in transports(anyio_backend):
        if isinstance(chosen, WebsocketsTransport) and anyio_backend == "trio":
            pytest.importorskip("websockets.trio.client")
        async with MarketClient.session(
            sim.url,
            symbols=["ABC"],
            transport=chosen,  # type: ignore[arg-type,unused-ignore]  # typed as a name in _client
        ) as client:
            assert (await client.get_book("ABC"))["sym"] == "ABC"
            assert client.best_bid_ask("ABC")["bid"] is not None
        assert type(resolve_transport(chosen.name)) is type(chosen)


async def test_a_transport_on_the_wrong_backend_is_refused(anyio_backend: str) -> None:
    for name, only in ONLY_ON.items():
        if only != anyio_backend:
            with pytest.raises(ValueError, match="runs only under"):
                async with connect_websocket("ws://127.0.0.1:1/", transport=name):
                    pass


def test_bad_transports_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown transport"):
        resolve_transport("carrier-pigeon")
    with pytest.raises(TypeError, match="WebSocketTransport"):
        resolve_transport(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_queue"):
        WebsocketsTransport(max_queue=0)


def test_redact_removes_token_values_and_nothing_else() -> None:
    assert redact("> GET /ws/cmd?token=abc-123&symbols=ABC HTTP/1.1") == (
        "> GET /ws/cmd?token=***&symbols=ABC HTTP/1.1"
    )
    assert redact("b'/ws/md?token=abc'") == "b'/ws/md?token=***'"
    assert redact('{"token": "abc"}') == '{"token": "***"}'
    assert redact("X-Auth-Token: abc") == "X-Auth-Token: ***"
    assert redact("token refused") == "token refused"
    assert redact(redact("token=abc")) == "token=***"


def test_the_filter_rewrites_message_arguments_and_exception_text() -> None:
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "> GET %s", ("/?token=s3",), None)
    try:
        raise OSError("cannot open ws://h/?token=s3")
    except OSError:
        import sys

        record.exc_info = sys.exc_info()
    assert TokenFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "s3" not in text
    assert "token=***" in text


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_the_token_is_in_no_log_record_at_any_level(
    anyio_backend: str,
    name: TransportName,
    sim: RunningSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    skip_unless_runs_on(anyio_backend, name)
    if name == "websockets" and anyio_backend == "trio":
        pytest.importorskip("websockets.trio.client")
    caplog.set_level(1)
    token = await new_token(sim.url)
    async with MarketClient.session(sim.url, token=token, symbols=["ABC"], transport=name) as c:
        assert (await c.get_book("ABC"))["sym"] == "ABC"
        await c.place_order("ABC", "buy", "9.00", 1)
    # a refused token (the gateway accepts the upgrade, then closes with 4401)
    refused = "refused" + token[::-1]
    with pytest.raises(TransportClosed) as info:
        async with connect_websocket(
            f"ws{sim.url[4:]}/ws/cmd?token={refused}", transport=name
        ) as ws:
            assert refused not in repr(ws)
            await ws.recv()
    assert info.value.code == 4401
    # an open that fails: its message names the URL without the token
    with pytest.raises(TransportOpenError) as failed:
        async with connect_websocket(
            f"ws://127.0.0.1:{free_port()}/ws/md?token={refused}", transport=name
        ):
            pass
    assert refused not in str(failed.value)
    formatter = logging.Formatter()
    loggers = {r.name for r in caplog.records}
    assert any(n.startswith(("websockets", "trio-websocket", "httpx", "picows")) for n in loggers)
    for record in caplog.records:
        for secret in (token, refused):
            assert secret not in formatter.format(record), record.name
            assert secret not in repr(record.args), record.name
