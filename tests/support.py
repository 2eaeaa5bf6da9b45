"""Test helpers: compare local state with the gateway's; run the simulator as a process."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from market_client import BookSnapshot, Event, MarketClient, ReconnectPolicy
from market_client._transports import ONLY_ON, TransportName
from market_client.testing import wait_until

# Reconnect quickly in tests, and give up within a test's time.
FAST = ReconnectPolicy(initial=0.05, maximum=0.5, deadline=20)


def skip_unless_runs_on(backend: str, transport: TransportName | None) -> None:
    """Skip a transport-parametrised test on a backend the transport does not run on."""
    only = ONLY_ON.get(transport) if transport is not None else None
    if only is not None and only != backend:
        pytest.skip(f"{transport} does not run on {backend}")


async def anext_kind(events: Any, kind: str) -> Event:
    """The next event of ``kind`` from an ``events()`` stream (10 s at most)."""
    with anyio.fail_after(10):
        async for evt in events:
            if evt.kind == kind:
                return evt
    raise AssertionError("the event stream ended")


class BookProbe:
    """Catches the local book at an exact ``seq``, even while the market moves.

    Pass :meth:`hook` as ``on_md_event``: sync hooks run in the MD reader
    right after a message is applied, so the copy is the book at that seq.
    """

    def __init__(self) -> None:
        self.client: MarketClient | None = None
        self.sym = ""
        self.target = -1
        self.caught: BookSnapshot | None = None
        self.done: anyio.Event | None = None

    def hook(self, msg: dict[str, Any]) -> None:
        if self.client is None or msg.get("sym") != self.sym or self.done is None:
            return
        snap = self.client.book_snapshot(self.sym, depth=1000)
        if snap["seq"] == self.target:
            self.caught = snap
            self.done.set()

    async def assert_matches(self, client: MarketClient, sym: str, tries: int = 50) -> int:
        """Assert that the local book equals ``book.get`` at the same ``seq``; returns it.

        Retries when the local book had already moved past the reply's seq.
        """
        for _ in range(tries):
            self.client, self.sym, self.caught = client, sym, None
            self.done = anyio.Event()
            truth = await client.get_book(sym, depth=1000)
            self.target = truth["seq"]
            local = client.book_snapshot(sym, depth=1000)
            if local["seq"] == truth["seq"]:
                self.caught = local
            elif local["seq"] < truth["seq"]:
                with anyio.fail_after(5):
                    await self.done.wait()
            self.done = None
            if self.caught is None:
                continue  # the local book was already newer: ask again
            assert self.caught["bids"] == [(Decimal(p), q) for p, q in truth["bids"]]
            assert self.caught["asks"] == [(Decimal(p), q) for p, q in truth["asks"]]
            return truth["seq"]
        raise AssertionError(f"never caught the local {sym} book at the gateway's seq")


async def assert_candles_match(client: MarketClient, sym: str, interval: int, depth: int) -> None:
    """Assert the client's candles equal ``candles.get`` (call once the market is quiet)."""
    truth = await client.get_book(sym)
    await caught_up(client, sym, truth["seq"])
    reply = await client.send("candles.get", {"sym": sym, "interval_ms": interval, "limit": depth})
    expected = [
        {
            "t_ns": c["t_ns"],
            "o": Decimal(c["o"]),
            "h": Decimal(c["h"]),
            "l": Decimal(c["l"]),
            "c": Decimal(c["c"]),
            "v": c["v"],
            "n": c["n"],
        }
        for c in reply["candles"]
    ]
    assert client.get_candles(sym, interval) == expected


async def caught_up(client: MarketClient, sym: str, seq: int) -> None:
    """Wait until the local book of ``sym`` has applied market data up to ``seq``."""
    await wait_until(lambda: client.book_snapshot(sym)["seq"] >= seq, timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimProcess:
    """The simulator in its own process, to kill and start again on the same port."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.process: Process | None = None
        self.starts = 0

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = await anyio.open_process(
            [sys.executable, "-m", "market_client.simulator", "--port", str(self.port), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.starts += 1
        # It prints "serving on URL" once its socket listens: wait for that line.
        assert self.process.stdout is not None
        lines = BufferedByteReceiveStream(self.process.stdout)
        try:
            with anyio.fail_after(20):
                while b"serving on" not in await lines.receive_until(b"\n", 4096):
                    pass
        except (anyio.EndOfStream, anyio.IncompleteRead):
            code = await self.process.wait()
            raise RuntimeError(f"the simulator exited with {code}") from None

    async def kill(self) -> None:
        if self.process is not None:
            with anyio.CancelScope(shield=True):
                if self.process.returncode is None:
                    self.process.kill()
                await self.process.wait()
                await self.process.aclose()
            self.process = None

    async def __aenter__(self) -> SimProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.kill()


@contextlib.contextmanager
def gateway_process(*args: str) -> Iterator[str]:
    """The simulator in a process of its own (for code that runs its own event loop).

    Yields its URL, read from the line it prints once it serves.
    """
    with subprocess.Popen(
        [sys.executable, "-m", "market_client.simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            match = re.search(r"(http://\S+)", proc.stdout.readline())
            assert match, "the simulator printed no URL"
            yield match.group(1)
        finally:
            proc.terminate()
            proc.wait(10)
