"""Serving the gateway with Hypercorn on the running backend (Trio or asyncio)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import anyio
import sniffio
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app

from .._wire import CMD_FRAME_LIMIT
from ._app import Gateway, GatewayStats
from ._exchange import Exchange, Faults, Limits, SymbolSpec, parse_symbols
from ._replay import ReplaySource, recording_specs
from ._replay_app import ReplayGateway

__all__ = ["RunningSimulator", "SimulatorConfig", "serve", "serve_forever"]

_DEFAULT_LIMITS = Limits()


@dataclass
class SimulatorConfig:
    """Options of the simulator, the same from the shell and from Python.

    Attributes:
        host: Interface to bind.
        port: TCP port; 0 picks a free one.
        admin_token: Handshaking with this token yields the admin user.
        seed: Seed of the background flow (None: random).
        flow_hz: Background flow actions per second; 0 stops it.
        symbols: ``"ABC,XYZ"`` names or ``SYM:tick:price[:lot]`` specs (None: the defaults).
        secret: Key that signs tokens; restart with the same one to resume users.
        rate_limit_hz: Requests per second per user; None for no limit.
        queue_size: Messages buffered per socket before a slow consumer is cut off (1013).
        certfile: PEM certificate for HTTPS/WSS (with ``keyfile``).
        keyfile: PEM private key for HTTPS/WSS.
        send_buffer: ``SO_SNDBUF`` of accepted sockets in bytes (None: the OS
            default). A small one makes a slow consumer's backlog reach the
            gateway's queue sooner; tests of the 1013 rule use it.
        max_open_orders: Live orders per user; one more GTC limit order is
            rejected with ``too_many_orders``.
        max_users: Users remembered at once; the longest idle one (no open
            order, no socket) is forgotten to make room.
        replay: Serve this recording (a ``record=`` folder) instead of a
            simulated market: its MD with the recorded ``seq``, the user's
            orders filled by the queue model of docs/backtesting.md. The
            background flow is off; ``symbols`` names the symbols to replay.
        speed: Replay pace, recorded seconds per second (``math.inf``: as fast
            as the slowest subscriber reads).
        replay_from: First receive time to send, ns since the epoch (None: the start).
        replay_to: Last receive time to send, ns since the epoch (None: the end).
    """

    host: str = "127.0.0.1"
    port: int = 0
    admin_token: str | None = None
    seed: int | None = None
    flow_hz: float = 20.0
    symbols: str | Iterable[str] | None = None
    secret: str | None = None
    rate_limit_hz: float | None = None
    queue_size: int = 10_000
    certfile: str | None = None
    keyfile: str | None = None
    send_buffer: int | None = None
    max_open_orders: int = _DEFAULT_LIMITS.max_open_orders
    max_users: int = _DEFAULT_LIMITS.max_users
    replay: str | os.PathLike[str] | None = None
    speed: float = 1.0
    replay_from: int | None = None
    replay_to: int | None = None

    def symbol_specs(self) -> tuple[SymbolSpec, ...]:
        """The parsed symbol list (of the recording, when replaying).

        Raises:
            ValueError: A symbol is malformed or not in the recording.
        """
        if self.replay is not None:
            names = None if self.symbols is None else _names(self.symbols)
            return recording_specs(self.replay, names)
        return parse_symbols(self.symbols)


def _names(symbols: str | Iterable[str]) -> list[str]:
    parts = symbols.split(",") if isinstance(symbols, str) else list(symbols)
    return [p.strip() for p in parts if p.strip()]


@dataclass
class RunningSimulator:
    """A simulator gateway serving on a real socket.

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:49152``.
        gateway: The ASGI gateway (its ``exchange`` is the engine state).
        config: What it was started with.
    """

    url: str
    gateway: Gateway
    config: SimulatorConfig
    _shutdown: anyio.Event = field(default_factory=anyio.Event, repr=False)

    @property
    def exchange(self) -> Exchange:
        """The engine state: users, books, candles (for tests and tools)."""
        return self.gateway.exchange

    @property
    def faults(self) -> Faults:
        """Fault knobs: delayed, dropped or failing ops."""
        return self.gateway.exchange.faults

    @property
    def stats(self) -> GatewayStats:
        """Gateway counters."""
        return self.gateway.stats

    @property
    def admin_token(self) -> str | None:
        """The admin token, if one was configured."""
        return self.config.admin_token

    def set_flow(self, rate_hz: float) -> None:
        """Change the background flow rate (0 stops it)."""
        self.gateway.set_flow(rate_hz)

    def disconnect(self, user_id: str | None = None) -> None:
        """Close one user's (or every) socket with 1012, like ``admin.disconnect``."""
        self.gateway.disconnect(user_id)

    def stall_md(self, seconds: float) -> None:
        """Send no market data nor heartbeats for ``seconds``, like ``admin.fault md_stall``."""
        self.gateway.stall_md(seconds)

    def inject(self, kind: str, *, channel: str = "cmd", user_id: str | None = None) -> int:
        """Send one malformed frame (``not_json``, ``oversized``, ...) on ``channel``.

        Returns how many sockets got it. See ``admin.fault`` in docs/protocol.md.
        """
        return self.gateway.inject(channel, kind, user_id)

    def close(self) -> None:
        """Ask the server to stop; `serve` returns once it has."""
        self._shutdown.set()


def _hypercorn_config(config: SimulatorConfig) -> HypercornConfig:
    hc = HypercornConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.port}"]
    hc.websocket_max_message_size = CMD_FRAME_LIMIT
    hc.graceful_timeout = 0.5
    hc.accesslog = None
    hc.errorlog = logging.getLogger("market_client.simulator.hypercorn")
    if config.certfile:
        hc.certfile = config.certfile
        hc.keyfile = config.keyfile
    return hc


@contextlib.asynccontextmanager
async def serve(
    config: SimulatorConfig | None = None, **options: object
) -> AsyncIterator[RunningSimulator]:
    """Run the simulator gateway for the duration of an ``async with`` block.

    Binds before yielding (port 0 picks a free port), so ``sim.url`` accepts
    connections at once. Works under Trio and asyncio: Hypercorn runs on the
    backend that is running. Leaving the block stops the server and closes
    every connection.

    Args:
        config: Options; or give them as keyword arguments instead.
        **options: Fields of `SimulatorConfig`.

    Yields:
        The running simulator, with its ``url``.

    For example:

    ```python
    async with serve(seed=1, flow_hz=0) as sim:
        async with MarketClient.session(sim.url) as client:
            ...
    ```

    """
    if config is None:
        config = SimulatorConfig(**options)  # type: ignore[arg-type]
    elif options:
        raise TypeError("give either a SimulatorConfig or keyword options, not both")
    limits = Limits(max_open_orders=config.max_open_orders, max_users=config.max_users)
    gateway: Gateway
    if config.replay is not None:
        gateway = ReplayGateway(
            ReplaySource(
                config.replay,
                symbols=None if config.symbols is None else _names(config.symbols),
                start_ns=config.replay_from,
                end_ns=config.replay_to,
            ),
            speed=config.speed,
            admin_token=config.admin_token,
            secret=config.secret.encode() if config.secret else None,
            rate_limit_hz=config.rate_limit_hz,
            queue_size=config.queue_size,
            limits=limits,
        )
    else:
        gateway = Gateway(
            config.symbol_specs(),
            admin_token=config.admin_token,
            secret=config.secret.encode() if config.secret else None,
            seed=config.seed,
            flow_hz=config.flow_hz,
            rate_limit_hz=config.rate_limit_hz,
            queue_size=config.queue_size,
            limits=limits,
        )
    hc = _hypercorn_config(config)
    sockets = hc.create_sockets()
    listening = sockets.secure_sockets or sockets.insecure_sockets
    for sock in listening:
        if config.send_buffer:
            # Accepted sockets inherit the listener's buffer sizes (Linux, BSD).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.send_buffer)
        sock.listen(hc.backlog)
    host, port = listening[0].getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if sockets.secure_sockets else "http"
    sim = RunningSimulator(f"{scheme}://{host}:{port}", gateway, config)
    worker_serve: Any
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio.run import worker_serve
    else:
        from hypercorn.asyncio.run import worker_serve
    runner = partial(
        worker_serve,
        wrap_app(cast(Any, gateway.app), hc.wsgi_max_body_size, "asgi"),
        hc,
        sockets=sockets,
        shutdown_trigger=sim._shutdown.wait,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner)
            try:
                yield sim
            finally:
                sim.close()
    finally:
        for sock in listening:
            sock.close()


async def serve_forever(config: SimulatorConfig, *, announce: bool = True) -> None:
    """Serve until cancelled (Ctrl-C); prints the URL when ``announce``."""
    async with serve(config) as sim:
        if announce:
            print(f"market_client simulator serving on {sim.url}", flush=True)
            symbols = ", ".join(sim.exchange.symbols)
            if config.replay is not None:
                speed = "max" if config.speed == float("inf") else f"{config.speed:g}x"
                print(
                    f"replaying {os.fspath(config.replay)} at {speed} ({symbols}); "
                    "it starts when the first MD subscriber connects; Ctrl-C to stop",
                    flush=True,
                )
            else:
                print(f"symbols: {symbols}; flow {config.flow_hz:g}/s; Ctrl-C to stop", flush=True)
        await sim._shutdown.wait()
