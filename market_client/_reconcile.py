"""Reconciling the own orders after a reconnect: the one task that asks the gateway.

`Reconciler` is started in the session's task group whenever the CMD link
came back or private events were missed. It asks ``order.list`` and, for
every order that changed while the session could not see it (see
`OwnOrders.to_check`), ``order.history``; it then hands an
``order.reconciled`` event per such order, carrying the order as the gateway
has it now and its fills, to the session's delivery (ring buffer,
``events()``, hooks). A reconnect that comes while it runs makes it run
again. A run that fails (the link dropped again, a timeout, an error from
the gateway) is retried with backoff while the session lives: it is never
fatal, and it is not left to a reconnect that may not come.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._exceptions import GatewayError, MarketClientError, SessionClosed
from ._private import OwnOrders
from ._protocol import PROTOCOL_VERSION
from ._reconnect import ReconnectPolicy

__all__ = ["Reconciler"]

log = logging.getLogger("market_client")


class Reconciler:
    """Runs reconciliations one at a time, coalescing the requests for one.

    Args:
        orders: The own orders to reconcile.
        send: Sends a CMD request.
        deliver: Hands a private event frame to the session.
        retry: The backoff between failed runs.
    """

    def __init__(
        self,
        orders: OwnOrders,
        *,
        send: Callable[..., Awaitable[dict[str, Any]]],
        deliver: Callable[[dict[str, Any]], None],
        retry: ReconnectPolicy | None = None,
    ) -> None:
        self._orders = orders
        self._send = send
        self._deliver = deliver
        self._retry = retry or ReconnectPolicy()
        self._running = False
        self._again = False
        self.runs = 0
        self.failures = 0
        self.reconciled = 0

    def want(self, tg: TaskGroup) -> None:
        """Reconcile soon, in ``tg``: now, or again after the run under way."""
        if self._running:
            self._again = True
        else:
            self._running = True
            tg.start_soon(self._run)

    async def _run(self) -> None:
        failed = 0
        try:
            while True:
                self._again = False
                self.runs += 1
                try:
                    await self._once()
                except SessionClosed:
                    return
                except MarketClientError as exc:
                    failed += 1
                    self.failures += 1
                    log.warning("reconciling own orders failed (%s); retrying", exc)
                    await anyio.sleep(self._retry.delay(failed))
                    self._again = True
                else:
                    failed = 0
                if not self._again:
                    return
        finally:
            self._running = False

    async def _once(self) -> None:
        listed = await self._send("order.list", {"status": "open"})
        for order_id in self._orders.to_check(listed.get("orders", [])):
            try:
                history = await self._send("order.history", {"order_id": order_id})
            except GatewayError as exc:
                if exc.code != "not_found":
                    raise
                # The gateway restarted and forgot it: it is not open there.
                self._orders.forget(order_id)
                log.warning("order %s is unknown to the gateway after a reconnect", order_id)
                continue
            if not self._orders.settle(history.get("order")):
                continue  # an event told us meanwhile: nothing the user missed
            self.reconciled += 1
            self._deliver(
                {
                    "type": "event",
                    "ver": PROTOCOL_VERSION,
                    "event": "order.reconciled",
                    "seq": None,
                    "payload": {"order": history.get("order"), "fills": history.get("fills", [])},
                }
            )
