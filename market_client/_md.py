"""The MD link: market data in, books and candles kept right.

`MdChannel` owns the MD socket of a session, one connection at a time.
`MdChannel.connect` opens the socket and, in the connection's own task
group, runs the reader and every resync and candle re-seed it asks for;
when the reader ends (the link dropped or went silent) the task group ends
them all and the socket is closed by the block that opened it.

Liveness needs no polling: the reader's receive loop runs under a cancel
scope whose deadline the frames move ``heartbeat_timeout`` ahead (at most
once per hundredth of it), so a silent link is declared dead when the limit
passes, at most 1% early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import repeat
from typing import Any, Protocol
from urllib.parse import urlencode

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._events import (
    FAIR_EVERY,
    EventHub,
    Hook,
    HookRunner,
    loop_checkpoints,
    loop_clock,
    new_event,
)
from ._exceptions import (
    ConnectionLost,
    GatewayError,
    MarketClientError,
    RequestTimeout,
    SessionClosed,
    link_closed,
    open_error,
)
from ._state import MarketState
from ._transports import TransportClosed, TransportOpenError, WebSocket

__all__ = ["MdChannel"]

log = logging.getLogger("market_client")

RESYNC_DEPTH = 1000
RETRY_DELAY = 0.5  # between failed resync or re-seed attempts

_KINDS = {ch: "md." + ch for ch in ("book.delta", "trade", "book.snapshot", "status")}

Send = Callable[..., Awaitable[dict[str, Any]]]


class FrameSink(Protocol):
    """What the MD reader hands every frame to: a `Recorder` (``market_client.recording``)."""

    buffer: Any  # a `FrameBuffer`: the reader adds frames to it itself while it has room

    def feed(self, channel: str, raw: str | bytes, recv_ns: int) -> None:
        """Take one frame the reader could not append itself."""


def record_frames(
    recorders: Sequence[FrameSink], raws: Sequence[str | bytes], recv_ns: int
) -> None:
    """Hand MD frames received together to every recorder, with one receive time.

    `MdChannel._read` calls it for the frames it takes from the socket at
    once, up to its next turn (at most 16 under a flood): one call for them
    all. A recorder's buffer takes them all with three C-level steps while
    it has room for all of them (see `FrameBuffer`); else each goes to its
    ``feed``.
    """
    n = len(raws)
    size = sum(map(len, raws))
    for recorder in recorders:
        buf = recorder.buffer
        if len(buf.frames) + n <= buf.room and buf.size + size <= buf.limit:
            buf.times.extend(repeat(recv_ns, n))
            buf.frames.extend(raws)
            buf.size += size
        else:
            for raw in raws:
                recorder.feed("md", raw, recv_ns)


def record_frame(recorders: Sequence[FrameSink], raw: str | bytes, recv_ns: int) -> None:
    """Hand one MD frame to every recorder (`record_frames` of one frame)."""
    record_frames(recorders, (raw,), recv_ns)


class MdChannel:
    """The MD socket of a session and the state it drives.

    Args:
        market: The books and candles this channel keeps.
        ws_base: ``ws://host:port`` or ``wss://host:port``.
        token: Returns the session's token when a connection opens.
        connect_websocket: Opens a socket (an async context manager that closes it).
        send: Sends a CMD request (for ``book.get`` and ``candles.get``).
        give_up: Whether a failed resync or re-seed should stop retrying after an error.
        hub: Where ``md.*`` events are published.
        hooks: Runs the ``on_md_event`` hook.
        recorders: Given every frame as received.
        timeout: How long the snapshots of a new connection may take.
        heartbeat_timeout: Silence after which the link is dead, in seconds.
    """

    def __init__(
        self,
        market: MarketState,
        *,
        ws_base: str,
        token: Callable[[], str],
        connect_websocket: Callable[[str], Any],
        send: Send,
        give_up: Callable[[BaseException], bool],
        hub: EventHub,
        hooks: HookRunner,
        recorders: Sequence[FrameSink],
        timeout: float,
        heartbeat_timeout: float,
    ) -> None:
        self.market = market
        self._ws_base = ws_base
        self._token = token
        self._connect = connect_websocket
        self._send = send
        self._give_up = give_up
        self._hub = hub
        self._hooks = hooks
        self._recorders = recorders
        self.timeout = timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.symbols: list[str] | None = None
        # Called with (sym, seq, bids, asks, recv_ns, source) for every book
        # loaded from a book.get reply: what a recorder needs after a gap.
        self.snapshot_taps: list[Callable[..., None]] = []
        self.expected: set[str] = set()
        self.on_md_event: Hook | None = None
        self.messages = 0
        self._tg: TaskGroup | None = None

    async def connect(self, *, task_status: TaskStatus[None]) -> None:
        """One MD connection: ready once every symbol's snapshot came; returns only by raising."""
        query = {"token": self._token()}
        if self.symbols:
            query["symbols"] = ",".join(self.symbols)
        url = f"{self._ws_base}/ws/md?" + urlencode(query, safe=",")
        try:
            async with self._connect(url) as ws, anyio.create_task_group() as tg:
                ready = anyio.Event()
                self._tg = tg
                try:
                    tg.start_soon(self._read, ws, ready, set(self.expected))
                    with anyio.move_on_after(self.timeout) as scope:
                        await ready.wait()
                    if scope.cancelled_caught:
                        raise RequestTimeout("md.snapshot", self.timeout)
                    task_status.started()
                    await anyio.sleep_forever()
                finally:
                    self._tg = None
        except TransportOpenError as exc:
            raise open_error("MD", exc.status, str(exc), self._ws_base) from exc

    async def _read(self, ws: WebSocket, ready: anyio.Event, expected: set[str]) -> None:
        market = self.market
        on_frame = market.on_frame
        hub = self._hub
        hooks = self._hooks
        recorders = self._recorders
        time_ns = time.time_ns
        limit = self.heartbeat_timeout
        # Moving a cancel scope's deadline reschedules a timer (2 µs on asyncio):
        # it moves when the clock has advanced a hundredth of the limit, so a
        # silent link is declared dead at most 1% early, never late.
        step = limit / 100
        clock = loop_clock()
        checkpoint = loop_checkpoints()[0]
        # recv() returns a buffered frame without yielding, on every transport
        # here (`WebSocket.recv_yields`): a checkpoint every FAIR_EVERY frames
        # keeps a flood from starving every other task, and wakes an events()
        # consumer once per FAIR_EVERY frames rather than once per frame. Where
        # recv() always yields it would only cost (1 to 4 µs a message on Trio).
        fair = not ws.recv_yields
        if not expected:
            ready.set()
        count = self.messages
        pending: list[str | bytes] | None = None
        raws: list[str | bytes] = []
        i = n = 0  # the frames of ``raws`` taken through so far, of all
        while True:
            moved = clock()
            with anyio.CancelScope(deadline=moved + limit) as watchdog:
                while True:
                    if pending is None:
                        try:
                            raws = await ws.recv_many()
                        except TransportClosed as exc:
                            raise link_closed("MD", exc.code, exc.reason) from exc
                    else:
                        raws, pending = pending, None
                    n = len(raws)
                    i = 0
                    while i < n:
                        # The frames up to the next turn go together: to the
                        # recorders at once, then through the state one by one.
                        j = min(n, i + FAIR_EVERY - count % FAIR_EVERY) if fair else n
                        part = raws if i == 0 and j == n else raws[i:j]
                        i = j
                        now = clock()
                        if now - moved > step:
                            watchdog.deadline = now + limit
                            moved = now
                        if recorders:
                            record_frames(recorders, part, time_ns())
                        for raw in part:
                            count += 1
                            self.messages = count
                            msg = on_frame(raw)  # counts and logs what is malformed
                            if market._resync_queue:
                                self._start_resyncs()
                            if msg is None:
                                continue
                            ch = msg["ch"]
                            if ch == "heartbeat":
                                continue
                            if expected and ch == "book.snapshot":
                                expected.discard(msg["sym"])
                                if not expected:
                                    ready.set()
                            if hub._subs:
                                kind = _KINDS.get(ch) or "md." + ch
                                targets = hub.targets(kind)
                                if targets:
                                    hub.deliver(new_event(kind, msg, msg.get("sym")), targets)
                            if self.on_md_event is not None:
                                hooks.call(self.on_md_event, msg)
                        if fair and count % FAIR_EVERY == 0:
                            await checkpoint()
            # The deadline passed. If the event loop itself was blocked for that
            # long (a sync hook, a long collection), frames may be waiting that
            # the timer beat: those read already and not yet taken through
            # (it passed at a turn), or one short read tells a live link from
            # a dead one.
            if i < n:
                pending = raws[i:]
                continue
            with anyio.move_on_after(min(0.25, limit / 4)):
                try:
                    pending = await ws.recv_many()
                except TransportClosed as exc:
                    raise link_closed("MD", exc.code, exc.reason) from exc
            if pending is None:
                break
        await ws.abort()  # a dead peer would never answer a polite close
        raise ConnectionLost(f"no market data nor heartbeat for {limit:g} s: the link is dead")

    # -- resyncs and candles ---------------------------------------------------
    def _start_resyncs(self) -> None:
        tg = self._tg
        if tg is None:
            return
        for sym in self.market.take_resyncs():
            tg.start_soon(self._resync, sym)

    async def _resync(self, sym: str) -> None:
        """Fetch a snapshot of ``sym`` and re-seed its candles."""
        try:
            reply = await self._send("book.get", {"sym": sym, "depth": RESYNC_DEPTH})
            seq = reply.get("seq")
            if not isinstance(seq, int):
                raise GatewayError("bad_response", "book.get reply has no seq", "book.get")
            bids, asks = reply.get("bids", ()), reply.get("asks", ())
            if self.market.load_book(sym, bids, asks, seq):
                # The reply itself (not the book after the buffered increments):
                # a recorder replays those above its seq on its side.
                now_ns = time.time_ns()
                for tap in self.snapshot_taps:
                    tap(sym, seq, bids, asks, now_ns, "resync")
        except SessionClosed:
            return
        except MarketClientError as exc:
            if self._give_up(exc):
                return  # the session is ending; its supervisor reports why
            log.warning("resync of %s failed (%s); retrying", sym, exc)
            await anyio.sleep(RETRY_DELAY)
            self.market.resync_failed(sym)
            self._start_resyncs()
            return
        await self.reseed_candles(sym)
        if self.market.resync_wanted:
            self._start_resyncs()

    def reseed_all(self) -> None:
        """Re-seed every candle series (after the link came back), in this connection's tasks."""
        tg = self._tg
        if tg is None:
            return
        for sym, state in self.market.symbols.items():
            if state.series:
                tg.start_soon(self.reseed_candles, sym)

    async def reseed_candles(self, sym: str) -> None:
        """Seed every candle series of ``sym`` again, retrying while the session lives."""
        state = self.market.symbols.get(sym)
        for interval_ms in list(state.series if state is not None else ()):
            while True:
                try:
                    await self.seed_candles(sym, interval_ms)
                    break
                except SessionClosed:
                    return
                except MarketClientError as exc:
                    if self._give_up(exc):
                        return
                    log.warning("re-seeding %s candles failed (%s); retrying", sym, exc)
                    await anyio.sleep(RETRY_DELAY)

    async def seed_candles(self, sym: str, interval_ms: int) -> None:
        """Seed one series from ``candles.get`` (trades seen since are replayed into it)."""
        state = self.market.symbols.get(sym)
        series = state.series.get(interval_ms) if state is not None else None
        if series is None:
            return
        reply = await self._send(
            "candles.get", {"sym": sym, "interval_ms": interval_ms, "limit": series.depth}
        )
        self.market.seed_series(sym, interval_ms, reply)
