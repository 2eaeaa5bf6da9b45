"""The command line: commands, their options, and values checked as they are parsed.

Global options (``--url``, ``--token``, ``--profile``, ``--json``, ``--debug``)
may come before or after the command: ``market-client --json book ABC`` and
``market-client book ABC --json`` are the same.
"""

from __future__ import annotations

import argparse
import re

from ..recording import _cli as recording_cli
from ..simulator import __main__ as sim_main
from . import _backtest as backtest_cli

__all__ = ["GLOBAL_DEFAULTS", "build_parser", "interval_ms", "positive_int"]

# Filled in after parsing: the options are SUPPRESSed in the parsers so that a value
# given before the command is not overwritten by the subcommand's default.
GLOBAL_DEFAULTS = {"url": None, "token": None, "profile": None, "json": False, "debug": False}

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_INTERVAL = re.compile(r"(\d+)(ms|s|m|h)?")


def interval_ms(text: str) -> int:
    """A candle interval: ``1s``, ``5s``, ``1m``, ``1h``, or plain milliseconds (``60000``).

    Raises:
        argparse.ArgumentTypeError: Not such a value, or not a whole number of
            seconds (the gateway keeps candles of whole seconds).
    """
    match = _INTERVAL.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an interval: use 1s, 5s, 1m, 1h or milliseconds such as 60000"
        )
    value = int(match.group(1)) * _UNITS[match.group(2) or "ms"]
    if value <= 0 or value % 1000:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of seconds: candles are 1s, 5s, 1m, 1h... "
            "(in milliseconds: a positive multiple of 1000)"
        )
    return value


def positive_int(text: str) -> int:
    """A positive integer (``--limit``, ``--depth``, quantities).

    Raises:
        argparse.ArgumentTypeError: Not a positive integer.
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _global_options(parser: argparse.ArgumentParser, *, gateway: bool = True) -> None:
    s = argparse.SUPPRESS
    if gateway:
        parser.add_argument(
            "--url",
            default=s,
            help="the gateway (default: the profile's, else http://127.0.0.1:8000)",
        )
        parser.add_argument(
            "--token",
            default=s,
            help="act as the user this token resumes (overrides MARKET_CLIENT_TOKEN and the "
            "profile)",
        )
        parser.add_argument(
            "--profile",
            default=s,
            metavar="NAME",
            help="the saved identity to use (default: 'default'; see `login`)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            default=s,
            help="print JSON lines (one object per line, wire shapes) instead of tables",
        )
    parser.add_argument("--debug", action="store_true", default=s, help="show tracebacks")


def _backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=("trio", "asyncio"), default="trio", help="event loop (default trio)"
    )


def _plain_price(text: str) -> str:
    """A price as people write it: digits and one point (``1e2`` is refused, not read as 100)."""
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a price: write it with digits and a point, e.g. 100.25"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    """The ``market-client`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="market-client",
        description="Client and simulator for the HFT gateway. Start with `market-client login` "
        "to keep one identity across commands.",
        epilog="Which token a command uses: the profile's (--profile, default 'default'), "
        "overridden by MARKET_CLIENT_TOKEN, overridden by --token.",
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, *, gateway: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _global_options(p, gateway=gateway)
        return p

    sim = command("sim", "serve the simulator gateway", gateway=False)
    sim_main.add_arguments(sim)
    recording_cli.add_commands(sub)
    backtest_cli.add_commands(sub)

    demo = command("demo", "live dashboard (against the embedded simulator unless --url)")
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds to run, then print a summary (default: until Ctrl-C)",
    )
    demo.add_argument("--flow-hz", type=float, default=60.0, help="embedded simulator's flow")
    _backend(demo)

    login = command("login", "create a user (or resume the profile's) and save its token")
    login.add_argument(
        "--new", action="store_true", help="create a new user even if the profile has one"
    )
    command("logout", "forget the profile's token")
    command("whoami", "show the user and gateway commands act as")
    command("symbols", "list symbols")
    book = command("book", "show a book as a two-sided ladder")
    book.add_argument("sym")
    book.add_argument("--depth", type=positive_int, default=10, help="levels a side (default 10)")
    candles = command("candles", "show candles")
    candles.add_argument("sym")
    candles.add_argument(
        "--interval",
        type=interval_ms,
        default=1000,
        help="1s, 5s, 1m, 1h or milliseconds (default 1s)",
    )
    candles.add_argument(
        "--limit", type=positive_int, default=20, help="how many candles (default 20)"
    )
    orders = command("orders", "list your open orders")
    orders.add_argument("--all", action="store_true", help="also filled and cancelled ones")
    place = command("place", "place an order (a market order when no price is given)")
    place.add_argument("sym")
    place.add_argument("side", choices=("buy", "sell"))
    place.add_argument("qty", type=positive_int)
    place.add_argument(
        "price", nargs="?", default=None, type=_plain_price, help="omit for a market order"
    )
    place.add_argument("--tif", default="GTC", choices=("GTC", "IOC", "FOK"))
    place.add_argument("--client-order-id", default=None, help="your id for the order")
    cancel = command("cancel", "cancel one of your open orders")
    cancel.add_argument("order_id")
    history = command("history", "one of your orders with all its fills")
    history.add_argument("order_id")
    command("portfolio", "your cash and positions")
    watch = command("watch", "stream a symbol's trades and top-of-book changes")
    watch.add_argument("sym")
    watch.add_argument(
        "--count", type=positive_int, default=None, help="stop after this many lines"
    )
    watch.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    for p in (login, sub.choices["logout"], sub.choices["whoami"], book, candles, orders):
        _backend(p)
    for p in (place, cancel, history, sub.choices["portfolio"], sub.choices["symbols"], watch):
        _backend(p)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and fill in the global options' defaults."""
    args = build_parser().parse_args(argv)
    for name, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args
