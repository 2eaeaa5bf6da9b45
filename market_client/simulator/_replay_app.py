"""The replay gateway: the unchanged ASGI gateway, its market driven by a recording.

`ReplayGateway` is a `Gateway` whose exchange is a `ReplayExchange` and whose
background flow is off; its lifespan runs `ReplayGateway.run_replay`, which
applies the recorded frames in receive order and sends each one, byte for
byte, to the symbol's subscribers. ``speed`` scales the recorded gaps
(``math.inf``: no waiting); every send waits for room in each subscriber's
queue, so the replay goes as fast as the slowest subscriber reads and nobody
is cut off with 1013. The replay starts when the first MD subscriber
connects, so that a client sees it from its first frame.

What goes on the wire is always the recorded frame's own text (a bytes
frame's UTF-8 text): never encoded again, whatever the speed. Each frame is
still decoded once (`ReplaySource`), because the exchange needs all of it:
the books that answer ``book.get``, a new subscriber's snapshot and the fill
model, the ``seq``, the candles, the halts; and the decision to send it
(a malformed frame, or one ``admin.md_gap`` drops, is not sent).

At ``--speed max`` (`ReplayGateway._run_unpaced`, when no backtest hooks are
set) the frames go through in blocks, the cost of a frame being its decode,
its apply and a share of one write:

- `ReplaySource.blocks` reads the raw layer a decompressed chunk at a time,
  decodes the chunk's lines as one JSON array and each frame once, and hands
  over blocks of up to `BLOCK_FRAMES` frames (short, so that their decoded
  messages die young and the garbage collector has little to do);
- a block is applied in one synchronous run; each frame that is to be sent
  becomes one `SharedFrame` (framed once, for every subscriber), added to the
  share of each subscriber of its symbol at that moment;
- each share goes to its subscriber's queue in one `Outbox.offer_many`; a
  full queue waits (`Outbox.put_many`), subscriber after subscriber, as a
  single frame did; the writers get a turn every `BATCH_FRAMES` frames, and
  each hands Hypercorn up to that many ready frames as one write.

No await runs between a frame's apply and its routing: a subscriber that
connects while the replay waits gets a snapshot that includes everything
applied so far and the increments after it. Private events (fills of the
user's resting orders) are pushed while the block is applied, so at full
speed they can reach the CMD socket before the MD frames of the block that
caused them reach the MD socket (two sockets: there was never an order
between them). At paced speeds, and in backtests (``settle``, ``on_frame``,
``advance``), `_run_paced` sends a frame at a time at its recorded time, as
before.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import sniffio
from starlette.applications import Starlette
from starlette.websockets import WebSocket

from ._accounts import User
from ._app import HEARTBEAT_S, Gateway
from ._exchange import Json, Limits
from ._flow import Flow
from ._outbox import BATCH_FRAMES, Outbox, SharedFrame
from ._replay import ReplayExchange, ReplayFrame, ReplaySource

__all__ = ["ReplayClock", "ReplayGateway", "ReplayProgress"]


def _loop_clock() -> tuple[Callable[[], float], Callable[[float], Awaitable[None]]]:
    """The running loop's own ``current_time`` and ``sleep``.

    The same clock and the same cancellation as anyio's functions, without
    their dispatch to the backend on every call (twice per step of a replay).
    """
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time, trio.sleep
    return asyncio.get_running_loop().time, asyncio.sleep


class ReplayClock:
    """The exchange's time during a replay: recorded time, moving at ``speed`` between frames."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.anchor_ns = 0
        self.anchor_t: float | None = None

    def anchor(self, recv_ns: int, t: float | None) -> None:
        """The replay reached the frame received at ``recv_ns``, at clock time ``t``."""
        self.anchor_ns = recv_ns
        self.anchor_t = t

    def now_ns(self) -> int:
        """Recorded nanoseconds now: the last frame's time plus the time since, scaled."""
        if self.anchor_t is None or math.isinf(self.speed):
            return self.anchor_ns
        elapsed = anyio.current_time() - self.anchor_t
        return self.anchor_ns + max(0, int(elapsed * self.speed * 1e9))


class ReplayProgress:
    """How far a replay got: frames sent, recorded time covered, wall time spent."""

    def __init__(self) -> None:
        self.frames = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.started = time.perf_counter()

    @property
    def recorded_seconds(self) -> float:
        """Recorded time covered so far, in seconds."""
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / 1e9

    @property
    def wall_seconds(self) -> float:
        """Wall time since the replay started."""
        return time.perf_counter() - self.started

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready values."""
        wall = self.wall_seconds
        return {
            "frames": self.frames,
            "recorded_seconds": round(self.recorded_seconds, 6),
            "wall_seconds": round(wall, 6),
            "frames_per_second": round(self.frames / wall, 1) if wall > 0 else 0.0,
        }


class ReplayGateway(Gateway):
    """The gateway serving a recording (see the module docstring).

    Args:
        source: The recording's frames.
        speed: Recorded seconds per second of the gateway's clock (``math.inf``: no waiting).
        admin_token: Token that handshakes as the admin user.
        secret: Key that signs user tokens (random when None).
        rate_limit_hz: Per-user request limit (None: unlimited).
        queue_size: Outgoing messages buffered per socket.
        limits: The exchange's bounds.
        wait_for_subscriber: Start the replay when the first MD subscriber
            connects (else at once).
        settle: Awaited after every frame (a backtest waits there until the
            strategy has reacted); while it is set, private events are held
            and pushed after the frame's MD has been handled.
        on_frame: Called after every frame is applied (a backtest samples its equity there).
        advance: ``await advance(delay)`` in place of sleeping ``delay`` to the
            next step and then awaiting ``settle`` (a backtest's virtual clock
            does both in one wait, `advance_function`).
        resolution_ns: Step of recorded time (0: every frame is its own
            step). The frames of one step are applied and sent together, at
            the step's end; ``settle`` is awaited between steps.
    """

    def __init__(
        self,
        source: ReplaySource,
        *,
        speed: float = 1.0,
        admin_token: str | None = None,
        secret: bytes | None = None,
        rate_limit_hz: float | None = None,
        queue_size: int = 10_000,
        limits: Limits | None = None,
        wait_for_subscriber: bool = True,
        settle: Callable[[], Awaitable[None]] | None = None,
        on_frame: Callable[[ReplayFrame], None] | None = None,
        resolution_ns: int = 0,
        advance: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive (or inf), got {speed}")
        super().__init__(
            source.specs,
            admin_token=admin_token,
            secret=secret,
            flow_hz=0.0,
            rate_limit_hz=rate_limit_hz,
            queue_size=queue_size,
            limits=limits,
        )
        self.clock = ReplayClock(speed)
        # The base class built a live exchange with seeded books: replace it
        # (and the idle flow bound to it) with the recorded market.
        self.exchange = ReplayExchange(
            source.specs,
            self,
            secret=secret,
            admin_token=admin_token,
            rate_limit_hz=rate_limit_hz,
            clock_ns=self.clock.now_ns,
            limits=limits,
        )
        self.flow = Flow(self.exchange, 0.0, None)
        self.source = source
        self.speed = speed
        self.progress = ReplayProgress()
        self.subscribed = anyio.Event()
        self.done = anyio.Event()
        self.resolution_ns = resolution_ns
        self._wait = wait_for_subscriber
        self._settle = settle
        self._on_frame = on_frame
        self._advance = advance
        self._held: list[tuple[str, Json]] = []
        for frame in source.preroll():
            self.clock.anchor(frame.recv_ns, None)
            self.exchange.apply(frame.msg)

    @property
    def replay_exchange(self) -> ReplayExchange:
        """The exchange, typed as the replay's."""
        assert isinstance(self.exchange, ReplayExchange)
        return self.exchange

    # -- Sink: the flow stays off; events wait for the frame's MD in a backtest ---------
    def set_flow(self, rate_hz: float) -> None:
        """The recorded market is the flow: ``admin.flow`` changes nothing."""

    def event(self, user_id: str, frame: Json) -> None:
        """Push a private event (held until the frame's MD is handled, in a backtest)."""
        if self._settle is not None and self._driving:
            self._held.append((user_id, frame))
        else:
            super().event(user_id, frame)

    _driving = False

    async def send_md(self, sym: str, text: str) -> None:
        """Send one recorded frame to the symbol's subscribers, waiting for room in each queue."""
        rest = self._offer_md(sym, text)
        if rest is not None:
            await self._put_md(*rest)

    def _offer_md(self, sym: str, text: str) -> tuple[SharedFrame, tuple[Outbox, ...]] | None:
        """Queue one frame to the subscribers in turn while they have room, without awaiting.

        Returns None when every subscriber has it, else the frame and the
        subscribers from the first full queue on (for `_put_md`, in order).
        """
        conns = self._md[sym]
        if not conns:
            return None
        frame = SharedFrame(text)
        order = tuple(conns)
        for i, conn in enumerate(order):
            if not conn.offer(frame):  # queues at once when there is room
                self.stats.md_sent += i
                return frame, order[i:]
        self.stats.md_sent += len(order)
        return None

    async def _put_md(self, frame: SharedFrame, conns: tuple[Outbox, ...]) -> None:
        sent = 0
        for conn in conns:
            # put() waits for room (and is False for a closed socket), never cutting anyone off.
            if conn.offer(frame) or await conn.put(frame):
                sent += 1
        self.stats.md_sent += sent

    # -- the replay -----------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.heartbeats)
            tg.start_soon(self.run_replay)
            yield
            tg.cancel_scope.cancel()

    async def heartbeats(self) -> None:
        """Offer a heartbeat to every MD subscriber every ``HEARTBEAT_S``, until cancelled."""
        # A subscriber whose queue is full has data coming: it needs no heartbeat,
        # and pushing one would cut it off (1013) while the replay waits for it.
        while True:
            await anyio.sleep(HEARTBEAT_S)
            text = orjson.dumps(
                {"type": "md", "ch": "heartbeat", "ts_ns": self.exchange.now_ns()}
            ).decode()
            frame = SharedFrame(text)
            for conn in tuple(self._md_all):
                conn.offer(frame)

    async def _serve_md(self, ws: WebSocket, user: User) -> None:
        # Set before the base class subscribes, in the same synchronous step:
        # the replay task cannot run in between.
        self.subscribed.set()
        await super()._serve_md(ws, user)

    async def _end_step(self) -> None:
        """Let the step's MD be handled, then push the private events it caused."""
        settle = self._settle
        if settle is not None:
            await settle()
        if self._held:
            held, self._held = self._held, []
            for user_id, event in held:
                super().event(user_id, event)
            if settle is not None:
                await settle()

    async def run_replay(self) -> None:
        """Apply and send every frame of the source at its recorded pace; then set ``done``."""
        if self._wait:
            await self.subscribed.wait()
        if math.isinf(self.speed) and self._settle is None and self._on_frame is None:
            await self._run_unpaced()
        else:
            await self._run_paced()
        self.done.set()

    async def _run_unpaced(self) -> None:
        """``--speed max`` over sockets: apply, and hand each subscriber its frames in batches.

        No clock and no steps. A block of frames (`ReplaySource.blocks`) is
        applied in one synchronous run, each frame routed, as one
        `SharedFrame` (its recorded text, framed once), to the subscribers of
        its symbol at that moment; then each subscriber gets its share in
        one `Outbox.offer_many` (`Outbox.put_many` waits for room in a full
        queue, in subscriber order, as `_put_md` does per frame). No await
        runs between a frame's apply and its routing, so a subscriber that
        connects during a wait gets a snapshot that includes the block, and
        the block's increments only from the next one on.
        """
        exchange = self.replay_exchange
        apply = exchange.apply
        md = self._md
        clock = self.clock
        progress = self.progress
        stats = self.stats
        progress.started = time.perf_counter()
        frames = 0
        recv_ns = 0
        unchecked = 0  # frames queued since the writers last had a turn
        try:
            for block in self.source.blocks():
                if progress.first_ns is None:
                    progress.first_ns = block[0].recv_ns
                # Each subscriber's frames of this block, and per symbol where they go.
                batches: dict[Outbox, list[SharedFrame]] = {}
                routes: dict[str, tuple[Callable[[SharedFrame], None], ...]] = {}
                for sym, conns in md.items():
                    if conns:
                        routes[sym] = tuple(batches.setdefault(c, []).append for c in conns)
                for recv_ns, sym, text, msg in block:
                    clock.anchor_ns = recv_ns  # at max speed the clock is the last frame's time
                    if apply(msg) and (route := routes.get(sym)):
                        shared = SharedFrame(text)
                        for add in route:
                            add(shared)
                frames += len(block)
                progress.frames = frames
                progress.last_ns = recv_ns
                for conn, batch in batches.items():
                    if batch:
                        sent = conn.offer_many(batch)
                        if sent < len(batch):
                            # (Returns at once for a socket closed meanwhile.)
                            sent += await conn.put_many(batch[sent:])
                        stats.md_sent += sent
                # Counted whether or not a full queue made it wait: a closed
                # subscriber's put_many returns at once, and the loop must still
                # let its cleanup (and the writers) run.
                unchecked += len(block)
                if unchecked >= BATCH_FRAMES:
                    # Let the writers run: one write of up to BATCH_FRAMES frames each.
                    unchecked = 0
                    await anyio.lowlevel.checkpoint()
        finally:
            progress.frames = frames
            if frames:
                progress.last_ns = recv_ns

    async def _run_paced(self) -> None:
        exchange = self.replay_exchange
        clock = self.clock
        progress = self.progress
        progress.started = time.perf_counter()
        settle = self._settle
        on_frame = self._on_frame
        pace = not math.isinf(self.speed)
        speed = self.speed
        step = self.resolution_ns
        apply = exchange.apply
        current_time, sleep = _loop_clock()
        advance = self._advance
        offer_md = self._offer_md
        start_t = current_time()
        first_ns: int | None = None
        batch_end: int | None = None
        for frame in self.source:
            recv_ns = frame.recv_ns
            if first_ns is None:
                first_ns = progress.first_ns = recv_ns
            if batch_end is None or recv_ns > batch_end:
                # A new step of recorded time: what the last one caused runs first.
                if self._held:
                    await self._end_step()
                due = recv_ns if not step else -(-recv_ns // step) * step
                batch_end = due
                delay = start_t + (due - first_ns) / 1e9 / speed - current_time() if pace else 0.0
                if advance is not None:
                    await advance(delay)  # the sleep and the settle below, in one wait
                else:
                    if delay > 0:
                        await sleep(delay)
                    if settle is not None:
                        await settle()  # everything due before this step has run
                clock.anchor(due, current_time())
            self._driving = True
            try:
                send = apply(frame.msg)
            finally:
                self._driving = False
            if send and (rest := offer_md(frame.sym, frame.text)) is not None:
                await self._put_md(*rest)
            progress.frames += 1
            if not progress.frames % 256:
                await anyio.lowlevel.checkpoint()  # let the writers run between full queues
            progress.last_ns = recv_ns
            if on_frame is not None:
                on_frame(frame)
        await self._end_step()
