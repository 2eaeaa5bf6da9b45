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

Both jump only when nothing can run, so the order in which things happen
depends on the program alone, never on the machine's speed. Work that
leaves the loop (threads, real sockets) would let the clock jump while it
runs: a backtest uses neither.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

import sniffio

__all__ = ["VirtualClockLoop", "backend_options", "settle_function"]


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


def seed_trio_scheduler(seed: int) -> None:
    """Make Trio's scheduler choices repeat run after run.

    Trio shuffles the order of tasks woken together (to shake out ordering
    bugs); a backtest wants the same order every run, so the generator it
    draws from is seeded. It is a private attribute of Trio: when it is
    missing, nothing is done (one strategy task still replays identically,
    since the replay serialises what it wakes).
    """
    try:
        from trio._core import _run
    except ImportError:  # pragma: no cover - a Trio without the module
        return
    generator = getattr(_run, "_r", None)
    if generator is not None and hasattr(generator, "seed"):
        generator.seed(seed)
