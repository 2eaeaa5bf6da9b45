"""Soak: one session under heavy flow for minutes, with forced disconnects.

The simulator runs in its own process with brisk background flow; one session
subscribes to every symbol, keeps 1-second candles of each and drains
``events()``; an admin session disconnects the user every few seconds. Every
10 seconds a progress line shows memory, MD rate, reconnects and resyncs. At
the end the summary goes to docs/benchmarks.md ("Soak").

    python benchmarks/soak.py --minutes 10 [--backend asyncio|trio] [--no-write]

Passes when memory after warm-up does not grow and every reconnect took
under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import measured, rss_mib, table, write_section
from _servers import simulator_process

from market_client import MarketClient, ReconnectPolicy

ADMIN = "soak-admin"


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    downtimes: list[float] = []
    samples: list[tuple[float, float]] = []  # (seconds, RSS MiB)
    events = 0
    options = ("--seed", "7", "--flow-hz", str(args.flow_hz), "--admin-token", ADMIN)
    async with (
        simulator_process(*options) as server,
        MarketClient.session(server.url, reconnect=ReconnectPolicy(deadline=30)) as client,
        MarketClient.session(server.url, token=ADMIN, md=False) as admin,
    ):
        t0 = time.monotonic()
        symbols = [s["sym"] for s in await client.get_symbols()]
        for sym in symbols:
            await client.configure_candles(sym, interval_ms=1000, depth=60)

        async def consume() -> None:
            nonlocal events
            async for evt in client.events(buffer=10_000):
                events += 1
                if evt.kind == "connection.restored":
                    downtimes.append(evt.data["downtime_s"])

        async def disconnect() -> None:
            while True:
                await anyio.sleep(args.disconnect_every)
                await admin.send("admin.disconnect", {"user_id": client.user_id}, as_role="admin")

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            tg.start_soon(disconnect)
            last_md, last_t = 0, time.monotonic()
            end = t0 + args.minutes * 60
            while time.monotonic() < end:
                await anyio.sleep(min(10, max(end - time.monotonic(), 0.01)))
                now = time.monotonic()
                stats = client.stats()
                rss = rss_mib()
                samples.append((now - t0, rss))
                rate = (stats["md_messages"] - last_md) / (now - last_t)
                last_md, last_t = stats["md_messages"], now
                print(
                    f"{now - t0:6.0f} s  RSS {rss:6.1f} MiB  MD {rate:8,.0f}/s  "
                    f"reconnects {stats['links']['md']['reconnects']:3d} md "
                    f"{stats['links']['cmd']['reconnects']:3d} cmd  "
                    f"resyncs {sum(stats['resyncs'].values()):4d}  "
                    f"max downtime {max(downtimes, default=0):.3f} s",
                    flush=True,
                )
            tg.cancel_scope.cancel()
        final = client.stats()
    warm = [rss for t, rss in samples if t >= args.warmup]
    return {
        "backend": args.backend,
        "seconds": time.monotonic() - t0,
        "md_messages": final["md_messages"],
        "events": events,
        "reconnects_md": final["links"]["md"]["reconnects"],
        "reconnects_cmd": final["links"]["cmd"]["reconnects"],
        "resyncs": sum(final["resyncs"].values()),
        "malformed": final["malformed_frames"],
        "downtime_p50": statistics.median(downtimes) if downtimes else 0.0,
        "downtime_max": max(downtimes, default=0.0),
        "rss_first_after_warmup": warm[0] if warm else 0.0,
        "rss_min_after_warmup": min(warm, default=0.0),
        "rss_max_after_warmup": max(warm, default=0.0),
        "rss_last": warm[-1] if warm else 0.0,
        "samples": samples,
    }


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    growth = result["rss_last"] - result["rss_first_after_warmup"]
    ok_mem = result["rss_max_after_warmup"] - result["rss_min_after_warmup"] < 10
    ok_reconnect = result["downtime_max"] < 1.0
    rows = [
        ["duration", f"{result['seconds']:.0f} s ({args.backend})"],
        [
            "MD messages applied",
            f"{result['md_messages']:,} ({result['md_messages'] / result['seconds']:,.0f}/s)",
        ],
        ["events delivered", f"{result['events']:,}"],
        ["forced disconnects", f"every {args.disconnect_every:g} s"],
        ["reconnects (MD / CMD)", f"{result['reconnects_md']} / {result['reconnects_cmd']}"],
        [
            "reconnect time p50 / max",
            f"{result['downtime_p50'] * 1000:.0f} ms / {result['downtime_max'] * 1000:.0f} ms"
            + (" (all under 1 s)" if ok_reconnect else " (**over 1 s**)"),
        ],
        ["book resyncs (gaps)", str(result["resyncs"])],
        ["malformed frames", str(result["malformed"])],
        [
            f"RSS after {args.warmup:g} s warm-up: first / min / max / last",
            f"{result['rss_first_after_warmup']:.1f} / {result['rss_min_after_warmup']:.1f} / "
            f"{result['rss_max_after_warmup']:.1f} / {result['rss_last']:.1f} MiB "
            f"(growth {growth:+.1f} MiB" + ("; flat" if ok_mem else "; **grows**") + ")",
        ],
    ]
    curve = ", ".join(
        f"{t:.0f}s {rss:.0f}"
        for t, rss in result["samples"][:: max(1, len(result["samples"]) // 12)]
    )
    return (
        measured(
            f"python benchmarks/soak.py --minutes {args.minutes:g} --backend {args.backend} "
            f"--flow-hz {args.flow_hz:g} --disconnect-every {args.disconnect_every:g}"
        )
        + " The gateway runs in its own process with background flow; one session "
        "subscribes to every symbol, keeps 60 one-second candles of each and drains "
        "`events()`; an admin session forces a disconnect of the user every "
        f"{args.disconnect_every:g} s. Goals (issue 5): no memory growth after warm-up, "
        "every reconnect under 1 s on loopback.\n\n"
        + table(["measure", "value"], rows)
        + f"\n\nRSS over time (s, MiB): {curve}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--flow-hz", type=float, default=2000)
    parser.add_argument("--disconnect-every", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=60)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    result = anyio.run(soak, args, backend=args.backend)
    text = report(result, args)
    print(text)
    if not args.no_write:
        write_section(f"Soak: a session under flow with forced disconnects ({args.backend})", text)


if __name__ == "__main__":
    main()
