"""Fault injection against the real simulator: drops, stalls, restarts, bad frames.

Each test is bounded in time (conftest) and runs on Trio and asyncio.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from market_client import (
    AuthError,
    ConnectionLost,
    Event,
    GatewayError,
    MarketClient,
    ReconnectFailed,
    ReconnectPolicy,
)
from market_client.testing import Simulator, wait_until

from .conftest import ADMIN_TOKEN
from .support import FAST, BookProbe, SimProcess, anext_kind, assert_candles_match

pytestmark = pytest.mark.anyio


async def restored(events: Any, *channels: str) -> dict[str, Event]:
    """Wait for ``connection.restored`` of each channel; returns them by channel.

    Also checks that each was preceded by its ``connection.lost``.
    """
    seen: dict[str, Event] = {}
    lost: set[str] = set()
    with anyio.fail_after(10):
        async for evt in events:
            if evt.kind == "connection.lost":
                lost.add(evt.data["channel"])
            if evt.kind == "connection.restored":
                assert evt.data["channel"] in lost
                seen[evt.data["channel"]] = evt
                if set(channels) <= set(seen):
                    return seen
    raise AssertionError("the event stream ended")


@pytest.mark.simulator(seed=2, flow_hz=400)
async def test_disconnect_reconnects_both_channels_and_state_is_right(sim: Simulator) -> None:
    probe = BookProbe()
    async with MarketClient.session(
        sim.url, symbols=["ABC"], on_md_event=probe.hook, reconnect=FAST
    ) as client:
        await client.configure_candles("ABC", interval_ms=1000, depth=20)
        resting = await client.place_order("ABC", "buy", "1.00", 2, client_order_id="keep")
        async with client.events("connection") as events:
            await sim.disconnect(client.user_id)
            got = await restored(events, "cmd", "md")
        assert got["md"].data["reconnects"] == got["cmd"].data["reconnects"] == 1
        links = client.stats()["links"]
        for name in ("cmd", "md"):
            assert links[name]["up"] is True
            assert links[name]["disconnects"] == 1
            assert links[name]["reconnects"] == 1
            assert links[name]["last_downtime_s"] < 1.0
        # The same user, the same gateway: the order is still there.
        open_ids = [o["order_id"] for o in await client.list_orders()]
        assert resting["order"]["order_id"] in open_ids
        await probe.assert_matches(client, "ABC")  # while the flow runs
        await sim.flow(0)
        await assert_candles_match(client, "ABC", 1000, 20)
        assert client.stats()["pending_requests"] == 0


async def test_a_request_in_flight_fails_at_once_and_is_never_resent(
    sim: Simulator,
) -> None:
    async with MarketClient.session(sim.url, md=False, reconnect=FAST, timeout=10) as client:
        sim.faults.drop.add("order.place")  # the gateway never answers it
        failed_after: list[float] = []

        async def place() -> None:
            with pytest.raises(ConnectionLost):
                await client.place_order("ABC", "buy", "1.00", 1, client_order_id="once")
            failed_after.append(anyio.current_time() - start)

        received = sim.stats.cmd_requests
        async with client.events("connection") as events, anyio.create_task_group() as tg:
            start = anyio.current_time()
            tg.start_soon(place)
            await wait_until(lambda: sim.stats.cmd_requests > received)  # and dropped
            sim.faults.clear()  # a resend would now be carried out
            await sim.disconnect(client.user_id)
            await restored(events, "cmd")
        assert failed_after[0] < 1.0  # at once, not at the 10 s deadline
        # A resend would go out on reconnecting, before this request on the same
        # socket, and the gateway answers a socket's requests in order.
        assert await client.list_orders("all") == []  # it was not placed again
        assert sim.exchange.users[client.user_id or ""].orders == {}


async def test_a_request_made_while_reconnecting_waits_for_the_link(
    sim: Simulator,
) -> None:
    async with (
        MarketClient.session(sim.url, md=False, reconnect=FAST) as client,
        client.events("connection") as events,
    ):
        await sim.disconnect(client.user_id)
        await anext_kind(events, "connection.lost")
        symbols = await client.get_symbols(force_refresh=True)
        assert symbols
        assert client.stats()["links"]["cmd"]["reconnects"] == 1


async def test_md_stall_reconnects_md_alone_and_resyncs(sim: Simulator) -> None:
    probe = BookProbe()
    async with MarketClient.session(
        sim.url,
        symbols=["ABC"],
        heartbeat_timeout=0.4,
        on_md_event=probe.hook,
        reconnect=FAST,
    ) as client:
        async with client.events("connection") as events:
            await sim.stall_md(0.8)
            await client.place_order("ABC", "buy", "9.00", 3)  # printed during the stall
            got = await restored(events, "md")
        assert got["md"].data["downtime_s"] < 1.0
        links = client.stats()["links"]
        assert links["cmd"]["disconnects"] == 0
        assert links["md"]["reconnects"] >= 1
        await probe.assert_matches(client, "ABC")
        bids = client.book_snapshot("ABC", depth=1000)["bids"]
        assert any(str(price) == "9.00" for price, _ in bids)


async def test_gateway_gone_for_good_ends_with_reconnect_failed() -> None:
    async with SimProcess("--flow-hz", "0") as proc:
        with pytest.raises(ReconnectFailed, match="within 1 s") as info:
            async with MarketClient.session(
                proc.url,
                md=False,
                timeout=0.5,
                reconnect=ReconnectPolicy(initial=0.05, maximum=0.2, deadline=1),
            ) as client:
                await proc.kill()
                with pytest.raises((ConnectionLost, ReconnectFailed)):
                    for _ in range(100):
                        await client.get_symbols(force_refresh=True)
                await anyio.sleep_forever()
        assert isinstance(info.value, ConnectionLost)


@pytest.mark.time_limit(90)
async def test_simulator_restart_resumes_user_and_state_is_right() -> None:
    args = ("--secret", "s3cret", "--flow-hz", "200", "--seed", "5", "--admin-token", ADMIN_TOKEN)
    probe = BookProbe()
    async with (
        SimProcess(*args) as proc,
        MarketClient.session(
            proc.url, symbols=["ABC"], on_md_event=probe.hook, reconnect=FAST
        ) as client,
    ):
        user_id = client.user_id
        await client.configure_candles("ABC", interval_ms=1000, depth=10)
        await client.place_order("ABC", "buy", "1.00", 2, client_order_id="gone")
        assert len(await client.list_orders()) == 1
        async with client.events("connection") as events:
            await proc.kill()
            await proc.start()
            got = await restored(events, "cmd", "md")
        assert client.user_id == user_id
        assert got["cmd"].data["gateway_resets"] == 1
        assert client.stats()["gateway_resets"] == 1
        # candles are being re-seeded; nothing hangs
        await wait_until(lambda: client.stats()["pending_requests"] == 0, timeout=5)
        assert await client.list_orders() == []  # reconciled: the gateway lost them
        await probe.assert_matches(client, "ABC")  # under the restarted flow
        async with MarketClient.session(proc.url, token=ADMIN_TOKEN, md=False) as admin:
            await admin.send("admin.flow", {"rate_hz": 0}, as_role="admin")
        await assert_candles_match(client, "ABC", 1000, 10)


@pytest.mark.time_limit(60)
async def test_restart_with_another_secret_ends_with_auth_error() -> None:
    proc = SimProcess("--secret", "one", "--flow-hz", "0")
    async with proc:
        with pytest.raises(AuthError):
            async with MarketClient.session(proc.url, reconnect=FAST):
                await proc.kill()
                proc.args = ("--secret", "two", "--flow-hz", "0")
                await proc.start()
                await anyio.sleep_forever()


@pytest.mark.parametrize("channel", ["cmd", "md"])
async def test_every_malformed_frame_is_counted_and_the_session_goes_on(
    sim: Simulator, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    kinds = ["not_json", "not_object", "wrong_types", "unknown_type", "unknown_corr_id"]
    async with MarketClient.session(sim.url, symbols=["ABC"], reconnect=FAST) as client:
        with caplog.at_level(logging.WARNING, logger="market_client"):
            for kind in kinds:
                assert await sim.inject(kind, channel=channel, user_id=client.user_id) == 1
            await wait_until(
                lambda: (
                    client.stats()["malformed_frames"] + client.stats()["unsolicited_responses"]
                    == len(kinds)
                )
            )
        stats = client.stats()
        assert stats["links"]["cmd"]["disconnects"] == 0
        assert stats["links"]["md"]["disconnects"] == 0
        if channel == "cmd":
            assert stats["unsolicited_responses"] == 1
            assert stats["malformed_frames"] == len(kinds) - 1
        assert "malformed" in caplog.text
        assert (await client.get_book("ABC"))["sym"] == "ABC"


async def test_a_delta_with_a_bad_price_resyncs_that_symbol(sim: Simulator) -> None:
    probe = BookProbe()
    async with (
        MarketClient.session(sim.url, symbols=["ABC", "XYZ"], on_md_event=probe.hook) as client,
        MarketClient.session(sim.url, token=ADMIN_TOKEN, md=False) as admin,
    ):
        await sim.inject("bad_price", sym="ABC")
        await admin.place_order("ABC", "sell", "500.00", 1)
        await wait_until(lambda: client.stats()["resyncs"].get("ABC", 0) == 1)
        await probe.assert_matches(client, "ABC")
        assert client.stats()["resyncs"] == {"ABC": 1, "XYZ": 0}


async def test_an_oversized_frame_drops_the_link_which_comes_back(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with MarketClient.session(sim.url, symbols=["ABC"], reconnect=FAST) as client:
        async with client.events("connection") as events:
            with caplog.at_level(logging.WARNING, logger="market_client"):
                assert await sim.inject("oversized", channel="md", user_id=client.user_id) == 1
                lost = await anext_kind(events, "connection.lost")
                assert lost.data["code"] == 1009
                back = await anext_kind(events, "connection.restored")
                assert back.data["channel"] == "md"
        assert client.book_snapshot("ABC")["seq"] >= 0
    # Both ends of the outage at the same level: who saw "lost" sees "restored".
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("MD connection lost") for m in said)
    assert any(m.startswith("MD connection restored after") for m in said)


async def test_admin_fault_op_validates_its_payload(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, token=ADMIN_TOKEN, md=False) as admin:
        for payload in (
            {"fault": "nope"},
            {"fault": "frame", "kind": "nope"},
            {"fault": "frame", "kind": "not_json", "channel": "x"},
            {"fault": "md_stall", "seconds": "1"},
            {"fault": "delay", "op": "admin.flow", "seconds": 1},
        ):
            with pytest.raises(GatewayError) as info:
                await admin.send("admin.fault", payload, as_role="admin")
            assert info.value.code == "bad_request"
        await admin.send("admin.fault", {"fault": "drop", "op": "portfolio.get"}, as_role="admin")
        assert "portfolio.get" in sim.faults.drop
        await admin.send("admin.fault", {"fault": "clear"}, as_role="admin")
        assert not sim.faults.drop


async def test_missed_private_events_are_reported_after_a_reconnect(
    sim: Simulator,
) -> None:
    async with (
        MarketClient.session(sim.url, md=False, reconnect=FAST) as client,
        MarketClient.session(sim.url, token=client.token, md=False, reconnect=False) as twin,
    ):
        async with client.events("events.missed", "connection") as events:
            sim.faults.delay["auth.login"] = 0.5  # the client's re-login waits
            # Drop only the client's CMD socket: the twin (same user) stays.
            conns = list(sim.running.gateway._cmd[client.user_id or ""])
            target = next(c for c in conns if c.session and c.session.session_id == _sid(client))
            target.kill(1012, "test")
            await anext_kind(events, "connection.lost")
            await twin.place_order("ABC", "buy", "1.00", 1)  # 1 event the client misses
            sim.faults.clear()
            missed = await anext_kind(events, "events.missed")
        assert missed.data["count"] == 1
        assert client.stats()["missed_private_events"] == 1


def _sid(client: MarketClient) -> str:
    cmd = client._cmd.current
    assert cmd is not None and cmd.login is not None
    return cmd.login["session_id"]
