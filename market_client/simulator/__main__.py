"""``python -m market_client.simulator``: serve the simulator gateway."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import anyio

from ._replay import parse_time
from ._server import SimulatorConfig, serve_forever


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options, shared with ``market-client sim``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port, 0 for any (default 8000)")
    parser.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="handshaking with this token yields the admin user",
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="N", help="seed of the order flow"
    )
    parser.add_argument(
        "--flow-hz",
        type=float,
        default=20.0,
        metavar="RATE",
        help="background flow actions per second, 0 for none (default 20)",
    )
    parser.add_argument(
        "--symbols",
        default=None,
        help="ABC,XYZ or SYM:tick:price[:lot] specs (default ABC,XYZ,QQQ,ETH)",
    )
    parser.add_argument(
        "--secret",
        default=None,
        help="token signing key; restart with the same one to resume users",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="HZ",
        help="requests per second per user (default: no limit)",
    )
    parser.add_argument(
        "--max-open-orders",
        type=int,
        default=SimulatorConfig().max_open_orders,
        metavar="N",
        help="live orders per user; one more is rejected with too_many_orders (default 1000)",
    )
    parser.add_argument(
        "--max-users",
        type=int,
        default=SimulatorConfig().max_users,
        metavar="N",
        help="users remembered at once; the longest idle one is forgotten (default 10000)",
    )
    parser.add_argument(
        "--replay",
        default=None,
        metavar="DIR",
        help="serve this recording instead of a simulated market (see docs/backtesting.md)",
    )
    parser.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="1|10|max",
        help="replay pace: recorded seconds per second, or max (as fast as the slowest "
        "subscriber reads); default 1",
    )
    parser.add_argument(
        "--from",
        dest="replay_from",
        type=_time,
        default=None,
        metavar="T",
        help="replay from this receive time (ISO 8601, UTC unless given, or ns since the epoch)",
    )
    parser.add_argument(
        "--to", dest="replay_to", type=_time, default=None, metavar="T", help="replay up to T"
    )
    parser.add_argument("--certfile", default=None, help="PEM certificate, to serve https/wss")
    parser.add_argument("--keyfile", default=None, help="PEM private key, with --certfile")
    parser.add_argument(
        "--backend",
        choices=("trio", "asyncio"),
        default="asyncio",
        help="event loop to serve on (default asyncio: measured about twice "
        "as fast for this server, see docs/benchmarks.md)",
    )


def _speed(text: str) -> float:
    if text == "max":
        return math.inf
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"speed must be a positive number or max, got {text!r}")
    return value


def _time(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def config_from(args: argparse.Namespace) -> SimulatorConfig:
    """Build a `SimulatorConfig` from parsed arguments."""
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        admin_token=args.admin_token,
        seed=args.seed,
        flow_hz=args.flow_hz,
        symbols=args.symbols,
        secret=args.secret,
        rate_limit_hz=args.rate_limit,
        max_open_orders=args.max_open_orders,
        max_users=args.max_users,
        certfile=args.certfile,
        keyfile=args.keyfile,
        replay=args.replay,
        speed=args.speed,
        replay_from=args.replay_from,
        replay_to=args.replay_to,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; returns the exit status."""
    try:
        config = config_from(args)
        config.symbol_specs()
    except ValueError as exc:
        print(f"market-client sim: {exc}", file=sys.stderr)
        return 2
    try:
        anyio.run(serve_forever, config, backend=args.backend)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(
            f"market-client sim: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m market_client.simulator``."""
    parser = argparse.ArgumentParser(
        prog="python -m market_client.simulator",
        description="Serve the market_client simulator gateway.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
