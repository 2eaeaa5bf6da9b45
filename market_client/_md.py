"""The MD link: market data in, books and candles kept right.

`MdChannel` owns the MD socket of a session, one connection at a time.
`MdChannel.connect` opens the socket and, in the connection's own task
group, runs the reader and every resync and candle re-seed it asks for;
when the reader ends (the link dropped or went silent) the task group ends
them all and the socket is closed by the block that opened it.

The reader reads like the protocol: take a batch (the frames of one socket
read), hand it to the recorders, take it through the state, publish it, give
the other tasks a turn. Liveness needs no polling: each wait for a batch is
a cancel scope of ``heartbeat_timeout``, so a silent link is declared dead
when the limit passes, and frames that wait behind a busy loop never count
against it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from ._events import FAIR_EVERY, EventHub, Hook, HookRunner, new_event
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
    """What the MD reader hands the frames it receives to, such as a `Recorder`.

    The client depends on this protocol only, never on the recording package.
    Neither method may block or raise.
    """

    def feed(self, channel: str, raw: str | bytes, recv_ns: int) -> None:
        """Take one frame (``channel`` ``"md"`` or ``"cmd"``) as received."""

    def feed_many(self, raws: Sequence[str | bytes], recv_ns: int) -> None:
        """Take MD frames received together, with one receive time."""


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
        """Take batches from the socket and through the state until the link fails."""
        # A transport whose recv_many() hands over waiting frames without a
        # checkpoint (`WebSocket.recv_yields` False) gets a turn from this
        # loop every FAIR_EVERY frames, so a flood cannot starve other tasks;
        # where receiving always yields, a turn here would only cost.
        fair = not ws.recv_yields
        if not expected:
            ready.set()
        turn_at = self.messages + FAIR_EVERY
        while True:
            raws = await self._take(ws)
            n = len(raws)
            i = 0
            while i < n:
                # The frames up to the next turn go through together.
                j = min(n, i + turn_at - self.messages) if fair else n
                part = raws if i == 0 and j == n else raws[i:j]
                i = j
                self._record(part)
                self._apply(part, ready, expected)
                if fair and self.messages >= turn_at:
                    turn_at = self.messages + FAIR_EVERY
                    await anyio.lowlevel.checkpoint()

    async def _take(self, ws: WebSocket) -> list[str | bytes]:
        """The next batch of frames (one socket read); raise `ConnectionLost` when the link is dead.

        The heartbeat limit is a cancel scope around the wait for data only:
        frames taken through late because the loop was busy never count
        against it. When it passes, one short read still tells a live link
        whose frames the timer beat (the loop was blocked elsewhere) from a
        dead one.
        """
        limit = self.heartbeat_timeout
        try:
            with anyio.move_on_after(limit):
                return await ws.recv_many()
            with anyio.move_on_after(min(0.25, limit / 4)):
                return await ws.recv_many()
        except TransportClosed as exc:
            raise link_closed("MD", exc.code, exc.reason) from exc
        await ws.abort()  # a dead peer would never answer a polite close
        raise ConnectionLost(f"no market data nor heartbeat for {limit:g} s: the link is dead")

    def _record(self, raws: Sequence[str | bytes]) -> None:
        """Hand frames received together to every recorder, with one receive time."""
        if self._recorders:
            recv_ns = time.time_ns()
            for recorder in self._recorders:
                recorder.feed_many(raws, recv_ns)

    def _apply(self, raws: Sequence[str | bytes], ready: anyio.Event, expected: set[str]) -> None:
        """Take frames through the state, then to subscribers and the hook."""
        market = self.market
        self.messages += len(raws)
        if self.on_md_event is None:
            self._publish(market.on_frames(raws), ready, expected)
        else:
            # A sync hook sees the state as of its own frame: one frame at a time.
            for raw in raws:
                msgs = market.on_frames((raw,))
                self._publish(msgs, ready, expected)
                for msg in msgs:
                    self._hooks.call(self.on_md_event, msg)
        # Once for the frames taken together: a resync task starts at the
        # reader's next turn either way.
        if market.resync_wanted:
            for restart in market.take_restarts():
                # Not market data to drop for a slow consumer: the book went stale.
                self._hub.publish(new_event("book.restarted", restart, restart["sym"]))
            self._start_resyncs()

    def _publish(self, msgs: list[dict[str, Any]], ready: anyio.Event, expected: set[str]) -> None:
        """Note the snapshots a new connection waits for; offer the messages to subscribers."""
        if expected:
            for msg in msgs:
                if msg["ch"] == "book.snapshot":
                    expected.discard(msg["sym"])
            if not expected:
                ready.set()
        hub = self._hub
        if hub.has_subscribers:
            for msg in msgs:
                ch = msg["ch"]
                kind = _KINDS.get(ch) or "md." + ch
                targets = hub.targets(kind)
                if targets:
                    hub.deliver(new_event(kind, msg, msg.get("sym")), targets)

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
