"""`run`: a strategy against a recording, in one process, on a virtual clock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

import anyio
import sniffio

from .._client import MarketClient
from .._exceptions import unwrap
from ..simulator._replay import ReplayFrame, ReplaySource, parse_time
from ..simulator._replay_app import ReplayGateway
from ._clock import advance_function, backend_options, seed_trio_scheduler, settle_function
from ._inprocess import InProcessClient
from ._report import BacktestReport, Ledger

__all__ = ["Strategy", "run"]

Strategy = Callable[[MarketClient], Coroutine[Any, Any, Any]]
"""``async def strategy(client)``: a bot written against the ordinary `MarketClient` API."""

Progress = Callable[[dict[str, Any]], None]

PROGRESS_EVERY_S = 0.25  # wall seconds between progress calls


def _time_ns(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return parse_time(value)


def run(
    strategy: Strategy,
    data: str | os.PathLike[str],
    *,
    symbols: Sequence[str] | None = None,
    start: int | str | None = None,
    end: int | str | None = None,
    backend: str = "asyncio",
    maker_fee_bps: Decimal | str | int = 0,
    taker_fee_bps: Decimal | str | int = 0,
    sample_ms: int = 1000,
    resolution_ms: float = 1.0,
    progress: Progress | None = None,
    seed: int = 0,
    **client_options: Any,
) -> BacktestReport:
    """Run ``strategy`` against the recording in ``data`` and report what it did.

    The recording is replayed through the gateway (the same ops, MD and
    events as live; the strategy's orders filled by the queue model of
    docs/backtesting.md) to a `MarketClient` in the same process, on a
    virtual clock: recorded gaps, the strategy's ``anyio.sleep`` and request
    deadlines take no wall time, and the same recording and strategy give the
    same orders and fills every run. The strategy starts once the client is
    open (books loaded); the run ends at the end of the data (the strategy is
    then cancelled), or earlier if the strategy raises.

    Args:
        strategy: ``async def strategy(client)``.
        data: The recording (a ``record=`` folder).
        symbols: Replay only these (None: all of the recording's).
        start: First receive time to replay (ns since the epoch, or ISO 8601).
        end: Last receive time to replay.
        backend: ``"asyncio"`` or ``"trio"``.
        maker_fee_bps: Fee on maker fills, in basis points of notional.
        taker_fee_bps: Fee on taker fills, in basis points of notional.
        sample_ms: Recorded milliseconds between points of the equity curve.
        resolution_ms: Step of recorded time: the frames of one step reach
            the client together and the strategy reacts after the step (0:
            every frame is a step of its own; slower).
        progress: Called about every 0.25 wall seconds with ``frames``,
            ``recorded_seconds``, ``wall_seconds``, ``frames_per_second``.
        seed: Seed of Trio's scheduling choices (the same every run).
        **client_options: Passed to the client (``timeout``, ``heartbeat_timeout``, ...).

    Returns:
        The `BacktestReport`.

    Raises:
        ValueError: No recording there, or a symbol not in it.
        Exception: What the strategy raised.
    """
    if "symbols" in client_options or "transport" in client_options:
        raise TypeError("symbols are given to run(); the transport is the in-process one")
    source = ReplaySource(data, symbols=symbols, start_ns=_time_ns(start), end_ns=_time_ns(end))
    fees = (Decimal(str(maker_fee_bps)), Decimal(str(taker_fee_bps)))
    if not resolution_ms >= 0:
        raise ValueError(f"resolution_ms must be >= 0, got {resolution_ms}")
    steps = (sample_ms, int(resolution_ms * 1_000_000))
    options = backend_options(backend)
    clock = options.get("clock")
    main = partial(_main, strategy, source, fees, steps, progress, seed, clock, client_options)
    result: BacktestReport = anyio.run(main, backend=backend, backend_options=options)
    return result


async def _main(
    strategy: Strategy,
    source: ReplaySource,
    fees: tuple[Decimal, Decimal],
    steps: tuple[int, int],
    progress: Progress | None,
    seed: int,
    clock: Any,
    client_options: dict[str, Any],
) -> BacktestReport:
    if sniffio.current_async_library() == "trio":
        seed_trio_scheduler(seed)
    started = time.perf_counter()
    ledger: Ledger | None = None
    last_report = started

    def on_frame(frame: ReplayFrame) -> None:
        nonlocal last_report
        assert ledger is not None
        ledger.on_frame(frame)
        if progress is not None and not gateway.progress.frames % 512:
            now = time.perf_counter()
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                progress(gateway.progress.as_dict())

    sample_ms, resolution_ns = steps
    gateway = ReplayGateway(
        source,
        speed=1.0,
        wait_for_subscriber=False,
        settle=settle_function(),
        advance=advance_function(clock),
        on_frame=on_frame,
        resolution_ns=resolution_ns,
    )
    exchange = gateway.replay_exchange
    ledger = Ledger(
        exchange,
        maker_fee_bps=fees[0],
        taker_fee_bps=fees[1],
        sample_ns=sample_ms * 1_000_000,
    )
    exchange.orders.on_fill = ledger.on_fill
    names = [s.sym for s in source.specs]
    try:
        await _session(gateway, ledger, strategy, names, client_options)
    except BaseException as exc:
        single = unwrap(exc)  # the strategy's own exception, not a group
        if single is exc:
            raise
        raise single from single.__cause__
    if progress is not None:
        progress(gateway.progress.as_dict())
    return ledger.report(
        orders=exchange.orders.placed,
        frames=gateway.progress.frames,
        recorded_seconds=gateway.progress.recorded_seconds,
        wall_seconds=time.perf_counter() - started,
    )


async def _session(
    gateway: ReplayGateway,
    ledger: Ledger,
    strategy: Strategy,
    names: list[str],
    client_options: dict[str, Any],
) -> None:
    exchange = gateway.replay_exchange
    async with anyio.create_task_group() as tg:
        tg.start_soon(gateway.heartbeats)
        async with InProcessClient(gateway, symbols=names, **client_options) as client:
            assert client.user_id is not None
            ledger.user = exchange.users[client.user_id]
            ledger.sample(gateway.clock.now_ns())
            async with anyio.create_task_group() as session:
                session.start_soon(strategy, client)
                session.start_soon(gateway.run_replay)
                await gateway.done.wait()
                session.cancel_scope.cancel()
        tg.cancel_scope.cancel()
