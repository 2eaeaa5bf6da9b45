"""Recorder benchmark: MD ingest with the recorder on vs off, write throughput, bytes on disk.

In one run, against the flood gateway (``_flood.py``, its own process): a
session ingests N ``book.delta``/``trade`` messages without a recorder, with
one at the default settings, with the raw layer only, and with one that only
takes the frames (it writes them when it closes); the four alternate within
each round, and each round gives its own on/off ratios (the median and
range over the rounds are reported), on asyncio and on Trio. For the recorded
rounds it reports the CPU per message of the session's own thread (its
reader), of the recorder's worker thread (the hand-off) and of the writer
process (both layers), and the bytes on disk per MD message for the raw
layer and for each table.

    python benchmarks/bench_recorder.py [--messages 300000] [--rounds 5] [--write-doc]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import measured, table, until_read, write_section
from _servers import Server, server_process

from market_client import MarketClient

HERE = Path(__file__).resolve().parent


async def ingest(url: str, n: int, out: Path | None, **options: Any) -> dict[str, Any]:
    """Messages per second a session turns into state, with or without a recorder.

    Also the CPU its own thread (the event loop: the reader) spent per message.
    """
    async with MarketClient.session(url, symbols=["ABC"], heartbeat_timeout=60, md=False) as client:

        async def flood() -> dict[str, float]:
            start, cpu = time.perf_counter(), time.thread_time()
            await client.open_md(["ABC"])
            await until_read(client, n + 1)
            return {
                "rate": n / (time.perf_counter() - start),
                "loop_us": (time.thread_time() - cpu) / n * 1e6,
            }

        if out is None:
            return await flood()
        async with client.record(out, **options) as recorder:
            result = await flood()
            # What the writer had not yet written when the flood ended, and how
            # long it then took to write it and close the files.
            result["behind"] = recorder.stats()["buffered"]
            closing = time.perf_counter()
        result["finish_s"] = time.perf_counter() - closing
        stats = recorder.stats()
    assert stats["dropped"] == 0, stats
    return {**result, "stats": stats}


def disk(out: Path) -> dict[str, int]:
    sizes = {"raw": sum(f.stat().st_size for f in (out / "raw").glob("*.jsonl.zst"))}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "raw"):
        sizes[folder.name] = sum(f.stat().st_size for f in folder.glob("**/*.parquet"))
    return sizes


async def run_backend(server: Server, n: int, rounds: int, backend: str) -> dict[str, Any]:
    rounds_out: list[dict[str, Any]] = []
    for _ in range(rounds):
        unrecorded = await ingest(server.url, n, None)
        tmp = Path(tempfile.mkdtemp(prefix="bench-rec-"))
        try:
            on = await ingest(server.url, n, tmp / "rec")
            on["disk"] = disk(tmp / "rec")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix="bench-rec-"))
        try:
            raw_only = (await ingest(server.url, n, tmp / "rec", tables=False))["rate"]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # The reader's hand-off alone: a batch larger than the flood and no flush
        # before the end, so neither the worker thread nor the writer process works
        # while the flood is read (everything is written when the recording closes).
        tmp = Path(tempfile.mkdtemp(prefix="bench-rec-"))
        try:
            held = await ingest(
                server.url,
                n,
                tmp / "rec",
                batch_frames=n + 10,
                flush_interval=3600.0,
                max_buffer=n + 10,
                max_buffer_bytes=1 << 40,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rounds_out.append(
            {
                "off": unrecorded["rate"],
                "on": on["rate"],
                "raw_only": raw_only,
                "loop_off_us": unrecorded["loop_us"],
                "loop_on_us": on["loop_us"],
                "loop_held_us": held["loop_us"],
                "behind": on["behind"],
                "finish_s": on["finish_s"],
                "last": on,
            }
        )
    return {"backend": backend, "rounds": rounds_out, **rounds_out[-1]["last"]}


WHERE_THE_TIME_GOES = (
    "Where the time goes: everything the recorder does per frame (the raw layer's lines, "
    "compression, the table rows) is done in the writer process, at a lower CPU priority than "
    "the session; in the session's process the MD reader keeps the frames' objects in the "
    "recorder's buffer itself, those it took from the socket together at once (one receive "
    "time, two extends and a sum in one call for them all: no copy), "
    "and the worker thread packs the buffer and hands it over (the 'worker thread' column: "
    "a few joins over the batch and a pipe). What recording costs the session's event loop "
    "is in the last table: the frames taken only (those steps for every frame: the "
    "in-process figure above it, and the rest is what the same work costs beside a socket, "
    "the reader's own state and picows' buffers), then the worker thread and the writer "
    "process at work "
    "beside the session. The rate falls further than the event loop's CPU per message "
    "rises: on 2 cores the flood gateway, the session and the writer process share the "
    "CPUs, and the writer's lower priority only ranks it where two of them meet on one. "
    "The flood gateway sends as fast as the socket takes it, so the session "
    "reads at the highest rate it can: the ratio is the recorder's cost at full load, not at "
    "a market's rate. At that rate the writer process, below the session's priority, falls "
    "behind (the last two columns of the first table): what it had not written when the "
    "flood ended waited in the recorder's bounded buffer (at most 500,000 frames or 256 MiB "
    "by default; beyond that, frames are dropped and marked as a gap) and was written when "
    "the recording closed. A flood that lasts longer than the buffer covers is recorded "
    "with gaps; a session that must keep everything through such a flood records the raw "
    "layer only, or gives the recorder a core of its own."
)


def feed_cost(frames: int = 200_000, together: int = 16) -> dict[str, float]:
    """µs per frame the MD reader spends handing frames to a recorder, in this process.

    No sockets, no other task: what the reader pays per frame at the least.
    ``take`` is `Recorder.feed_many` over ``together`` frames at a time (what
    `MdChannel._record` calls for the frames it takes from the socket between
    two turns, 16 under a flood) and ``none`` an empty function called the
    same way, so ``take - none`` is what the reader pays for the hand-off;
    ``feed`` is one `Recorder.feed` call a frame, the path of a CMD frame
    and of a frame the buffer has no room for.
    """
    from market_client.recording import Recorder

    frame = (
        b'{"type":"md","ch":"book.delta","sym":"ABC","seq":123456,'
        b'"changes":[["buy","99.95",12]],"ts_ns":1700000000000000000}'
    )
    frames_in = [bytes(bytearray(frame)) for _ in range(frames)]  # each its own object
    parts = [frames_in[i : i + together] for i in range(0, frames, together)]

    def nothing(raws: list[bytes], recv_ns: int) -> None:
        pass

    def per_part(hand: Any, *args: Any) -> float:
        now = time.time_ns
        start = time.perf_counter()
        for part in parts:
            hand(*args, part, now())
        return (time.perf_counter() - start) / frames * 1e6

    def per_frame(hand: Any, *args: Any) -> float:
        now = time.time_ns
        start = time.perf_counter()
        for raw in frames_in:
            hand(*args, raw, now())
        return (time.perf_counter() - start) / frames * 1e6

    out: dict[str, list[float]] = {"take": [], "none": [], "feed": []}
    for _ in range(5):
        with tempfile.TemporaryDirectory() as tmp:
            # Never opened: frames only fill its buffer (nobody is woken, nothing written).
            out["take"].append(per_part(Recorder(tmp, batch_frames=frames + 1).feed_many))
            out["feed"].append(per_frame(Recorder(tmp, batch_frames=frames + 1).feed, "md"))
        out["none"].append(per_part(nothing))
    return {"frames": frames, "together": together, **{k: min(v) for k, v in out.items()}}


def verdict(results: list[dict[str, Any]]) -> str:
    """Whether the 0.8 target is met, and what each part costs per message."""
    lines = []
    for r in results:
        rounds = r["rounds"]
        ratio = statistics.median(x["on"] / x["off"] for x in rounds)
        s = r["stats"]
        frames = s["fed"] or 1
        lines.append(
            f"- {r['backend']}: recorded / unrecorded = {ratio:.3f} (median), target 0.8 "
            + ("**met**" if ratio >= 0.8 else "**not met**")
            + f"; the session's event loop spent "
            f"{statistics.median(x['loop_on_us'] for x in rounds):.1f} µs of CPU per message "
            f"recorded against {statistics.median(x['loop_off_us'] for x in rounds):.1f} "
            f"unrecorded, its worker thread {s['write_cpu_seconds'] / frames * 1e6:.1f}, and the "
            f"writer process {s['table_seconds'] / frames * 1e6:.1f} (both layers)."
        )
    return "\n".join(lines)


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)``."""
    return (
        f"{format(statistics.median(values), fmt)} "
        f"({format(min(values), fmt)}-{format(max(values), fmt)})"
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)

    async def one_backend(backend: str) -> dict[str, Any]:
        flood = server_process(str(HERE / "_flood.py"), "--messages", str(args.messages))
        async with flood as server:
            return await run_backend(server, args.messages, args.rounds, backend)

    results = [anyio.run(one_backend, b, backend=b) for b in ("asyncio", "trio")]
    results[0]["feed_cost"] = feed_cost()
    command = " ".join(["python benchmarks/bench_recorder.py", *(argv or sys.argv[1:])])
    report(results, args.messages, command, args.write_doc)
    return results


def report(results: list[dict[str, Any]], n: int, command: str, write: bool) -> None:
    ingest_rows = []
    write_rows = []
    disk_rows: list[list[str]] = []
    for r in results:
        rounds = r["rounds"]
        s = r["stats"]
        rows = sum(s["rows"].values())
        ingest_rows.append(
            [
                r["backend"],
                spread([x["off"] / 1000 for x in rounds], ",.0f") + "k",
                spread([x["on"] / 1000 for x in rounds], ",.0f") + "k",
                "**" + spread([x["on"] / x["off"] for x in rounds], ".2f") + "**",
                spread([x["raw_only"] / 1000 for x in rounds], ",.0f") + "k",
                spread([x["raw_only"] / x["off"] for x in rounds], ".2f"),
                spread([x["behind"] / 1000 for x in rounds], ",.0f") + "k",
                spread([x["finish_s"] for x in rounds], ".1f"),
            ]
        )
        frames = s["fed"] or 1
        write_rows.append(
            [
                r["backend"],
                f"{rows:,}",
                spread([x["loop_off_us"] for x in rounds], ".1f"),
                spread([x["loop_on_us"] for x in rounds], ".1f"),
                f"{s['write_cpu_seconds'] / frames * 1e6:,.2f}",
                f"{s['table_seconds'] / frames * 1e6:,.1f}",
                f"{rows / (s['table_seconds'] or float('nan')) / 1000:,.0f}k",
            ]
        )
        if not disk_rows:
            disk_rows = [
                [layer, f"{size / 1e6:,.2f}", f"{size / frames:,.1f}"]
                for layer, size in r["disk"].items()
            ]
            total = sum(r["disk"].values())
            disk_rows.append(["all", f"{total / 1e6:,.2f}", f"{total / frames:,.1f}"])
    part_rows = [
        [
            r["backend"],
            spread([x["loop_off_us"] for x in r["rounds"]], ".1f"),
            spread([x["loop_held_us"] for x in r["rounds"]], ".1f"),
            spread([x["loop_on_us"] for x in r["rounds"]], ".1f"),
        ]
        for r in results
    ]
    cost = results[0]["feed_cost"]
    tables = [
        table(
            [
                "backend",
                "recorder off (msg/s)",
                "recorder on (msg/s)",
                "on / off",
                "raw layer only (msg/s)",
                "raw only / off",
                "frames not yet written when the flood ended",
                "then to finish (s)",
            ],
            ingest_rows,
        ),
        table(
            [
                "backend",
                "rows written",
                "event loop, unrecorded (µs CPU / msg)",
                "event loop, recorded",
                "worker thread",
                "writer process",
                "rows/s (writer process CPU)",
            ],
            write_rows,
        ),
        table(["layer", "MB on disk", "bytes per MD message"], disk_rows),
        "Where the recorded session's extra CPU comes from, in the same rounds: the "
        "session's event loop (µs CPU per message) with no recorder, with a recorder "
        "that only takes the frames (its batch is larger than the flood and it does not "
        "flush before the end: no worker thread and no writer process at work during "
        "the flood), and at the default settings; and, in this process alone with no "
        "socket, what the reader's steps cost a frame: "
        f"{cost['take'] - cost['none']:.3f} µs (`Recorder.feed_many` over "
        f"{cost['together']} frames at a time, which the reader calls for the frames "
        f"it takes between two turns, {cost['take']:.3f} µs a frame against "
        f"{cost['none']:.3f} for an empty function called the same way; one "
        f"`Recorder.feed` call, the path of a CMD frame, {cost['feed']:.2f} µs; best of "
        f"five, {cost['frames']:,.0f} frames).\n\n"
        + table(
            [
                "backend",
                "recorder off",
                "frames taken only",
                "default settings",
            ],
            part_rows,
        ),
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    tables.insert(0, verdict(results))
    for t in tables:
        print(t + "\n")
    print(f"load average at the end: {load:.1f}")
    if write:
        body = (
            measured(command)
            + f" Load average at the end of the run: {load:.1f} on {os.cpu_count()} cores."
            + f"\n\nA session ingests {n:,} flood-gateway MD messages (two `book.delta` for each "
            "`trade`) with no recorder, with `client.record(DIR)` at the default settings "
            "(both layers written by the writer process), with the raw layer only "
            "(`tables=False`), and with one that only takes the frames (last table). The "
            "four alternate within each round; each round gives its "
            "own ratios, reported as median (min-max) over the rounds. CPU times are per "
            "message: the session's event loop thread (its reader; median (min-max) over the "
            "rounds), and for the last recorded round the recorder's worker thread (the "
            "hand-off) and the writer process.\n\n"
            + "\n\n".join(tables)
            + "\n\n"
            + WHERE_THE_TIME_GOES
        )
        write_section(
            "Recorder: ingest with the recorder on, write throughput, bytes on disk", body
        )


if __name__ == "__main__":
    main()
