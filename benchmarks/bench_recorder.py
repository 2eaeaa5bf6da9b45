"""Recorder benchmark: MD ingest with the recorder on vs off, write throughput, bytes on disk.

In one run, against the flood gateway (``_flood.py``, its own process): a
session ingests N ``book.delta``/``trade`` messages without a recorder and
with one at the default settings (rounds alternate; the best of each is
kept), on asyncio and on Trio. For the recorded rounds it reports the rows
and MB the worker thread wrote per second of its own time, and the bytes on
disk per MD message for the raw layer and for each table.

    python benchmarks/bench_recorder.py [--messages 300000] [--rounds 2] [--write-doc]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import measured, table, write_section
from _servers import Server, server_process

from market_client import MarketClient

HERE = Path(__file__).resolve().parent


async def ingest(url: str, n: int, out: Path | None, **options: Any) -> dict[str, Any]:
    """Messages per second a session turns into state, with or without a recorder."""
    start = time.perf_counter()
    async with MarketClient.session(url, symbols=["ABC"], heartbeat_timeout=60, md=False) as client:
        if out is None:
            await client.open_md(["ABC"])
            while client.stats()["md_messages"] < n + 1:
                await anyio.sleep(0.005)
            return {"rate": n / (time.perf_counter() - start)}
        async with client.record(out, **options) as recorder:
            await client.open_md(["ABC"])
            while client.stats()["md_messages"] < n + 1:
                await anyio.sleep(0.005)
            rate = n / (time.perf_counter() - start)
        stats = recorder.stats()
    assert stats["dropped"] == 0, stats
    return {"rate": rate, "stats": stats}


def disk(out: Path) -> dict[str, int]:
    sizes = {"raw": sum(f.stat().st_size for f in (out / "raw").glob("*.jsonl.zst"))}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "raw"):
        sizes[folder.name] = sum(f.stat().st_size for f in folder.glob("**/*.parquet"))
    return sizes


async def run_backend(server: Server, n: int, rounds: int, backend: str) -> dict[str, Any]:
    off: list[float] = []
    on: list[dict[str, Any]] = []
    raw_only: list[float] = []
    for _ in range(rounds):
        off.append((await ingest(server.url, n, None))["rate"])
        tmp = Path(tempfile.mkdtemp(prefix="bench-rec-"))
        try:
            result = await ingest(server.url, n, tmp / "rec")
            result["disk"] = disk(tmp / "rec")
            on.append(result)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix="bench-rec-"))
        try:
            raw_only.append((await ingest(server.url, n, tmp / "rec", tables=False))["rate"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    best = max(on, key=lambda r: r["rate"])
    return {
        "backend": backend,
        "off": max(off),
        "on": best["rate"],
        "raw_only": max(raw_only),
        **best,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)

    async def one_backend(backend: str) -> dict[str, Any]:
        flood = server_process(str(HERE / "_flood.py"), "--messages", str(args.messages))
        async with flood as server:
            return await run_backend(server, args.messages, args.rounds, backend)

    results = [anyio.run(one_backend, b, backend=b) for b in ("asyncio", "trio")]
    command = " ".join(["python benchmarks/bench_recorder.py", *(argv or sys.argv[1:])])
    report(results, args.messages, command, args.write_doc)
    return results


def report(results: list[dict[str, Any]], n: int, command: str, write: bool) -> None:
    ingest_rows = []
    write_rows = []
    disk_rows = []
    for r in results:
        s = r["stats"]
        rows = sum(s["rows"].values())
        written = s["raw_bytes"] + s["parquet_bytes"]
        busy = s["write_seconds"] or float("nan")
        ingest_rows.append(
            [
                r["backend"],
                f"{r['off'] / 1000:,.0f}k",
                f"{r['on'] / 1000:,.0f}k",
                f"{r['on'] / r['off']:.2f}",
                f"{r['raw_only'] / 1000:,.0f}k",
                f"{r['raw_only'] / r['off']:.2f}",
            ]
        )
        write_rows.append(
            [
                r["backend"],
                f"{rows:,}",
                f"{rows / busy / 1000:,.0f}k",
                f"{written / busy / 1e6:,.1f}",
                f"{s['write_seconds'] / s['elapsed']:.0%}",
            ]
        )
        if not disk_rows:
            frames = s["fed"]
            disk_rows = [
                [layer, f"{size / 1e6:,.2f}", f"{size / frames:,.1f}"]
                for layer, size in r["disk"].items()
            ]
            total = sum(r["disk"].values())
            disk_rows.append(["all", f"{total / 1e6:,.2f}", f"{total / frames:,.1f}"])
    tables = [
        table(
            [
                "backend",
                "recorder off (msg/s)",
                "recorder on (msg/s)",
                "on / off",
                "raw layer only (msg/s)",
                "raw only / off",
            ],
            ingest_rows,
        ),
        table(
            ["backend", "rows written", "rows/s (writer)", "MB/s (writer)", "writer busy"],
            write_rows,
        ),
        table(["layer", "MB on disk", "bytes per MD message"], disk_rows),
    ]
    for t in tables:
        print(t + "\n")
    if write:
        body = (
            measured(command)
            + f"\n\nA session ingests {n:,} flood-gateway MD messages (two `book.delta` for each "
            "`trade`) with no recorder and with `client.record(DIR)` at the default settings "
            "(raw layer, every table), and with the raw layer only (`tables=False`); the rounds "
            "alternate and the best of each is kept. "
            "The writer's rates are per second of the worker thread's own time; its share of "
            "the wall time is 'writer busy'.\n\n" + "\n\n".join(tables)
        )
        write_section(
            "Recorder: ingest with the recorder on, write throughput, bytes on disk", body
        )


if __name__ == "__main__":
    main()
