"""Replay and backtest throughput: recorded MD events per second.

    python benchmarks/bench_replay.py [--seconds 60] [--rounds 3] [--recording DIR]
                                      [--only NAME,...] [--write]

Records the simulator under brisk flow (seed 2, 400 actions a second) for
``--seconds`` (or replays ``--recording DIR``, kept from an earlier run, so
that two versions of the code can be compared on the same frames), then
alternates, round after round, on each backend:

- bare picows: ``market-client sim --replay DIR --speed max`` in its own
  process and a bare picows loop (asyncio only; bench_client.py's
  `ingest_picows`, which decodes every frame with orjson) subscribed to
  every symbol: messages per second from the connect to the last frame.
  This is the gateway's own rate, with no session in the way;
- socket replay: the recording served by ``sim --replay`` at ``--speed max``
  to one `MarketClient` over real sockets (events the client applied per
  second, from the first replayed frame to the last), once with the gateway
  in the benchmark's process, once with ``market-client sim --replay`` in its
  own process (the client then runs alone in this one: the real setting);
- backtest: ``backtest.run`` of examples/backtest_market_maker.py on the same
  recording, in process on the virtual clock (events per wall second, and the
  wall time of one recorded minute).

Prints the median and range of each; ``--write`` rewrites the section of
docs/benchmarks.md. Anchors (issue 17): tardis-machine replays about 700,000
msg/s from its cache; nautilus' Rust core decodes about 970,000 records/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import measured, table, write_section
from _servers import simulator_process

from market_client import MarketClient, backtest
from market_client.simulator import SimulatorConfig, serve
from market_client.simulator._replay import ReplaySource, recording_specs

ROOT = Path(__file__).resolve().parent.parent
TITLE = "Replay and backtest: recorded events per second"


async def record(directory: Path, seconds: float) -> None:
    async with (
        serve(SimulatorConfig(seed=2, flow_hz=400)) as sim,
        MarketClient.session(sim.url, record=directory),
    ):
        await anyio.sleep(seconds)


async def socket_replay(directory: Path) -> float:
    async with serve(replay=directory, speed=math.inf) as sim:
        gateway: Any = sim.gateway
        async with MarketClient.session(sim.url) as client:
            # The replay started when the client subscribed, inside the session's opening.
            await gateway.done.wait()
            sent = gateway.stats.md_sent
            with anyio.fail_after(60):
                while client.stats()["md_messages"] < sent:  # also counts snapshots, heartbeats
                    await anyio.sleep(0.001)
            elapsed = gateway.progress.wall_seconds
    return float(sent / elapsed)


def replayed_frames(directory: Path) -> int:
    """How many frames a replay of the whole recording sends."""

    source = ReplaySource(directory)
    for _ in source.preroll():
        pass
    return sum(1 for _ in source)


async def socket_replay_process(directory: Path, frames: int) -> float:
    """``market-client sim --replay DIR --speed max`` in its own process, one client here."""
    exe = shutil.which("market-client", path=str(Path(sys.executable).parent)) or "market-client"
    process = await anyio.open_process(
        [exe, "sim", "--replay", str(directory), "--speed", "max", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        with anyio.fail_after(30):
            while "serving on" not in (line := (await lines.receive_until(b"\n", 4096)).decode()):
                pass
        url = line.split("serving on", 1)[1].split()[0]
        started = time.perf_counter()
        async with MarketClient.session(url) as client:
            # The replay starts when the client subscribes, inside the session's opening.
            with anyio.fail_after(120):
                while client.stats()["md_messages"] < frames:  # also counts snapshots, heartbeats
                    await anyio.sleep(0.001)
            elapsed = time.perf_counter() - started
    finally:
        process.kill()
        await process.wait()
        await process.aclose()
    return frames / elapsed


BARE_TOKEN = "bench-admin"  # the replay gateway's admin token: any user may read MD


async def bare_picows_replay(directory: Path, frames: int, symbols: int) -> float:
    """Messages per second a bare picows loop reads from ``sim --replay DIR --speed max``.

    The gateway runs in its own process; the loop is bench_client.py's own
    (`ingest_picows`: one callback and one ``orjson.loads`` per frame), pointed
    at the replay's MD socket for every symbol. It counts ``symbols``
    snapshots and the ``frames`` replayed (a heartbeat, one every 0.5 s, may
    stand in for the last frame).
    """
    import bench_client

    async with simulator_process(
        "--replay", str(directory), "--speed", "max", "--admin-token", BARE_TOKEN
    ) as server:
        url = f"ws{server.url[4:]}/ws/md?token={BARE_TOKEN}"
        with mock.patch.object(bench_client, "md_url", return_value=url), anyio.fail_after(120):
            # ingest_picows waits for n + 1 frames and returns n over the time it took.
            return float(await bench_client.ingest_picows(server.url, frames + symbols - 1))


def strategy() -> Any:
    path = ROOT / "examples" / "backtest_market_maker.py"
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("backtest_market_maker", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.strategy


BENCHES = ("bare", "one-process", "own-process", "backtest")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--recording", type=Path, default=None, help="replay this recording (kept, not recorded)"
    )
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated, of {', '.join(BENCHES)}"
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if only - set(BENCHES):
        parser.error(f"--only takes {', '.join(BENCHES)}")
    if args.write and only != set(BENCHES):
        parser.error("--write needs every benchmark")
    bot = strategy()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rec = args.recording
        if rec is None:
            rec = Path(tmp) / "rec"
            anyio.run(record, rec, args.seconds)
        results: dict[tuple[str, str], list[float]] = {}
        minute: dict[str, list[float]] = {}
        frames = 0
        replayed = replayed_frames(rec)
        symbols = len(recording_specs(rec))
        devnull = open(os.devnull, "w")  # noqa: SIM115 - the bot prints every fill
        for _ in range(args.rounds):
            if "bare" in only:
                rate = anyio.run(bare_picows_replay, rec, replayed, symbols, backend="asyncio")
                results.setdefault(
                    ("bare picows client, --speed max, gateway in its own process", "asyncio"), []
                ).append(rate)
            for backend in ("asyncio", "trio"):
                if "one-process" in only:
                    rate = anyio.run(socket_replay, rec, backend=backend)
                    results.setdefault(
                        ("socket replay, --speed max, one process", backend), []
                    ).append(rate)
                if "own-process" in only:
                    rate = anyio.run(socket_replay_process, rec, replayed, backend=backend)
                    results.setdefault(
                        ("socket replay, --speed max, gateway in its own process", backend), []
                    ).append(rate)
                if "backtest" not in only:
                    continue
                stdout, sys.stdout = sys.stdout, devnull
                try:
                    report = backtest.run(bot, rec, backend=backend)
                finally:
                    sys.stdout = stdout
                frames = report.frames
                results.setdefault(("backtest in process", backend), []).append(
                    report.events_per_second
                )
                per_minute = report.wall_seconds * 60 / report.recorded_seconds
                minute.setdefault(backend, []).append(per_minute)
        for (bench, backend), values in results.items():
            extra = ""
            if bench.startswith("backtest"):
                m = minute[backend]
                extra = (
                    f"one recorded minute in {statistics.median(m):.2f} s "
                    f"({min(m):.2f} to {max(m):.2f})"
                )
            rows.append(
                {
                    "bench": bench,
                    "backend": backend,
                    "median": f"{statistics.median(values):,.0f}",
                    "range": f"{min(values):,.0f} to {max(values):,.0f}",
                    "detail": extra,
                }
            )
    grid = table(
        ["benchmark", "backend", "events/s (median)", "range", "detail"],
        [[r["bench"], r["backend"], r["median"], r["range"], r["detail"]] for r in rows],
    )
    print(grid)
    if args.write:
        report_section(grid, args, frames)
    return rows


def report_section(grid: str, args: argparse.Namespace, frames: int) -> None:
    write_section(
        TITLE,
        measured("python benchmarks/bench_replay.py --write")
        + f" A recording of {args.seconds:g} s of the simulator under flow 400/s ({frames:,} MD "
        f"events), {args.rounds} alternating rounds per backend; median and range. Anchors: "
        "tardis-machine replays about 700,000 msg/s from its cache (no matching of the user's "
        "orders), nautilus' Rust core decodes about 970,000 records/s (decoding only). Ours "
        "is Python end to end. The socket replay includes the gateway's fan-out, the "
        "WebSocket and the client applying every event to its books: with the gateway in its "
        "own process (`market-client sim --replay DIR --speed max`, on asyncio; the backend "
        "column is the client's) the client is the limit; the bare picows row is the gateway's "
        "own rate (recorded frames passed through in batches, nothing re-encoded). The backtest "
        "also runs the strategy (examples/backtest_market_maker.py), the queue model and the "
        "virtual clock, and waits for the strategy to react after every 1 ms step; the "
        "issue's target is one recorded minute in under 3 s. Load average when it ended: "
        f"{os.getloadavg()[0]:.1f} on this shared machine.\n\n" + grid,
    )


if __name__ == "__main__":
    main()
