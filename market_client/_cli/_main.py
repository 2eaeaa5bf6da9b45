"""``market-client``: parse, run one command, turn failures into one line that says what to do."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus
from rich.console import Console

from .._exceptions import AuthError, GatewayError, MarketClientError
from ..recording import _cli as recording_cli
from ..simulator import __main__ as sim_main
from . import _backtest as backtest_cli
from ._commands import NotLoggedIn, identity_of, run_command
from ._demo import run_demo
from ._output import Output
from ._parser import parse
from ._profiles import ProfileError

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["main"]

T = TypeVar("T")
INTERRUPTED = 130  # 128 + SIGINT, what shells expect from a program ended by Ctrl-C

# Hints added to a gateway's error code: what to do next.
_NEXT_STEP = {
    "unknown_symbol": "`market-client symbols` lists the symbols",
    "not_found": "`market-client orders --all` lists your orders",
    "invalid_price": "the price must be on the symbol's tick (`market-client symbols`)",
    "invalid_qty": "the quantity must be a multiple of the symbol's lot (`market-client symbols`)",
    "halted": "the symbol is halted; try again once it trades",
    "rate_limited": "slow down and try again",
    "too_many_orders": "cancel some open orders first (`market-client orders`)",
}


async def _until_interrupted(
    fn: Callable[[anyio.Event], Awaitable[T]], state: dict[str, bool]
) -> T | None:
    """Run ``fn(stop)``; the first Ctrl-C sets ``stop`` and cancels, so everything closes.

    The demo watches ``stop`` to end cleanly with its summary; other commands are
    cancelled. A second Ctrl-C is not needed: the cancellation is final.
    """
    stop = anyio.Event()
    result: T | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def watch_sigint(*, task_status: TaskStatus[None]) -> None:
            try:
                receiver = anyio.open_signal_receiver(signal.SIGINT)
            except NotImplementedError:  # no signal support (asyncio on Windows)
                task_status.started()
                return
            with receiver as signals:
                task_status.started()
                async for _ in signals:
                    state["interrupted"] = True
                    stop.set()
                    if not state.get("graceful"):
                        tg.cancel_scope.cancel()
                    return

        await tg.start(watch_sigint)
        try:
            result = await fn(stop)
        except Exception as exc:
            # Raised as itself after the task group, not wrapped in an exception group.
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return result


def _only_interrupts(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


def _only_broken_pipe(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_broken_pipe(e) for e in exc.exceptions)
    return isinstance(exc, BrokenPipeError) or (
        isinstance(exc, SystemExit) and isinstance(exc.__context__, BrokenPipeError)
    )


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def _message(exc: BaseException, args: argparse.Namespace) -> str:
    if isinstance(exc, AuthError):
        try:
            ident = identity_of(args)
        except ProfileError:
            return str(exc)
        if ident.source in ("--token", "MARKET_CLIENT_TOKEN"):
            return (
                f"the gateway at {ident.url} does not know the token given by {ident.source}: "
                "check it, or leave it out to act as the saved profile"
            )
        return (
            f"the gateway at {ident.url} does not know the token of profile {ident.profile!r} "
            "(a gateway restarted without --secret forgets its users): run `market-client login"
            + (f" --url {ident.url}" if args.url else "")
            + "` again for a new user"
        )
    if isinstance(exc, GatewayError) and exc.code in _NEXT_STEP:
        return f"{exc}; {_NEXT_STEP[exc.code]}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``market-client``; returns the exit status.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 on a failure (one line on stderr), 2 on bad usage,
        130 after Ctrl-C.
    """
    args = parse(list(argv) if argv is not None else None)
    if args.command == "sim":
        return sim_main.run(args)
    if args.command in recording_cli.COMMANDS:
        return recording_cli.run(args)
    if args.command in backtest_cli.COMMANDS:
        return backtest_cli.run(args)
    state: dict[str, bool] = {"interrupted": False}
    try:
        if args.command == "demo":
            return _demo(args, state)
        out = Output(args.json)

        async def command(stop: anyio.Event) -> None:
            await run_command(args, out)

        anyio.run(_until_interrupted, command, state, backend=args.backend)
    except BaseException as exc:
        if _only_interrupts(exc):
            return INTERRUPTED
        if _only_broken_pipe(exc):
            # The reader of our output went away (`| head`): nothing to say, to nobody.
            _quiet_stdout()
            return 1
        if not isinstance(exc, Exception) or args.debug:
            raise
        if isinstance(
            exc, (MarketClientError, NotLoggedIn, ProfileError, ValueError, LookupError, OSError)
        ):
            print(f"market-client: {_message(exc, args)}", file=sys.stderr)
            return 1
        raise
    return INTERRUPTED if state["interrupted"] else 0


def _demo(args: argparse.Namespace, state: dict[str, bool]) -> int:
    console = Console()
    state["graceful"] = True

    async def demo(stop: anyio.Event) -> dict[str, Any]:
        return await run_demo(args.url, args.duration, args.flow_hz, console, stop)

    summary = anyio.run(_until_interrupted, demo, state, backend=args.backend)
    if summary:
        if console.is_terminal and not args.json:
            console.print(
                f"[b]summary[/b]  {summary['md_messages']:,} MD messages, "
                f"{summary['requests']:,} requests, {summary['order_events']:,} order events, "
                f"{summary['resyncs']} resyncs"
            )
        else:
            print(json.dumps(summary, default=str), flush=True)
    return INTERRUPTED if state["interrupted"] else 0
