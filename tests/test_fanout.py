"""MD fan-out: one encoding shared by every subscriber, and the 1013 rule per socket.

Over real sockets against the in-process gateway; the bursts are made by
calling the exchange directly, so each one is queued for every subscriber in
one synchronous step.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import orjson
import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from market_client._transports import WebSocket, WebsocketsTransport, connect_websocket
from market_client.simulator import RunningSimulator, serve
from market_client.simulator._outbox import SharedFrame, frame_bytes

from .rawws import close_code, new_token, raw_md

pytestmark = pytest.mark.anyio

ORDER = {"sym": "ABC", "side": "buy", "price": "1.00", "qty": 1}


def burst(sim: RunningSimulator, pairs: int) -> None:
    """``2 * pairs`` book deltas of ABC, queued for every subscriber at once."""
    user = sim.exchange.new_user()
    for _ in range(pairs):
        placed, _ = sim.exchange.place(user, ORDER)
        sim.exchange.cancel(user, placed)


async def next_text(ws: WebSocket) -> str:
    """The next MD frame as sent, heartbeats skipped."""
    while True:
        raw = await ws.recv()  # text from websockets, bytes from picows
        text = raw.decode() if isinstance(raw, bytes) else raw
        if '"heartbeat"' not in text:
            return text


@contextlib.asynccontextmanager
async def subscribers(sim: RunningSimulator, count: int) -> AsyncIterator[list[WebSocket]]:
    """``count`` MD sockets on ABC, each past its snapshot."""
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(raw_md(sim.url, symbols="ABC")) for _ in range(count)
        ]
        for ws in sockets:
            assert orjson.loads(await next_text(ws))["ch"] == "book.snapshot"
        yield sockets


async def test_ten_subscribers_get_every_message_in_order_with_identical_bytes(
    anyio_backend: str,
) -> None:
    async with serve(flow_hz=0) as sim, subscribers(sim, 10) as sockets:
        # One more subscriber offers permessage-deflate: its frames cannot be
        # shared, so it takes the one-message-at-a-time ASGI path.
        token = await new_token(sim.url)
        if anyio_backend == "trio":
            pytest.importorskip("websockets.trio.client")  # Python 3.11+
        deflate = WebsocketsTransport(compression="deflate")
        url = f"ws{sim.url[4:]}/ws/md?token={token}&symbols=ABC"
        async with connect_websocket(url, transport=deflate) as compressed:
            assert orjson.loads(await next_text(compressed))["ch"] == "book.snapshot"
            first_seq = sim.exchange.symbols["ABC"].seq + 1
            burst(sim, 300)
            received: list[list[str]] = [[] for _ in range(11)]

            async def read(ws: WebSocket, into: list[str]) -> None:
                for _ in range(600):
                    into.append(await next_text(ws))

            async with anyio.create_task_group() as tg:
                for ws, into in zip([*sockets, compressed], received, strict=True):
                    tg.start_soon(read, ws, into)
        assert all(texts == received[0] for texts in received)
        seqs = [orjson.loads(text)["seq"] for text in received[0]]
        assert seqs == list(range(first_seq, first_seq + 600))
        assert {orjson.loads(text)["ch"] for text in received[0]} == {"book.delta"}
        assert sim.stats.md_sent == 600 * 11 and sim.stats.md_dropped_slow == 0


async def test_a_stalled_subscriber_is_cut_off_without_slowing_the_others(
    anyio_backend: str,
) -> None:
    async with (
        serve(flow_hz=0, queue_size=300, send_buffer=4096) as sim,
        subscribers(sim, 9) as fast,
        raw_md(sim.url, symbols="ABC") as stalled,
    ):
        seq = sim.exchange.symbols["ABC"].seq

        async def read_burst(ws: WebSocket, first: int) -> None:
            for expected in range(first, first + 40):
                assert orjson.loads(await next_text(ws))["seq"] == expected

        # Each burst of 40 is read in full by the nine before the next one: they
        # never lag by more, however slow the machine, while `stalled` never
        # reads. A fast reader held up by the stalled socket would hang here.
        while sim.stats.md_dropped_slow == 0:
            burst(sim, 20)
            async with anyio.create_task_group() as tg:
                for ws in fast:
                    tg.start_soon(read_burst, ws, seq + 1)
            seq += 40
        assert await close_code(stalled) == 1013
        burst(sim, 20)  # the nine go on undisturbed
        async with anyio.create_task_group() as tg:
            for ws in fast:
                tg.start_soon(read_burst, ws, seq + 1)


def test_shared_frame_is_what_wsproto_sends_for_the_text() -> None:
    for text in ["{}", "x" * 125, "é" * 200, '{"a": "' + "y" * 70_000 + '"}']:
        expected = Connection(ConnectionType.SERVER).send(TextMessage(data=text))
        assert frame_bytes(text) == expected
        frame = SharedFrame(text)
        assert frame.wire is frame.wire  # framed once, however many sockets send it
        assert frame.wire == expected
