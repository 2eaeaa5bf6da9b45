"""Every transport against a peer we control: batches, limits, liveness, close, secrets.

The peer is a WebSocket server made of ``wsproto`` over an AnyIO listener, so
it runs on both backends. Silent, it completes the opening handshake and then
neither reads nor answers (a gateway stopped with SIGSTOP looks the same from
the client); otherwise it echoes, answers pings and records the close code.
Raw frames it is given go out as they are, in the same write as the
handshake's answer: a client reads them in one go.

Nothing here looks into a library's (or an adapter's) queues: what a socket
holds is known from what the peer wrote and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
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
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from market_client import MarketClient
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
    WebSocket,
    WebsocketsTransport,
    WebSocketTransport,
    connect_websocket,
    default_transport,
    redact,
    resolve_transport,
)
from market_client.simulator import RunningSimulator

from .rawws import new_token
from .support import free_port, skip_unless_runs_on

pytestmark = pytest.mark.anyio


class Peer:
    """A WebSocket server on 127.0.0.1 (one connection at a time, as a rule).

    Besides echoing, a text message ``burst:N`` makes it send ``N`` messages
    (``b0``...) in one write.
    """

    def __init__(
        self,
        *,
        silent: bool = False,
        flood: int = 0,
        then: bytes = b"",
        reject: int | None = None,
        ping_client: bool = False,
    ) -> None:
        self.silent = silent
        self.flood = flood  # messages sent with the handshake's answer, in the same write
        self.then = then  # raw frames sent after them, in the same write
        self.reject = reject  # refuse the upgrade with this HTTP status
        self.ping_client = ping_client  # ping the client; send "ponged" when its pong comes
        self.url = ""
        self.accepted = anyio.Event()  # the opening handshake is done
        self.release = anyio.Event()  # a silent peer reads again (to see the client go)
        self.gone = anyio.Event()  # the client's TCP connection ended
        self.close_code: int | None = None  # the code of the client's close frame
        self.connections = 0  # open now
        self.changed = anyio.Event()  # set (and replaced) when ``connections`` changes

    def _count(self, delta: int) -> None:
        self.connections += delta
        self.changed.set()
        self.changed = anyio.Event()

    async def no_connections(self) -> None:
        """Return once no connection is open (the client's went)."""
        while self.connections:
            await self.changed.wait()

    async def handle(self, stream: SocketStream) -> None:
        self._count(1)
        conn = WSConnection(ConnectionType.SERVER)
        text: list[str] = []  # a message so far (wsproto hands it over in parts)
        try:
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                conn.receive_data(data)
                for event in conn.events():
                    if isinstance(event, Request):
                        if self.reject is not None:
                            await stream.send(conn.send(RejectConnection(self.reject)))
                            return
                        flood = (conn.send(TextMessage(f"m{i}")) for i in range(self.flood))
                        accept = conn.send(AcceptConnection())
                        ping = conn.send(Ping(b"peer-ping")) if self.ping_client else b""
                        await stream.send(accept + b"".join(flood) + self.then + ping)
                        self.accepted.set()
                        if self.silent:
                            await self.release.wait()  # meanwhile nothing is read
                    elif isinstance(event, Ping):
                        await stream.send(conn.send(event.response()))
                    elif isinstance(event, Pong) and event.payload == b"peer-ping":
                        await stream.send(conn.send(TextMessage("ponged")))
                    elif isinstance(event, TextMessage):
                        text.append(event.data)
                        if not event.message_finished:
                            continue
                        message, text = "".join(text), []
                        if message.startswith("burst:"):
                            count = int(message[6:])
                            burst = b"".join(conn.send(TextMessage(f"b{i}")) for i in range(count))
                            await stream.send(burst)
                        else:
                            await stream.send(conn.send(TextMessage(message)))
                    elif isinstance(event, CloseConnection):
                        self.close_code = event.code
                        await stream.send(conn.send(event.response()))
                        return
        except anyio.BrokenResourceError:
            return  # the client dropped the connection while the peer wrote
        finally:
            self.gone.set()
            await stream.aclose()
            self._count(-1)

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
    chosen = resolve_transport(name)
    chosen.close_timeout = 0.3
    return chosen


def tasks() -> set[Any]:
    """The asyncio tasks alive now (Trio's cannot outlive their nursery)."""
    if sniffio.current_async_library() == "asyncio":
        return {t for t in asyncio.all_tasks() if not t.done()}
    return set()


def _text(messages: list[str | bytes]) -> list[str]:
    return [m if isinstance(m, str) else m.decode() for m in messages]


@contextlib.asynccontextmanager
async def reading(ws: WebSocket) -> AsyncIterator[list[str | bytes]]:
    """Read ``ws`` in a task of its own meanwhile (pongs come that way); what it read."""
    got: list[str | bytes] = []

    async def read() -> None:
        with contextlib.suppress(TransportClosed):
            while True:
                got.extend(await ws.recv_many())

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        yield got
        tg.cancel_scope.cancel()


def test_websockets_is_the_default_on_trio_and_picows_on_asyncio_where_installed() -> None:
    async def default() -> str:
        return default_transport()

    assert anyio.run(default, backend="trio") == "websockets"
    try:
        import picows  # noqa: F401
    except ImportError:
        expected = "websockets"
    else:
        expected = "picows"
    assert anyio.run(default, backend="asyncio") == expected


# -- liveness, abort, close ------------------------------------------------------


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
            with pytest.raises(TransportClosed):
                await ws.send("after")
            left = anyio.current_time()
        assert anyio.current_time() - left < 0.2  # leaving the block closes nothing twice
        peer.release.set()
        await peer.gone.wait()  # the peer sees the connection end
    gc.collect()  # a socket left to the collector would warn here (warnings are errors)
    assert tasks() <= before


async def test_a_send_blocked_by_a_peer_that_reads_nothing_obeys_its_deadline(
    transport: WebSocketTransport,
) -> None:
    # The buffers fill; the send waits for room until its cancel scope ends
    # it (or, where a frame begun is written whole, until the transport drops
    # a peer that takes none of it), and the socket still closes afterwards.
    async with Peer(silent=True).serve() as peer:
        async with transport.connect(peer.url, open_timeout=5) as ws:
            await peer.accepted.wait()
            chunk = "x" * (1 << 20)
            dropped = False
            with anyio.move_on_after(0.5) as scope:
                try:
                    for _ in range(1000):
                        await ws.send(chunk)
                except TransportClosed:
                    dropped = True
            assert scope.cancelled_caught or (dropped and transport.name == "websockets")
        assert ws.closed
        peer.release.set()
        await peer.gone.wait()


async def test_a_send_cancelled_before_its_frame_began_is_never_sent() -> None:
    # The sans-I/O core writes a frame whole or not at all: the big one, stuck
    # in its write while the peer reads nothing, is finished once it reads
    # again; the small one, cancelled while it waited for the write, is
    # withdrawn and never reaches the peer (a cancelled order is not placed).
    transport = WebsocketsTransport(close_timeout=30)
    big = "x" * (8 << 20)
    async with (
        Peer(silent=True).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        await peer.accepted.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.send, big)
            await anyio.wait_all_tasks_blocked()  # its write waits for the peer
            with anyio.CancelScope() as scope:
                scope.cancel()
                await ws.send("small")
            assert scope.cancelled_caught and not ws.closed
            peer.release.set()
        await ws.send("after")
        got = [await ws.recv() for _ in range(2)]
    assert [len(got[0]), got[1]] == [len(big), "after"]


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
        # close_timeout is 0.3 s; the library's own default would be 10 s on asyncio
        assert ws.closed
        peer.release.set()
        await peer.gone.wait()
    gc.collect()


@pytest.mark.parametrize("how", ["aclose", "abort"])
async def test_closing_with_more_than_max_queue_messages_unread_is_bounded(
    transport: WebSocketTransport, how: str
) -> None:
    # The messages come with the handshake's answer, beyond max_queue: a
    # library that reads in a task of its own has it waiting on its full
    # queue, not on the stream (trio-websocket's is then cancelled
    # close_timeout after the close). The peer's close frame is behind them.
    transport.max_queue = 4
    async with Peer(flood=100).serve() as peer:
        with anyio.fail_after(5):
            async with transport.connect(peer.url, open_timeout=5) as ws:
                assert await ws.recv() in ("m0", b"m0")
                if how == "abort":
                    await ws.abort()
            assert ws.closed
            await peer.gone.wait()
    gc.collect()


async def test_closing_while_another_task_reads_ends_both(transport: WebSocketTransport) -> None:
    # The reader is inside recv() when the socket is closed politely: the
    # closing handshake completes (the reader sees the end), within its bounds.
    async with Peer().serve() as peer:
        async with transport.connect(peer.url, open_timeout=5) as ws, reading(ws):
            await peer.accepted.wait()
            await anyio.sleep(0.05)  # the reader waits in recv()
            await ws.aclose(1001)
        await peer.gone.wait()
    assert peer.close_code == 1001


@pytest.mark.parametrize("code", [1000, 1001])
async def test_a_healthy_link_pings_and_closes_politely_with_its_code(
    transport: WebSocketTransport, code: int
) -> None:
    async with Peer().serve() as peer:
        async with transport.connect(peer.url, open_timeout=5) as ws:
            await ws.send("hello")
            assert await ws.recv() in ("hello", b"hello")
            async with reading(ws):  # a pinged socket is one being read
                for _ in range(3):
                    await ws.ping()
            if code != 1000:
                await ws.aclose(code)
        await peer.gone.wait()
        assert peer.close_code == code


async def test_pings_at_once_each_get_their_pong(transport: WebSocketTransport) -> None:
    async with (
        Peer().serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
        reading(ws),
        anyio.create_task_group() as tg,
    ):
        for _ in range(10):
            tg.start_soon(ws.ping)


async def test_a_ping_from_the_peer_is_answered_while_reading(
    transport: WebSocketTransport,
) -> None:
    # The pong the library queues while it reads goes out without a send of ours.
    async with (
        Peer(ping_client=True).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        assert await ws.recv() in ("ponged", b"ponged")


async def test_a_close_waiting_behind_a_message_ends_recv_with_its_code(
    transport: WebSocketTransport,
) -> None:
    close = b"\x88\x05" + (4001).to_bytes(2, "big") + b"bye"
    async with (
        Peer(flood=1, then=close).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        assert await ws.recv() in ("m0", b"m0")
        with pytest.raises(TransportClosed) as caught:
            await ws.recv()
        assert (caught.value.code, caught.value.reason) == (4001, "bye")
        with pytest.raises(TransportClosed):
            await ws.send("too late")


# -- reading: batches, fairness, limits ------------------------------------------


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


# Transports whose recv_many() hands over every message of one read at once
# (the others: one message a call, the default).
BATCHES = {"websockets", "picows"}


async def test_frames_written_in_one_go_come_back_from_one_recv_many(
    transport: WebSocketTransport,
) -> None:
    # The peer writes 500 messages in one write (its event loop runs the
    # client only after that write): one read of the client's gets them all.
    async with Peer().serve() as peer, transport.connect(peer.url, open_timeout=5) as ws:
        for _ in range(3):
            await ws.send("burst:500")
            got = await ws.recv_many()
            if transport.name in BATCHES:
                assert len(got) == 500
            while len(got) < 500:
                got += await ws.recv_many()
            assert _text(got) == [f"b{i}" for i in range(500)]


async def test_waiting_messages_are_returned_without_a_checkpoint(
    transport: WebSocketTransport,
) -> None:
    # What the MD reader's fairness checkpoints, one every 16 frames, are for:
    # where recv_yields is False, recv() hands over a message that is
    # already waiting at once, whole and in order. These came in the same
    # write as the handshake's answer.
    async with (
        Peer(flood=100).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        if ws.recv_yields:
            pytest.skip("its recv() is a checkpoint, and says so (tested below)")
        assert await ws.recv() in ("m0", b"m0")
        await anyio.sleep(0.1)  # whatever reads in the background has read them by now

        async def take() -> list[str | bytes]:
            return [await ws.recv() for _ in range(99)]

        got = await without_a_turn(take)
    assert _text(got) == [f"m{i}" for i in range(1, 100)]


async def test_recv_yields_every_time_where_it_says_so(transport: WebSocketTransport) -> None:
    # Where the library hands messages over through a memory channel, every
    # recv() is a checkpoint even with messages waiting, and the socket says
    # so (the MD reader then skips its own checkpoints).
    async with (
        Peer(flood=100).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        if not ws.recv_yields:
            pytest.skip("its recv() returns a waiting message at once (tested above)")
        assert await ws.recv() in ("m0", b"m0")
        await anyio.sleep(0.1)  # the library's reader has queued what it will
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


async def test_recv_many_reads_a_flood_past_max_queue_whole(
    transport: WebSocketTransport,
) -> None:
    transport.max_queue = 4
    got: list[str | bytes] = []
    async with (
        Peer(flood=30_000).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        while len(got) < 30_000:
            got += await ws.recv_many()
    assert _text(got) == [f"m{i}" for i in range(30_000)]


async def test_a_flood_past_max_queue_is_read_whole_by_recv(
    transport: WebSocketTransport,
) -> None:
    transport.max_queue = 4
    async with (
        Peer(flood=30_000).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        got = [await ws.recv() for _ in range(30_000)]
    assert _text(got) == [f"m{i}" for i in range(30_000)]


async def test_a_fragmented_message_among_others_comes_whole_and_in_order(
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
        Peer(flood=1, then=frames).serve() as peer,
        transport.connect(peer.url, open_timeout=5) as ws,
    ):
        got = [await ws.recv() for _ in range(4)]
    assert _text(got) == ["m0", "m1", "fragment", "m2"]


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(b"\x81\x7e\x00\xc8" + b"x" * 200, id="one-frame"),
        pytest.param(b"\x01\x3c" + b"x" * 60 + b"\x80\x3c" + b"x" * 60, id="small-frames"),
    ],
)
async def test_a_message_over_max_size_closes_with_1009(
    transport: WebSocketTransport, frames: bytes
) -> None:
    async with Peer(flood=1, then=frames).serve() as peer:
        async with transport.connect(peer.url, open_timeout=5, max_size=100) as ws:
            assert await ws.recv() in ("m0", b"m0")
            with pytest.raises(TransportClosed) as caught:
                await ws.recv()
            assert caught.value.code == 1009
        await peer.gone.wait()
    assert peer.close_code == 1009


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(b"\x81\x02\xff\xfe", id="one-frame"),
        # "\xc3" then "\x80" make "À" across two frames; then "\xa9" alone is not UTF-8.
        pytest.param(b"\x01\x01\xc3" + b"\x00\x01\x80" + b"\x80\x01\xa9", id="fragmented"),
    ],
)
async def test_text_that_is_not_utf8_closes_the_link_with_1007(
    transport: WebSocketTransport, frames: bytes
) -> None:
    if isinstance(transport, PicowsTransport):
        pytest.skip("picows hands text over as bytes, unchecked (orjson checks it)")
    async with Peer(flood=1, then=frames).serve() as peer:
        async with transport.connect(peer.url, open_timeout=5) as ws:
            assert await ws.recv() == "m0"
            with pytest.raises(TransportClosed) as caught:
                await ws.recv()
            assert caught.value.code == 1007
        await peer.gone.wait()
    if isinstance(transport, WebsocketsTransport):  # the others do not tell the peer why
        assert peer.close_code == 1007


# -- writing ---------------------------------------------------------------------


async def test_concurrent_senders_each_send_whole_frames(transport: WebSocketTransport) -> None:
    # 20 tasks send at once, big messages among small ones (a big one waits
    # for room in the socket while others want to write): each goes out whole
    # and the peer echoes every one. A second concurrent write on the stream
    # would raise (AnyIO refuses it) or interleave frames.
    sent = [f"{t}:{i}:" + "x" * (100_000 if i % 2 else 10) for t in range(20) for i in range(4)]
    async with Peer().serve() as peer, transport.connect(peer.url, open_timeout=5) as ws:
        async with reading(ws) as got:

            async def sender(t: int) -> None:
                for i in range(4):
                    await ws.send(sent[t * 4 + i])

            async with anyio.create_task_group() as tg:
                for t in range(20):
                    tg.start_soon(sender, t)
            with anyio.fail_after(10):
                while len(got) < len(sent):
                    await anyio.sleep(0.01)
        assert Counter(_text(got)) == Counter(sent)


# -- opening ---------------------------------------------------------------------


async def test_an_open_cancelled_half_way_leaves_no_connection_at_the_peer(
    transport: WebSocketTransport,
) -> None:
    async with Peer().serve() as peer:
        for step in range(40):  # cancelled at every stage of the TCP and WebSocket handshakes
            with anyio.move_on_after(step * 0.0001):
                async with transport.connect(peer.url, open_timeout=5):
                    await anyio.sleep_forever()
            with anyio.fail_after(2):
                await peer.no_connections()
    gc.collect()


async def test_a_refused_upgrade_says_its_status_and_not_the_token(
    transport: WebSocketTransport,
) -> None:
    async with Peer(reject=403).serve() as peer:
        with pytest.raises(TransportOpenError) as info:
            async with transport.connect(peer.url, open_timeout=5):
                pass
    assert info.value.status == 403
    assert "peer-secret" not in str(info.value)


async def test_a_bad_url_is_refused_without_showing_it(transport: WebSocketTransport) -> None:
    if not isinstance(transport, WebsocketsTransport):
        pytest.skip("the URL check of the sans-I/O core")
    with pytest.raises(TransportOpenError, match="not a valid URL") as info:
        async with transport.connect("ws://:99999/x?token=s3cret#frag", open_timeout=5):
            pass
    assert "s3cret" not in str(info.value)


async def test_a_transport_object_and_a_name_open_the_same_library(
    anyio_backend: str, sim: RunningSimulator
) -> None:
    for chosen in transports(anyio_backend):
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
