"""Virtual time for backtests, on both backends.

The replay, the client and the strategy run in one event loop whose clock
is virtual: when every task is waiting, the clock jumps to the next deadline
at once, so ``anyio.sleep``, timeouts and the replay's recorded gaps cost no
wall time.

- Trio: ``trio.testing.MockClock(autojump_threshold=0)``, and
  ``trio.testing.wait_all_tasks_blocked`` to wait until everything has run.
- asyncio: `VirtualClockLoop`, a selector event loop whose ``time()`` is
  virtual. asyncio calls its selector with a positive timeout only when no
  callback is ready; the selector then either wakes the tasks waiting in
  `wait_idle` or moves the clock forward by that timeout (the next timer is
  then due) and polls without blocking.

A replay moves from one step of recorded time to the next with
`advance_function`: it waits until everything is idle and, when no timer
comes due first, moves the clock itself, in one wait instead of a sleep and a
second wait (the same outcome; on Trio a quarter of the cost).

Both jump only when nothing can run, so the order in which things happen
depends on the program alone, never on the machine's speed. Work that
leaves the loop (threads, real sockets) would let the clock jump while it
runs: a backtest uses neither.

Two things have no public API, and are read from the loops' internals here
and nowhere else, each in one small function that raises `RuntimeError`
when the loop no longer has it (rather than slowing down or losing the
determinism without a word): asyncio's timer heap (`_next_timer`) and the
random generator of Trio's scheduler (`seed_trio_scheduler`). The tests call
both on this Python and Trio, and with the attribute taken away.
"""

from __future__ import annotations

import asyncio
import platform
import random
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

import sniffio

__all__ = ["VirtualClockLoop", "advance_function", "backend_options", "settle_function"]

TIE_MARGIN = 1e-6  # s: a timer this close to a step is left to the loop to order, as a sleep's
MAX_JUMP = 86_400.0  # asyncio's longest select timeout: a longer sleep jumps in parts


class _Selector(selectors.DefaultSelector):
    loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        if loop is not None and (timeout is None or timeout > 0):
            if loop._idle_waiters:
                waiters, loop._idle_waiters = loop._idle_waiters, []
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
                timeout = 0
            elif timeout is not None:
                loop._now += timeout
                timeout = 0
        return super().select(timeout)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a virtual clock that jumps whenever the loop is idle."""

    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0
        self._idle_waiters: list[asyncio.Future[None]] = []

    def time(self) -> float:
        """The virtual time, in seconds."""
        return self._now

    async def wait_idle(self) -> None:
        """Return once every other task is waiting (before the clock moves)."""
        fut: asyncio.Future[None] = self.create_future()
        self._idle_waiters.append(fut)
        await fut

    async def advance(self, delay: float) -> None:
        """``await asyncio.sleep(delay)`` then `wait_idle`, in one wait when no timer is due first.

        Once every other task is waiting, the clock is moved by ``delay`` at
        once if the next timer is later than that (so nothing else could run
        in between); otherwise, this sleeps and waits as those two calls do.
        The clock ends on the same value either way.
        """
        await self.wait_idle()
        if delay <= 0:
            return
        now = self._now
        when = now + delay  # as call_later computes it
        head = _next_timer(self)
        if delay < MAX_JUMP and (
            head is None or (not head.cancelled() and head.when() > when + TIE_MARGIN)
        ):
            self._now = now + (when - now)  # as the selector moves it to that timer
            return
        await asyncio.sleep(delay)
        await self.wait_idle()


def _next_timer(loop: asyncio.AbstractEventLoop) -> asyncio.TimerHandle | None:
    """The head of ``loop``'s timer heap: its next timer, or a cancelled one (None: no timer).

    asyncio has no public way to ask when the next timer is due, and
    `VirtualClockLoop.advance` must know it to move the clock itself. Its
    ``BaseEventLoop`` keeps the timers in ``_scheduled``, a heap (a list) of
    ``TimerHandle`` (Python 3.10 to 3.13 at least): this is the one place that
    reads it. Only the head is checked, to keep a step's cost constant.

    Raises:
        RuntimeError: ``loop`` has no such list (a Python whose asyncio changed).
    """
    scheduled = getattr(loop, "_scheduled", None)
    if type(scheduled) is not list or (
        scheduled and not isinstance(scheduled[0], asyncio.TimerHandle)
    ):
        raise RuntimeError(
            f"the asyncio of Python {platform.python_version()} keeps no list of TimerHandles "
            "in BaseEventLoop._scheduled: the backtest's virtual clock cannot find the next "
            "timer (market_client/backtest/_clock.py must be updated for this Python; "
            "backend='trio' does not need it)"
        )
    head: asyncio.TimerHandle | None = scheduled[0] if scheduled else None
    return head


def backend_options(backend: str) -> dict[str, Any]:
    """``anyio.run`` options that put ``backend`` on a virtual clock.

    Raises:
        ValueError: An unknown backend.
    """
    if backend == "trio":
        import trio.testing

        return {"clock": trio.testing.MockClock(autojump_threshold=0)}
    if backend == "asyncio":
        return {"loop_factory": VirtualClockLoop}
    raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")


def settle_function() -> Callable[[], Awaitable[None]]:
    """For the running loop: an awaitable that returns once every other task is waiting.

    Raises:
        RuntimeError: The loop is not on a virtual clock.
    """
    if sniffio.current_async_library() == "trio":
        import trio.testing

        return trio.testing.wait_all_tasks_blocked
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualClockLoop):
        raise RuntimeError(  # noqa: TRY004 - a wrong loop, not a wrong argument
            "a backtest runs on its own virtual-clock loop (backtest.run)"
        )
    return loop.wait_idle


def advance_function(clock: Any = None) -> Callable[[float], Awaitable[None]]:
    """For the running loop: ``await advance(delay)``, a sleep of ``delay`` then a settle.

    It returns once every other task is waiting and the clock is ``delay``
    later (``delay <= 0``: once every other task is waiting), with timers due
    before that run first, exactly as ``sleep(delay)`` followed by the
    `settle_function` would, but in one wait of the loop when no timer comes
    first: the clock is then moved directly.

    Args:
        clock: On Trio, the run's ``MockClock`` (from `backend_options`).

    Raises:
        RuntimeError: An asyncio loop that is not a `VirtualClockLoop`.
        TypeError: On Trio, ``clock`` is not a ``MockClock``.
    """
    if sniffio.current_async_library() != "trio":
        loop = asyncio.get_running_loop()
        if not isinstance(loop, VirtualClockLoop):
            raise RuntimeError("a backtest runs on its own virtual-clock loop (backtest.run)")
        return loop.advance
    import trio
    import trio.testing

    if not isinstance(clock, trio.testing.MockClock):
        raise TypeError("a backtest on Trio runs on the MockClock of backend_options")
    wait_idle = trio.testing.wait_all_tasks_blocked
    current_time = trio.current_time
    statistics = trio.lowlevel.current_statistics
    jump = clock.jump

    async def advance(delay: float) -> None:
        await wait_idle()
        if delay <= 0:
            return
        now = current_time()
        deadline = now + delay  # as trio.sleep computes it
        # With every task waiting, the autojump would move the clock to the
        # next deadline: when that is our own, move it here, by the same amount.
        if statistics().seconds_to_next_deadline > delay + TIE_MARGIN:
            jump(deadline - now)
            return
        await trio.sleep(delay)
        await wait_idle()

    return advance


def seed_trio_scheduler(seed: int) -> None:
    """Seed the random choices of Trio's scheduler, so that a run on Trio repeats exactly.

    Trio reverses the order of the tasks woken together at random (to shake
    out ordering bugs); a backtest wants the same order every run. There is
    no public way to seed it: the generator is ``trio._core._run._r``, a
    ``random.Random`` (Trio 0.27 to 0.35 at least), and this is the one place
    that touches it. (No seed orders the waiters of one ``trio.Event``, woken
    in the order of a set: the replay wakes one task at a time.)

    Raises:
        RuntimeError: This Trio has no such generator (the run could not repeat).
    """
    import trio

    try:
        from trio._core import _run
    except ImportError:  # pragma: no cover - a Trio without the module
        generator = None
    else:
        generator = getattr(_run, "_r", None)
    if not isinstance(generator, random.Random):
        raise RuntimeError(  # noqa: TRY004 - a Trio that changed, not a wrong argument
            f"Trio {trio.__version__} has no random.Random in trio._core._run._r to seed: "
            "a backtest cannot be deterministic on this Trio (market_client/backtest/_clock.py "
            "must be updated for it; backend='asyncio' does not need it)"
        )
    generator.seed(seed)
