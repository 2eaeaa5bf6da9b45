"""A dead gateway is noticed within the heartbeat limit on both links, whatever the deadlines.

The gateway runs in its own process and is frozen with SIGSTOP: its sockets
stay open and silent, as with a hung server or a cut network, which no close
frame or reset announces. Both backends.
"""

from __future__ import annotations

import signal
import sys

import anyio
import pytest

from market_client import ConnectionLost, MarketClient

from .support import FAST, SimProcess, anext_kind

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX"),
]

HEARTBEAT = 3.0  # the default
BOUND = HEARTBEAT + 1.0  # what docs/reliability.md promises


async def test_a_request_pending_on_a_frozen_gateway_fails_within_the_bound(
    anyio_backend: str,
) -> None:
    async with (
        SimProcess("--flow-hz", "0") as proc,
        MarketClient.session(proc.url, symbols=["ABC"], timeout=30, reconnect=FAST) as client,
        client.events("connection") as events,
    ):
        assert proc.process is not None
        proc.process.send_signal(signal.SIGSTOP)
        start = anyio.current_time()
        try:
            with pytest.raises(ConnectionLost):
                await client.get_portfolio()  # its own deadline is 30 s
            failed_after = anyio.current_time() - start
            lost = {(await anext_kind(events, "connection.lost")).data["channel"] for _ in "ab"}
            detected_after = anyio.current_time() - start
        finally:
            proc.process.send_signal(signal.SIGCONT)
        assert failed_after < BOUND
        assert lost == {"cmd", "md"} and detected_after < BOUND
        # The gateway is back: the session recovers on its own.
        restored = {(await anext_kind(events, "connection.restored")).data["channel"] for _ in "ab"}
        assert restored == {"cmd", "md"}
        assert await client.get_portfolio()
        assert client.best_bid_ask("ABC")["bid"] is not None
