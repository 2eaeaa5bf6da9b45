"""Backtests: a strategy against a recording, in one process, on a virtual clock.

`backtest.run` starts its own event loop (the virtual clock is the loop's),
so these tests are plain functions, parametrized over both backends.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from market_client import MarketClient, backtest
from market_client.backtest._inprocess import _Pipe
from market_client.simulator import SimulatorConfig
from market_client.testing import open_simulator, wait_until

BACKENDS = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording of the busy simulator (seed 2, 400 actions a second): 400 MD messages, 1 s.

    At least a second of recorded time, whatever the machine's speed: the
    strategies below sleep half a second of it.
    """
    rec = tmp_path_factory.mktemp("backtest") / "rec"

    async def record() -> None:
        config = SimulatorConfig(seed=2, flow_hz=400)
        with anyio.fail_after(30):
            async with (
                open_simulator(config) as sim,
                MarketClient.session(sim.url, record=rec) as client,
            ):
                start = anyio.current_time()
                await wait_until(
                    lambda: (
                        client.stats()["md_messages"] >= 400 and anyio.current_time() - start >= 1.0
                    )
                )

    anyio.run(record)
    return rec


async def quoter(client: MarketClient) -> None:
    """Quote one lot at the best bid and ask every 0.2 s; keep what rests."""
    while True:
        top = client.best_bid_ask("ABC")
        if top["bid"] is not None and top["ask"] is not None:
            await client.place_order("ABC", "buy", top["bid"]["price"], 1)
            await client.place_order("ABC", "sell", top["ask"]["price"], 1)
        await anyio.sleep(0.2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_runs_give_identical_orders_and_fills(recording: Path, backend: str) -> None:
    first = backtest.run(quoter, recording, backend=backend, taker_fee_bps=2)
    second = backtest.run(quoter, recording, backend=backend, taker_fee_bps=2)
    assert first.orders > 0
    assert first.fills
    assert orjson.dumps(first.fills) == orjson.dumps(second.fills)
    one, two = first.to_json(), second.to_json()
    for varies in ("wall_seconds", "events_per_second"):
        del one[varies], two[varies]
    assert orjson.dumps(one) == orjson.dumps(two)
    assert first.realized_pnl + first.unrealized_pnl - first.fees == first.net_pnl
    assert first.frames > 300


def test_both_backends_agree(recording: Path) -> None:
    on_asyncio = backtest.run(quoter, recording, backend="asyncio")
    on_trio = backtest.run(quoter, recording, backend="trio")
    assert orjson.dumps(on_asyncio.fills) == orjson.dumps(on_trio.fills)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sleeps_and_deadlines_follow_recorded_time(recording: Path, backend: str) -> None:
    seen: dict[str, Any] = {}

    async def sleeper(client: MarketClient) -> None:
        start = anyio.current_time()
        with anyio.move_on_after(0.5):
            await anyio.sleep_forever()
        seen["half"] = anyio.current_time() - start
        await client.send("portfolio.get", timeout=0.001)  # in-process: answered at once
        await anyio.sleep(3600)  # an hour of virtual time, past the data's end

    started = time.perf_counter()
    report = backtest.run(sleeper, recording, backend=backend)
    assert seen["half"] == pytest.approx(0.5)
    assert report.recorded_seconds > 0.1
    assert time.perf_counter() - started < 30  # no wall-clock waiting for the virtual hour


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_strategy_sees_the_recorded_market(recording: Path, backend: str) -> None:
    seqs: list[int] = []

    async def watcher(client: MarketClient) -> None:
        async for event in client.events("md.trade"):
            seqs.append(event.data["seq"])

    report = backtest.run(watcher, recording, backend=backend, symbols=["ABC"])
    assert seqs == sorted(seqs)
    assert len(seqs) > 0
    assert report.fills == []
    assert report.net_pnl == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_strategy_fails_the_run(recording: Path, backend: str) -> None:
    async def broken(client: MarketClient) -> None:
        await anyio.sleep(0.1)
        raise ZeroDivisionError("strategy bug")

    with pytest.raises(ZeroDivisionError, match="strategy bug"):
        backtest.run(broken, recording, backend=backend)


def test_report_outputs(recording: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = backtest.run(quoter, recording, maker_fee_bps="-0.5", taker_fee_bps=1)
    data = json.loads(json.dumps(report.to_json()))
    assert data["fill_count"] == len(report.fills)
    assert data["equity"]
    report.plot(tmp_path / "equity.png")
    assert (tmp_path / "equity.png").read_bytes()[:4] == b"\x89PNG"
    from rich.console import Console

    console = Console(record=True, width=100)
    console.print(report.table())
    assert "max drawdown" in console.export_text()


def test_bad_arguments(recording: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no recording"):
        backtest.run(quoter, tmp_path)
    with pytest.raises(ValueError, match="not in the recording"):
        backtest.run(quoter, recording, symbols=["NOPE"])
    with pytest.raises(ValueError, match="backend"):
        backtest.run(quoter, recording, backend="curio")


@pytest.mark.anyio
async def test_the_in_process_pipe_keeps_order_and_bounds_its_queue() -> None:
    pipe = _Pipe(3)
    got: list[str] = []

    async def reader() -> None:
        while True:
            try:
                msg = await pipe.get()
            except anyio.EndOfStream:
                return
            got.append(msg["text"])
            assert len(pipe.items) <= 3  # the writer never ran past the bound

    async with anyio.create_task_group() as tg:
        await pipe.send_texts(["a", "b", "c"])  # fits: returns without a reader
        tg.start_soon(reader)
        await pipe.send_texts([str(i) for i in range(10)])  # waits for room as the reader drains
        await pipe.put({"type": "websocket.send", "text": "last"})
        pipe.close()
    assert got == ["a", "b", "c", *(str(i) for i in range(10)), "last"]
    await pipe.send_texts(["dropped"])  # a closed pipe drops, as a gone socket would
    with pytest.raises(anyio.ClosedResourceError):
        await pipe.put({"type": "websocket.send", "text": "x"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_advance_is_a_sleep_then_a_settle(backend: str) -> None:
    """One wait per step, with what a sleep and a settle would give: clock, and who ran first."""
    from market_client.backtest._clock import advance_function, backend_options, settle_function

    options = backend_options(backend)

    async def steps(fast: bool) -> list[tuple[str, float]]:
        log: list[tuple[str, float]] = []
        advance = advance_function(options.get("clock"))
        settle = settle_function()

        async def timer(name: str, at: float) -> None:
            await anyio.sleep(at)
            log.append((name, anyio.current_time()))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                # Due before the second step, exactly at the third, and after the last.
                for name, at in (("before", 0.0015), ("tie", 0.003), ("after", 5.0)):
                    tg.start_soon(timer, name, at)
                start = anyio.current_time()
                for step in (0.001, 0.002, 0.003, 0.003, 0.0045):
                    delay = start + step - anyio.current_time()
                    if fast:
                        await advance(delay)
                    else:
                        if delay > 0:
                            await anyio.sleep(delay)
                        await settle()
                    log.append(("step", anyio.current_time()))
                tg.cancel_scope.cancel()
        return log

    async def main() -> None:
        slow, fast = await steps(False), await steps(True)
        order = ["step", "before", "step", "tie", "step", "step", "step"]
        assert [name for name, _ in fast] == order
        assert [name for name, _ in fast] == [name for name, _ in slow]
        start_slow, start_fast = slow[0][1] - 0.001, fast[0][1] - 0.001
        for (_, a), (_, b) in zip(slow, fast, strict=True):
            assert a - start_slow == pytest.approx(b - start_fast, abs=1e-12)

    anyio.run(main, backend=backend, backend_options=options)


# -- the loops' internals the virtual clock reads: present here, loud when gone --------


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_loops_internals_are_there_on_this_python_and_trio(backend: str) -> None:
    """asyncio's timer heap and Trio's scheduler's generator, as `_clock` reads them."""
    import asyncio

    from market_client.backtest._clock import _next_timer, backend_options, seed_trio_scheduler

    async def main() -> None:
        if backend == "trio":
            seed_trio_scheduler(1)  # no error: this Trio has it
            return
        loop = asyncio.get_running_loop()
        assert isinstance(loop, backtest.VirtualClockLoop)
        later = loop.call_later(1000, lambda: None)
        sooner = loop.call_later(10, lambda: None)
        assert _next_timer(loop) is sooner
        sooner.cancel()
        later.cancel()
        head = _next_timer(loop)  # a cancelled timer stays in the heap until it is due
        assert head is None or head.cancelled() or head.when() < sooner.when()

    anyio.run(main, backend=backend, backend_options=backend_options(backend))


def test_the_virtual_clock_fails_loudly_without_asyncios_timer_heap() -> None:
    import asyncio
    import platform
    from types import SimpleNamespace

    from market_client.backtest._clock import _next_timer

    loop = asyncio.new_event_loop()
    try:
        assert _next_timer(loop) is None  # no timer yet
    finally:
        loop.close()
    version = platform.python_version()
    for changed in (
        SimpleNamespace(),  # the attribute renamed away
        SimpleNamespace(_scheduled={}),  # not a list
        SimpleNamespace(_scheduled=[(1.0, "handle")]),  # not TimerHandles
    ):
        with pytest.raises(RuntimeError, match=f"Python {version}.*virtual clock"):
            _next_timer(changed)  # type: ignore[arg-type]


def test_a_backtest_on_trio_fails_loudly_without_the_schedulers_generator(
    recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trio
    from trio._core import _run

    from market_client.backtest._clock import seed_trio_scheduler

    monkeypatch.delattr(_run, "_r")
    with pytest.raises(RuntimeError, match=f"Trio {trio.__version__}.*cannot be deterministic"):
        seed_trio_scheduler(0)
    # Trio's own run loop draws from it too: a stand-in that is not a random.Random.
    monkeypatch.setattr(_run, "_r", _NotARandom(), raising=False)
    with pytest.raises(RuntimeError, match="cannot be deterministic on this Trio"):
        backtest.run(quoter, recording, backend="trio")


class _NotARandom:
    """Draws as `random.Random` does for Trio's run loop, but is not one."""

    def __init__(self) -> None:
        self._random = random.Random(0)

    def random(self) -> float:
        return self._random.random()

    def uniform(self, a: float, b: float) -> float:
        return self._random.uniform(a, b)

    def shuffle(self, items: list[Any]) -> None:
        self._random.shuffle(items)


def test_seeding_trio_repeats_the_order_of_tasks_run_together() -> None:
    """The same seed, the same order, where Trio draws at random which of a batch goes first.

    (Tasks are woken by checkpoints here, not by one ``trio.Event``: the
    order in which an event wakes its waiters is its set's, which no seed
    fixes; the replay wakes one task at a time.)
    """
    import trio

    from market_client.backtest._clock import seed_trio_scheduler

    async def order(seed: int) -> list[int]:
        seed_trio_scheduler(seed)
        ran: list[int] = []

        async def task(i: int) -> None:
            for _ in range(8):
                ran.append(i)
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(task, i)
        return ran

    first, again, other = (trio.run(order, seed) for seed in (7, 7, 8))
    assert first == again
    assert first != other  # the seed is what decides (2**8 orders: these two differ)
