"""The picows adapter against a plain ``websockets`` server: what the simulator never sends.

Fragmented messages, a message over ``max_size`` made of small frames, a
reader that falls behind, and a peer's own close code. asyncio only (picows).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from websockets.asyncio.server import ServerConnection, serve

from market_client._transports import PicowsTransport, TransportClosed
from market_client._transports._picows_socket import PicowsWebSocket

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@contextlib.asynccontextmanager
async def peer(
    handler: Callable[[ServerConnection], Awaitable[None]],
    *,
    max_size: int = 1 << 20,
    max_queue: int = 256,
) -> AsyncIterator[PicowsWebSocket]:
    """A websockets server running ``handler``, and a picows client connected to it."""
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with PicowsTransport(max_queue=max_queue).connect(
            f"ws://127.0.0.1:{port}/", open_timeout=5, max_size=max_size
        ) as ws:
            assert isinstance(ws, PicowsWebSocket)
            yield ws


async def test_fragmented_messages_are_joined() -> None:
    async def handler(conn: ServerConnection) -> None:
        await conn.send(["ab", "cd", "ef"])  # one text message in three frames
        await conn.send("gh")
        await conn.wait_closed()

    async with peer(handler) as ws:
        assert await ws.recv() == b"abcdef"
        assert await ws.recv() == b"gh"


async def test_a_message_over_max_size_in_small_frames_closes_with_1009() -> None:
    async def handler(conn: ServerConnection) -> None:
        await conn.send(["x" * 60, "x" * 60])  # each frame fits, the message does not
        await conn.wait_closed()

    async with peer(handler, max_size=100) as ws:
        with pytest.raises(TransportClosed) as info:
            await ws.recv()
        assert info.value.code == 1009


async def test_a_reader_that_falls_behind_pauses_the_socket_and_loses_nothing() -> None:
    # 8 MB in all: more than one read of the socket takes, so however late the
    # reader starts, the queue fills and the socket stops reading before the end.
    # (2,000 short messages, 12 kB, once all came in one read on a loaded machine.)
    def message(i: int) -> str:
        return f"{i}:".ljust(4000, "x")

    async def handler(conn: ServerConnection) -> None:
        for i in range(2000):
            await conn.send(message(i))
        await conn.wait_closed()

    async with peer(handler, max_queue=16) as ws:
        listener: Any = ws._listener
        with anyio.fail_after(5):
            while not listener.paused:  # the queue filled up: the socket stopped reading
                await anyio.sleep(0.01)
        assert len(listener.messages) < 2000
        got = [await ws.recv() for _ in range(2000)]
        assert got == [message(i).encode() for i in range(2000)]
        assert not listener.paused


async def test_the_peers_close_code_and_reason_are_reported() -> None:
    async def handler(conn: ServerConnection) -> None:
        await conn.close(4001, "bye")

    async with peer(handler) as ws:
        with pytest.raises(TransportClosed) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (4001, "bye")
        with pytest.raises(TransportClosed):
            await ws.send("too late")
