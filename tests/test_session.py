"""The session's own guarantees: lifecycle, a request path that cannot leak, reconciliation.

Against the real simulator, on Trio and asyncio.
"""

from __future__ import annotations

import gc
from decimal import Decimal

import anyio
import pytest

from market_client import Event, MarketClient, TooManyInFlight
from market_client._wire import CMD_FRAME_LIMIT
from market_client.testing import Simulator

from .support import FAST, anext_kind

pytestmark = pytest.mark.anyio


async def test_run_opens_the_session_in_a_task_group_the_caller_owns(
    sim: Simulator,
) -> None:
    async with anyio.create_task_group() as tg:
        client = await tg.start(MarketClient(sim.url, md=False).run)
        assert isinstance(client, MarketClient)
        assert await client.get_symbols()
        tg.cancel_scope.cancel()
    assert client.stats()["state"] == "closed"


def test_a_client_left_open_warns_when_collected() -> None:
    client = MarketClient("http://127.0.0.1:1")
    client._state = "open"  # as if opened and never closed
    del client
    with pytest.warns(ResourceWarning, match="never closed"):
        gc.collect()


def test_a_closed_or_unopened_client_does_not_warn() -> None:
    client = MarketClient("http://127.0.0.1:1")
    del client
    gc.collect()  # filterwarnings=error turns any warning into a failure


async def test_requests_that_cannot_be_encoded_leave_no_slot_behind(
    sim: Simulator,
) -> None:
    async with MarketClient.session(sim.url, md=False, max_pending=5) as client:
        for _ in range(10):
            with pytest.raises(ValueError, match="cannot be sent"):
                await client.send("order.place", {"sym": "ABC", "qty": 2**64})
        assert client.stats()["pending_requests"] == 0
        assert await client.get_symbols(force_refresh=True)


async def test_too_many_in_flight_takes_no_slot(sim: Simulator) -> None:
    sim.faults.delay["portfolio.get"] = 0.5
    async with MarketClient.session(sim.url, md=False, max_pending=2) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get_portfolio)
            tg.start_soon(client.get_portfolio)
            await _wait_pending(client, 2)
            with pytest.raises(TooManyInFlight):
                await client.get_portfolio()
        assert client.stats()["pending_requests"] == 0


async def _wait_pending(client: MarketClient, n: int) -> None:
    while client.stats()["pending_requests"] < n:
        await anyio.lowlevel.checkpoint()


async def test_a_request_over_the_frame_limit_raises_and_spares_the_others(
    sim: Simulator,
) -> None:
    sim.faults.delay["portfolio.get"] = 0.3
    async with MarketClient.session(sim.url, md=False) as client:
        async with anyio.create_task_group() as tg:
            results: list[object] = []

            async def slow() -> None:
                results.append(await client.get_portfolio())

            tg.start_soon(slow)
            await _wait_pending(client, 1)
            with pytest.raises(ValueError, match="frame limit"):
                await client.get_book("A" * (CMD_FRAME_LIMIT + 10))
        assert results and client.stats()["links"]["cmd"]["disconnects"] == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"qty": 2**64}, ValueError, "64-bit"),
        ({"qty": 0}, ValueError, "positive"),
        ({"price": "1e999999999"}, ValueError, "out of range"),
        ({"price": "1e30"}, ValueError, "out of range"),
        ({"price": 100.5}, TypeError, "never floats"),
        ({"price": "x" * 100}, ValueError, "characters"),
    ],
)
async def test_absurd_order_arguments_raise_before_anything_is_sent(
    sim: Simulator, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    async with MarketClient.session(sim.url, md=False) as client:
        before = client.stats()["requests"]
        args: dict[str, object] = {"price": "100.00", "qty": 1} | kwargs
        with pytest.raises(error, match=match):
            await client.place_order("ABC", "buy", **args)  # type: ignore[arg-type]
        assert client.stats()["requests"] == before


async def test_connection_lost_carries_an_int_code(sim: Simulator) -> None:
    async with (
        MarketClient.session(sim.url, md=False, reconnect=FAST) as client,
        client.events("connection") as events,
    ):
        await sim.disconnect(client.user_id)
        lost = await anext_kind(events, "connection.lost")
        await anext_kind(events, "connection.restored")
    assert lost.data["code"] == 1012


async def test_open_orders_follow_replies_and_events(sim: Simulator) -> None:
    async with (
        MarketClient.session(sim.url, md=False) as maker,
        MarketClient.session(sim.url, md=False) as taker,
    ):
        # 100.00 is inside the quiet simulator's 99.99 / 100.01 spread: the best ask.
        placed = await maker.place_order("ABC", "sell", "100.00", 5)
        other = await maker.place_order("ABC", "sell", "151.00", 1)
        assert [o["order_id"] for o in maker.open_orders()] == [
            placed["order"]["order_id"],
            other["order"]["order_id"],
        ]
        async with maker.events("order.fill") as fills:
            await taker.place_order("ABC", "buy", "100.00", 2)
            await anext_kind(fills, "order.fill")
        (partial, _) = maker.open_orders()
        assert partial["filled_qty"] == 2 and partial["status"] == "partially_filled"
        await maker.cancel_order(other["order"]["order_id"])
        assert maker.open_orders() == await maker.list_orders()


async def test_orders_filled_while_disconnected_are_reconciled(sim: Simulator) -> None:
    async with (
        MarketClient.session(sim.url, md=False, reconnect=FAST) as maker,
        MarketClient.session(sim.url, md=False) as taker,
    ):
        filled = await maker.place_order("ABC", "sell", "100.00", 3)  # the best ask
        kept = await maker.place_order("ABC", "sell", "152.00", 1)
        async with maker.events("order.reconciled", "connection", "events.missed") as events:
            # Keep the maker away while the taker trades with its order.
            sim.faults.delay["auth.login"] = 0.5
            await sim.disconnect(maker.user_id)
            await anext_kind(events, "connection.lost")
            await taker.place_order("ABC", "buy", "100.00", 3)
            sim.faults.clear()
            got: list[Event] = []
            with anyio.fail_after(10):
                async for evt in events:
                    if evt.kind == "order.reconciled":
                        got.append(evt)
                        break
        (reconciled,) = got
        order = reconciled.data["payload"]["order"]
        assert order["order_id"] == filled["order"]["order_id"]
        assert order["status"] == "filled"
        fills = reconciled.data["payload"]["fills"]
        assert sum(f["qty"] for f in fills) == 3
        assert {f["price"] for f in fills} == {"100.00"}
        assert maker.open_orders() == await maker.list_orders()
        assert [o["order_id"] for o in maker.open_orders()] == [kept["order"]["order_id"]]
        assert reconciled.data in maker.get_transactions()
        assert Decimal(order["price"]) == Decimal("100.00")


async def test_reconciliation_finds_an_order_placed_elsewhere_while_away(
    sim: Simulator,
) -> None:
    async with (
        MarketClient.session(sim.url, md=False, reconnect=FAST) as client,
        MarketClient.session(sim.url, token=client.token, md=False) as twin,
    ):
        async with client.events("order.reconciled", "connection") as events:
            sim.faults.delay["auth.login"] = 0.5  # the client stays away a while
            _drop_cmd_of(sim, client)  # the twin (same user) stays connected
            await anext_kind(events, "connection.lost")
            placed = await twin.place_order("ABC", "buy", "1.00", 1, client_order_id="twin")
            sim.faults.clear()
            evt = await anext_kind(events, "order.reconciled")
        assert evt.data["payload"]["order"]["order_id"] == placed["order"]["order_id"]
        assert client.open_orders() == await client.list_orders()


def _drop_cmd_of(sim: Simulator, client: MarketClient) -> None:
    """Close one session's CMD socket on the gateway, not the other sessions of its user."""
    current = client._cmd.current
    assert current is not None and current.login is not None
    sid = current.login["session_id"]
    conns = sim.running.gateway._cmd[client.user_id or ""]
    next(c for c in conns if c.session and c.session.session_id == sid).kill(1012, "test")
