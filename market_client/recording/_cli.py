"""``market-client record`` and ``market-client recording``: record a gateway, show a folder."""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = ("record", "recording")


def _positive(text: str) -> float:
    """A positive number of seconds or MB (argparse's ``type``: a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def _intervals(text: str) -> list[int]:
    """``1000,60000``: candle intervals in whole milliseconds."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) <= 0:
            raise argparse.ArgumentTypeError(
                f"candle intervals are whole milliseconds above 0 (1000 for 1 s), got {part!r}"
            )
        out.append(int(part))
    return out


def _symbols(text: str) -> list[str] | None:
    """``ABC,XYZ`` (spaces around a name are dropped); None for an empty list."""
    names = [name.strip() for name in text.split(",")]
    return [name for name in names if name] or None


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
    rec.add_argument(
        "--symbols", type=_symbols, default=None, help="comma-separated symbols (default: all)"
    )
    rec.add_argument(
        "--duration", type=_positive, default=None, help="seconds (default: until Ctrl-C)"
    )
    rec.add_argument(
        "--token",
        default=keep,
        help="record as the user this token resumes (default: MARKET_CLIENT_TOKEN, "
        "else the profile's, as every command)",
    )
    rec.add_argument(
        "--profile", default=keep, metavar="NAME", help="the saved identity (see `login`)"
    )
    rec.add_argument(
        "--candles", type=_intervals, default=[], help="candle intervals in ms, e.g. 1000,60000"
    )
    rec.add_argument("--rotate-seconds", type=_positive, default=60.0, help="file rotation age")
    rec.add_argument("--rotate-mb", type=_positive, default=64.0, help="file rotation size")
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
            if Path(args.out).exists() and not Path(args.out).is_dir():
                raise ValueError(f"--out {args.out} is a file: give a folder (created if needed)")
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

    symbols = args.symbols
    candles = args.candles
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
        if symbols:
            # Before the folder is made: a misspelt symbol leaves nothing behind.
            listed = [s["sym"] for s in await client.get_symbols()]
            unknown = [sym for sym in symbols if sym not in listed]
            if unknown:
                raise ValueError(
                    f"--symbols: the gateway has no {', '.join(unknown)}"
                    f" (it lists {', '.join(listed)})"
                )
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


def _utc_in_day(ns: int | None, day_of: int | None) -> str:
    """The time of day alone when it falls on the day of ``day_of`` (the heading has the date).

    Short enough for two such columns in an 80-column terminal.
    """
    if ns is None:
        return "-"
    when = datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc)
    if day_of is not None:
        day = datetime.datetime.fromtimestamp(day_of / 1e9, datetime.timezone.utc).date()
        if when.date() == day:
            return when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return when.strftime("%Y-%m-%d %H:%M:%S")


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
    if not summary["tables"] and not summary["raw"]["files"]:
        print(
            f"market-client: {args.dir} holds no recording (no raw files, no tables)",
            file=sys.stderr,
        )
        return 1
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
    # At 80 columns the names and times stay whole; the symbols fold onto more lines.
    for col, justify, width in (
        ("table", "left", 14),
        ("rows", "right", None),
        ("files", "right", None),
        ("MB", "right", None),
        ("symbols", "left", None),
        ("first (UTC)", "left", 12),
        ("last (UTC)", "left", 12),
    ):
        table.add_column(
            col,
            justify=justify,  # type: ignore[arg-type]
            min_width=width,
            no_wrap=width is not None,
            overflow="fold",
        )
    for name, info in summary["tables"].items():
        table.add_row(
            name,
            f"{info['rows']:,}",
            str(info["files"]),
            _mb(info["bytes"]),
            # "all": those of the heading; else the table's own.
            "all" if info["symbols"] == summary["symbols"] else ", ".join(info["symbols"]),
            _utc_in_day(info["first_ns"], first),
            _utc_in_day(info["last_ns"], first),
        )
    raw = summary["raw"]
    table.add_row("raw", "", str(raw["files"]), _mb(raw["bytes"]), "", "", "")
    console.print(table)
    return 0
