"""``market-client backtest bot.py --data DIR``: run a strategy file against a recording."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "add_commands", "load_strategy", "run"]

COMMANDS = ("backtest",)


def add_commands(sub: Any) -> None:
    """Add ``backtest`` to the ``market-client`` subparsers.

    Args:
        sub: What ``ArgumentParser.add_subparsers()`` returned.
    """
    bt = sub.add_parser(
        "backtest",
        help="run a strategy against a recording, on a virtual clock",
        description="Run `async def strategy(client)` from BOT (FILE.py or FILE.py:NAME) "
        "against the recording in --data, in one process, on a virtual clock "
        "(see docs/backtesting.md).",
    )
    bt.add_argument("bot", help="FILE.py (its `strategy` function) or FILE.py:NAME")
    bt.add_argument("--data", required=True, help="the recording folder")
    bt.add_argument("--symbols", default=None, help="comma-separated symbols (default: all)")
    bt.add_argument("--from", dest="start", default=None, metavar="T", help="start time")
    bt.add_argument("--to", dest="end", default=None, metavar="T", help="end time")
    bt.add_argument("--maker-fee-bps", default="0", help="fee on maker fills, basis points")
    bt.add_argument("--taker-fee-bps", default="0", help="fee on taker fills, basis points")
    bt.add_argument(
        "--resolution-ms", type=float, default=1.0, help="recorded time step (default 1 ms)"
    )
    bt.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    bt.add_argument("--png", default=None, metavar="FILE", help="write the equity curve here")
    bt.add_argument("--quiet", action="store_true", help="no progress on stderr")
    bt.add_argument("--backend", choices=("trio", "asyncio"), default="asyncio")


def load_strategy(spec: str) -> Any:
    """The strategy function named by ``FILE.py`` or ``FILE.py:NAME``.

    Raises:
        ValueError: No such file, or no such async function in it.
    """
    path_text, _, name = spec.partition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ValueError(f"no file {path_text!r}")
    module_spec = importlib.util.spec_from_file_location(f"_backtest_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"cannot load {path_text!r} as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.resolve().parent))  # its own imports, as `python FILE.py` has
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.resolve().parent))
    func = getattr(module, name or "strategy", None)
    if not inspect.iscoroutinefunction(func):
        raise ValueError(f"{path_text} has no `async def {name or 'strategy'}(client)`")
    return func


def run(args: argparse.Namespace) -> int:
    """Run ``backtest``; returns the exit status."""
    from rich.console import Console

    from ..backtest import run as run_backtest

    err = Console(stderr=True)
    try:
        if args.png:
            import matplotlib  # noqa: F401 - checked before a long run, not after
        strategy = load_strategy(args.bot)

        def progress(info: dict[str, Any]) -> None:
            if not args.quiet:
                err.print(
                    f"[dim]{info['recorded_seconds']:.1f} recorded s, {info['frames']:,} events, "
                    f"{info['frames_per_second']:,.0f} events/s[/dim]"
                )

        symbols = args.symbols.split(",") if args.symbols else None
        report = run_backtest(
            strategy,
            args.data,
            symbols=symbols,
            start=args.start,
            end=args.end,
            backend=args.backend,
            maker_fee_bps=args.maker_fee_bps,
            taker_fee_bps=args.taker_fee_bps,
            resolution_ms=args.resolution_ms,
            progress=progress,
        )
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        print(f"market-client backtest: {exc} (pip install matplotlib for --png)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"market-client backtest: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        Console().print(report.table())
    if args.png:
        report.plot(args.png)
        err.print(f"equity curve: {args.png}")
    return 0
