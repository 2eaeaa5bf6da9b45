"""``market-client record`` and ``market-client recording``: record a gateway, show a folder."""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import time
from typing import Any

import anyio

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = ("record", "recording")


def add_commands(sub: Any) -> None:
    """Add ``record`` and ``recording`` to the ``market-client`` subparsers.

    Args:
        sub: What ``ArgumentParser.add_subparsers()`` returned.
    """
    rec = sub.add_parser("record", help="record a gateway's market data into a folder")
    keep = argparse.SUPPRESS  # given before the command, they must not be reset here
    rec.add_argument(
        "--url",
        default=keep,
        help="the gateway (default: the profile's, else http://127.0.0.1:8000)",
    )
    rec.add_argument("--out", required=True, help="the folder to write (created if needed)")
    rec.add_argument("--symbols", default=None, help="comma-separated symbols (default: all)")
    rec.add_argument("--duration", type=float, default=None, help="seconds (default: Ctrl-C)")
    rec.add_argument(
        "--token",
        default=keep,
        help="record as the user this token resumes (default: MARKET_CLIENT_TOKEN, "
        "else the profile's, as every command)",
    )
    rec.add_argument(
        "--profile", default=keep, metavar="NAME", help="the saved identity (see `login`)"
    )
    rec.add_argument("--candles", default="", help="candle intervals in ms, e.g. 1000,60000")
    rec.add_argument("--rotate-seconds", type=float, default=60.0, help="file rotation age")
    rec.add_argument("--rotate-mb", type=float, default=64.0, help="file rotation size")
    rec.add_argument("--no-raw", action="store_true", help="skip the raw layer")
    rec.add_argument("--no-tables", action="store_true", help="skip the Parquet tables")
    rec.add_argument("--quiet", action="store_true", help="no live progress, just the summary")
    rec.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    show = sub.add_parser("recording", help="show what a recording folder holds")
    show.add_argument("dir", help="the folder")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument(
        "--rebuild",
        action="store_true",
        help="first write the tables again from the raw layer (after a crash)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``record`` or ``recording``; returns the exit status."""
    from .._cli._profiles import ProfileError
    from .._exceptions import MarketClientError

    try:
        if args.command == "record":
            return anyio.run(_record, args, backend=args.backend)
        return _show(args)
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        print(f"market-client: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, MarketClientError, ProfileError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"market-client: {exc}", file=sys.stderr)
        return 1


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _progress(stats: dict[str, Any], rate: float, elapsed: float) -> Any:
    from rich.table import Table

    table = Table(title=f"recording into {stats['directory']} — {elapsed:.0f} s", expand=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in stats["rows"].items():
        table.add_row(name, f"{rows:,}")
    table.add_section()
    table.add_row("messages", f"{stats['fed']:,}")
    table.add_row("msg/s", f"{rate:,.0f}")
    table.add_row("files", f"{stats['parquet_files'] + stats['raw_files']:,}")
    table.add_row("MB (raw + parquet)", _mb(stats["raw_bytes"] + stats["parquet_bytes"]))
    table.add_row("dropped", f"{stats['dropped']:,}")
    return table


async def _record(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from .._client import MarketClient

    symbols = [s for s in args.symbols.split(",") if s] if args.symbols else None
    candles = [int(c) for c in args.candles.split(",") if c]
    options: dict[str, Any] = {
        "raw": not args.no_raw,
        "tables": not args.no_tables,
        "candles": candles,
        "rotate_seconds": args.rotate_seconds,
        "rotate_bytes": max(1, int(args.rotate_mb * 1e6)),
    }
    console = Console(stderr=True)
    stats: dict[str, Any] = {}
    started = time.monotonic()
    # MD opens once the recorder listens, so the tables start from the snapshots.
    from .._cli._profiles import resolve_identity

    # The same identity as every other command: your own orders and fills get recorded.
    ident = resolve_identity(
        url=getattr(args, "url", None),
        token=getattr(args, "token", None),
        profile=getattr(args, "profile", None),
    )
    async with MarketClient.session(ident.url, token=ident.token, md=False) as client:
        async with client.record(args.out, **options) as recorder:
            await client.open_md(symbols)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_stop_on_signal, scope)
                    deadline = started + args.duration if args.duration is not None else None
                    last_n, last_t, rate = 0, time.monotonic(), 0.0
                    live = Live(console=console, refresh_per_second=4, transient=True)
                    with live if not args.quiet else _nothing():
                        while deadline is None or time.monotonic() < deadline:
                            await anyio.sleep(0.25)
                            stats = recorder.stats()
                            now = time.monotonic()
                            if now - last_t >= 1:
                                rate = (stats["fed"] - last_n) / (now - last_t)
                                last_n, last_t = stats["fed"], now
                            if not args.quiet:
                                live.update(_progress(stats, rate, now - started))
                    scope.cancel()
        stats = recorder.stats()
    elapsed = time.monotonic() - started
    console.print(_progress(stats, stats["fed"] / elapsed if elapsed else 0.0, elapsed))
    summary = {k: stats[k] for k in ("fed", "dropped", "gaps", "rows", "error")}
    summary["files"] = stats["parquet_files"] + stats["raw_files"]
    summary["bytes"] = stats["parquet_bytes"] + stats["raw_bytes"]
    print(json.dumps(summary), flush=True)
    return 1 if stats["error"] else 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    # Ctrl-C or SIGTERM ends the recording like --duration does: flushed, summarised.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _utc(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).isoformat(
        timespec="milliseconds"
    )


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ._read import Recording
    from ._writer import rebuild

    if args.rebuild:
        rows = rebuild(args.dir)
        print(f"rebuilt the tables from the raw layer: {rows}", file=sys.stderr)
    rec = Recording(args.dir)
    summary = rec.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    meta = rec.metadata()
    first, last = summary["first_ns"], summary["last_ns"]
    span = (last - first) / 1e9 if first is not None and last is not None else 0.0
    console = Console()
    console.print(
        f"[bold]{args.dir}[/bold]: {_utc(first)} to {_utc(last)} ({span:,.1f} s), "
        f"symbols {', '.join(summary['symbols']) or '-'}"
        + (f", gateway {meta['gateway_url']}" if meta.get("gateway_url") else "")
    )
    table = Table()
    for col, justify in (
        ("table", "left"),
        ("rows", "right"),
        ("files", "right"),
        ("MB", "right"),
        ("symbols", "left"),
        ("first (UTC)", "left"),
        ("last (UTC)", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, info in summary["tables"].items():
        table.add_row(
            name,
            f"{info['rows']:,}",
            str(info["files"]),
            _mb(info["bytes"]),
            ",".join(info["symbols"]),
            _utc(info["first_ns"]),
            _utc(info["last_ns"]),
        )
    raw = summary["raw"]
    table.add_row("raw", "", str(raw["files"]), _mb(raw["bytes"]), "", "", "")
    console.print(table)
    return 0
