"""``Simulator``: the gateway running in-process for a test, with its fault knobs."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from .._exceptions import GatewayError

if TYPE_CHECKING:
    # Imported when a simulator starts, not with the plugin: Hypercorn and
    # Starlette cost a test suite that never starts one.
    from ..simulator import Exchange, Faults, GatewayStats, RunningSimulator, SimulatorConfig

__all__ = ["Simulator", "open_simulator"]

#: What a bot's test wants unless it asks otherwise: a market that does not move
#: by itself, and the same one at every run.
TEST_DEFAULTS: Mapping[str, object] = {"seed": 1, "flow_hz": 0.0}


class Simulator:
    """The simulator gateway running in-process for one test, and the knobs to drive it.

    Yielded by the ``simulator`` pytest fixture and by `open_simulator`. Point
    the code under test at ``url``; then make the gateway misbehave and check
    how the code reacts. Every knob but ``faults`` is the admin op of the same
    name (docs/protocol.md) sent over HTTP with the admin token the simulator
    was started with; when the ``await`` returns, the gateway has applied it.

    Attributes:
        url: Base URL of the gateway, e.g. ``http://127.0.0.1:49152``.
        admin_token: The admin token (random unless the test chose one).
        running: The in-process server, for what the wire does not show.
    """

    def __init__(self, running: RunningSimulator, admin_token: str) -> None:
        self.running = running
        self.url = running.url
        self.admin_token = admin_token
        self._http: httpx.AsyncClient | None = None

    @property
    def faults(self) -> Faults:
        """Ops the gateway answers late, never, or with an error, changed in place.

        ``faults.delay[op] = seconds`` answers ``op`` late, ``faults.drop.add(op)``
        never answers it, ``faults.fail.add(op)`` answers ``internal``; changes
        take effect at once and ``faults.clear()`` ends them all.
        """
        return self.running.faults

    @property
    def exchange(self) -> Exchange:
        """The engine state: users, their orders, books and candles."""
        return self.running.exchange

    @property
    def stats(self) -> GatewayStats:
        """Gateway counters, e.g. ``cmd_connections`` and ``md_connections`` open now."""
        return self.running.stats

    async def admin(self, op: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send one request as the admin user and return its reply payload.

        Args:
            op: The op, e.g. ``"admin.halt"`` (any op works; it runs as the admin user).
            payload: The op's payload.

        Returns:
            The response's payload.

        Raises:
            GatewayError: The gateway answered with an error.
        """
        if self._http is None:
            # The gateway is the one this process started, on a local port:
            # nothing to verify (a TLS one has a test certificate), and loading
            # the CA bundle would cost 0.2 s a test.
            self._http = httpx.AsyncClient(
                base_url=self.url,
                headers={"X-Auth-Token": self.admin_token},
                timeout=10,
                verify=False,
            )
        body = {"op": op, "payload": dict(payload or {}), "as": "admin"}
        reply: dict[str, Any] = (await self._http.post("/api/request", json=body)).json()
        if reply.get("status") != "ok":
            error = reply.get("error") or {}
            raise GatewayError(
                str(error.get("code", "internal")), str(error.get("message", "")), op, reply
            )
        payload_out: dict[str, Any] = reply.get("payload") or {}
        return payload_out

    async def halt(self, sym: str) -> None:
        """Halt a symbol: its resting orders are cancelled, new ones rejected with ``halted``.

        Args:
            sym: The symbol.
        """
        await self.admin("admin.halt", {"sym": sym})

    async def resume(self, sym: str) -> None:
        """Resume trading in a halted symbol.

        Args:
            sym: The symbol.
        """
        await self.admin("admin.resume", {"sym": sym})

    async def md_gap(self, sym: str, count: int = 1) -> None:
        """Skip the next ``count`` market-data increments of ``sym`` (their ``seq`` is used).

        A client sees the gap at the next increment and must resync the book.

        Args:
            sym: The symbol.
            count: How many increments (``book.delta`` and ``trade``) to leave out.
        """
        await self.admin("admin.md_gap", {"sym": sym, "count": count})

    async def disconnect(self, user_id: str | None = None) -> None:
        """Close a user's (or every) CMD and MD socket with code 1012.

        Args:
            user_id: The user (``client.user_id``); None for everyone.
        """
        payload = {} if user_id is None else {"user_id": user_id}
        await self.admin("admin.disconnect", payload)

    async def flow(self, rate_hz: float) -> None:
        """Set the background order flow, in actions a second (0 stops it).

        Args:
            rate_hz: The rate.
        """
        await self.admin("admin.flow", {"rate_hz": rate_hz})

    async def stall_md(self, seconds: float) -> None:
        """Send no market data nor heartbeats for ``seconds``; the sockets stay open.

        A client notices by its heartbeat timeout. 0 ends a stall.

        Args:
            seconds: How long.
        """
        await self.admin("admin.fault", {"fault": "md_stall", "seconds": seconds})

    async def inject(
        self,
        kind: str,
        *,
        channel: str = "cmd",
        user_id: str | None = None,
        sym: str | None = None,
    ) -> int:
        """Send one malformed frame.

        Kinds: ``not_json``, ``not_object``, ``wrong_types``, ``unknown_type``,
        ``unknown_corr_id`` and ``oversized`` go to sockets of ``channel``;
        ``bad_price`` publishes a ``book.delta`` of ``sym`` whose price does
        not parse (with the next real ``seq``) to its MD subscribers.

        Args:
            kind: The kind of frame.
            channel: ``"cmd"`` or ``"md"``.
            user_id: Only that user's sockets; None for every one.
            sym: The symbol, for ``bad_price``.

        Returns:
            How many sockets got it (-1 for ``bad_price``, which is published).
        """
        payload: dict[str, Any] = {"fault": "frame", "kind": kind}
        if kind == "bad_price":
            payload["sym"] = sym
        else:
            payload["channel"] = channel
            if user_id is not None:
                payload["user_id"] = user_id
        reply = await self.admin("admin.fault", payload)
        return int(reply.get("sockets", -1))

    async def _aclose(self) -> None:
        if self._http is not None:
            with anyio.CancelScope(shield=True):
                await self._http.aclose()
            self._http = None

    def __repr__(self) -> str:
        return f"<Simulator {self.url}>"


def fixture_config(**options: Any) -> SimulatorConfig:
    """A `SimulatorConfig` with the test defaults (seed 1, no background flow) and ``options``.

    The ``simulator`` fixture builds its config here from the marker's options.

    Args:
        **options: Fields of `SimulatorConfig` (seed, flow_hz, symbols, ...).

    Returns:
        The config, with a random admin token unless ``options`` gave one.

    Raises:
        TypeError: An option that `SimulatorConfig` does not have.
    """
    from ..simulator import SimulatorConfig

    known = {f.name for f in dataclasses.fields(SimulatorConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"unknown simulator option(s) {', '.join(unknown)}; "
            f"the options are the fields of SimulatorConfig: {', '.join(sorted(known))}"
        )
    merged = {**TEST_DEFAULTS, **options}
    if merged.get("admin_token") is None:
        merged["admin_token"] = secrets.token_urlsafe(16)
    return SimulatorConfig(**merged)


@contextlib.asynccontextmanager
async def open_simulator(config: SimulatorConfig | None = None) -> AsyncIterator[Simulator]:
    """Run the simulator gateway in-process for the duration of an ``async with`` block.

    The gateway serves on a free port of 127.0.0.1, on the running backend
    (Trio or asyncio), and accepts connections as soon as the block starts.
    This is what the ``simulator`` fixture does; use it directly for a
    second gateway in a test, or outside pytest:

    ```python
    async with open_simulator(SimulatorConfig(seed=1, flow_hz=0, symbols="ABC")) as sim:
        async with MarketClient.session(sim.url) as client:
            ...
    ```

    Args:
        config: The gateway's options, used as they are; None for the test
            defaults (seed 1, no background flow). A config without an admin
            token gets a random one.

    Yields:
        The running `Simulator`.
    """
    from ..simulator import serve

    if config is None:
        config = fixture_config()
    token = config.admin_token or secrets.token_urlsafe(16)
    config = dataclasses.replace(config, admin_token=token)
    async with serve(config) as running:
        sim = Simulator(running, token)
        try:
            yield sim
        finally:
            await sim._aclose()
