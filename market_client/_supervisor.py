"""The supervisor: runs one channel for the whole session, reconnecting it when it drops.

The backoff and the outage bookkeeping are sans-I/O (``_reconnect``); this
module is the loop that applies them. A `Supervisor` is started once per
channel in the session's task group with ``await tg.start(sup.run, connect)``;
each ``connect`` call is one connection that returns only by raising, and
owns (opens and closes) its socket.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ._exceptions import (
    AuthError,
    ConnectError,
    ConnectionLost,
    GatewayError,
    ReconnectFailed,
    RequestTimeout,
    unwrap,
)
from ._reconnect import LinkState, ReconnectPolicy

__all__ = ["Supervisor"]

log = logging.getLogger("market_client")


class Supervisor:
    """Keeps one channel up: the first connection's errors are raised as they are
    (the session does not open); later drops are retried with the policy's backoff
    until its deadline, then `ReconnectFailed` ends the session.

    Args:
        name: ``"cmd"`` or ``"md"``.
        policy: The backoff; None fails fast (the first drop ends the session).
        where: The gateway's URL, for messages.
        resume: Called before each reconnection attempt (a new handshake).
        on_lost: Called once when the link drops, with the error.
        on_restored: Called once when it is back, with the downtime in seconds.
        on_change: Called whenever the link goes up or down.
    """

    def __init__(
        self,
        name: str,
        *,
        policy: ReconnectPolicy | None,
        where: str,
        resume: Callable[[], Awaitable[None]],
        on_lost: Callable[[BaseException], None],
        on_restored: Callable[[float], None],
        on_change: Callable[[], None],
    ) -> None:
        self.name = name
        self.link = LinkState(name)
        self._policy = policy
        self._where = where
        self._resume = resume
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._on_change = on_change

    async def run(
        self, connect: Callable[..., Coroutine[Any, Any, Any]], *, task_status: TaskStatus[None]
    ) -> None:
        """Run ``connect`` again and again; ``task_status.started()`` after the first success."""
        link = self.link
        policy = self._policy
        started = False
        while True:
            try:
                if link.down_since is not None:
                    await self._resume()
                async with anyio.create_task_group() as tg:
                    await tg.start(connect)
                    downtime = link.restored(anyio.current_time())
                    self._on_change()
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        self._on_restored(downtime)
            except BaseException as exc:
                err = unwrap(exc)
                if not self._retry(err, started):
                    if err is exc:
                        raise
                    raise err from err.__cause__
                assert policy is not None
                now = anyio.current_time()
                if link.up:
                    link.lost(now, policy)
                    self._on_change()
                    self._on_lost(err)
                else:
                    link.failed_attempt()
                    log.info(
                        "reconnecting %s: attempt %d failed: %s", self.name, link.attempts, err
                    )
                if link.overdue(now, policy):
                    raise ReconnectFailed(
                        f"could not reconnect the {self.name.upper()} channel to {self._where} "
                        f"within {policy.deadline:g} s ({link.attempts} attempts; last error: "
                        f"{err}); is the gateway running?",
                        getattr(err, "code", None),
                    ) from err
                await anyio.sleep(policy.delay(link.attempts))

    def _retry(self, err: BaseException, started: bool) -> bool:
        """Whether ``err`` is a drop to reconnect after, rather than the session's end."""
        if (
            started
            and self._policy is not None
            and isinstance(err, (ConnectionLost, ConnectError, RequestTimeout))
            and not isinstance(err, ReconnectFailed)
        ):
            return True
        # During an outage the gateway may answer a half-started one with an
        # error (it is restarting): try again, unless it refused the token.
        return (
            self.link.down_since is not None
            and isinstance(err, GatewayError)
            and not isinstance(err, AuthError)
        )
