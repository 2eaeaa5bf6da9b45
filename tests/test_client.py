"""MarketClient against the real simulator, over real sockets, on Trio and asyncio."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import anyio
import pytest

from market_client import (
    AuthError,
    ConnectError,
    ConnectionLost,
    EventOverflow,
    GatewayError,
    MarketClient,
    RequestSession,
    RequestTimeout,
    SessionClosed,
    TooManyInFlight,
)
from market_client._transports import TransportName, connect_websocket
from market_client.testing import Simulator, open_simulator, wait_until

from .conftest import ADMIN_TOKEN
from .rawws import new_token
from .support import (
    FAST,
    BookProbe,
    anext_kind,
    assert_candles_match,
    caught_up,
    skip_unless_runs_on,
)

pytestmark = pytest.mark.anyio


async def test_session_connects_and_everything_works(sim: Simulator) -> None:
    async with MarketClient.session(sim.url) as client:
        assert client.user_id is not None and client.user_id.startswith("u-")
        symbols = await client.get_symbols()
        assert {s["sym"] for s in symbols} >= {"ABC", "XYZ", "QQQ"}
        assert await client.get_symbols() == symbols  # cached
        book = await client.get_book("ABC", depth=5)
        assert book["sym"] == "ABC" and len(book["bids"]) == 5
        # The local book, built from MD, equals the gateway's at the same seq.
        local = client.book_snapshot("ABC", depth=5)
        assert local["seq"] == book["seq"]
        assert local["bids"] == [(Decimal(p), q) for p, q in book["bids"]]
        assert local["asks"] == [(Decimal(p), q) for p, q in book["asks"]]
        top = client.best_bid_ask("ABC")
        assert top["bid"] == {"price": local["bids"][0][0], "qty": local["bids"][0][1]}
        placed = await client.place_order(
            "ABC", side="buy", price=Decimal("90.00"), qty=2, client_order_id="mine-1"
        )
        assert placed["order"]["status"] == "open"
        assert [o["order_id"] for o in await client.list_orders()] == [placed["order"]["order_id"]]
        history = await client.order_history(client_order_id="mine-1")
        assert history["order"]["order_id"] == placed["order"]["order_id"]
        cancelled = await client.cancel_order(placed["order"]["order_id"])
        assert cancelled["order"]["status"] == "cancelled"
        assert await client.list_orders() == []
        assert len(await client.list_orders("all")) == 1
        bought = await client.place_order("ABC", side="buy", type="market", qty=3)
        assert sum(f["qty"] for f in bought["fills"]) == 3
        portfolio = await client.get_portfolio()
        assert portfolio["positions"][0]["qty"] == 3
        stats = client.stats()
        assert stats["http_requests"] == 1  # the handshake, nothing else over HTTP
        assert stats["pending_requests"] == 0 and stats["malformed_frames"] == 0
        assert client.token is not None and client.token not in repr(client)
        assert client.token not in str(stats)


async def test_200_concurrent_requests_from_20_tasks(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, md=False) as client:
        results: dict[tuple[int, int], Any] = {}

        async def worker(w: int) -> None:
            for i in range(10):
                depth = 1 + (w * 10 + i) % 7
                sym = ("ABC", "XYZ", "QQQ")[(w + i) % 3]
                results[(w, i)] = (sym, depth, await client.get_book(sym, depth=depth))

        async with anyio.create_task_group() as tg:
            for w in range(20):
                tg.start_soon(worker, w)
        assert len(results) == 200
        for sym, depth, book in results.values():
            assert book["sym"] == sym and len(book["bids"]) == depth
        assert client.stats()["pending_requests"] == 0


async def test_requests_beyond_max_pending_raise_before_sending(sim: Simulator) -> None:
    sim.faults.delay["portfolio.get"] = 0.3
    async with MarketClient.session(sim.url, md=False, max_pending=2) as client:
        sent = client.stats()["requests"]
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(client.send, "portfolio.get")
            await wait_until(lambda: client.stats()["pending_requests"] == 2)
            with pytest.raises(TooManyInFlight) as info:
                await client.get_symbols()
            assert info.value.limit == 2
            assert client.stats()["requests"] == sent + 2  # the third was not sent
        assert client.stats()["pending_requests"] == 0
        assert await client.get_symbols()  # room again


async def test_timeout_removes_the_waiter_and_a_late_reply_is_dropped(
    sim: Simulator,
) -> None:
    sim.faults.delay["portfolio.get"] = 0.3
    async with MarketClient.session(sim.url, md=False) as client:
        with pytest.raises(RequestTimeout) as info:
            await client.send("portfolio.get", timeout=0.05)
        assert info.value.op == "portfolio.get" and isinstance(info.value, TimeoutError)
        assert client.stats()["pending_requests"] == 0
        await wait_until(lambda: client.stats()["late_responses"] == 1)
        stats = client.stats()
        assert stats["late_responses"] == 1 and stats["unsolicited_responses"] == 0
        sim.faults.drop.add("symbols.list")  # never answered at all
        with pytest.raises(RequestTimeout):
            await client.send("symbols.list", timeout=0.1)
        assert client.stats()["pending_requests"] == 0
        assert (await client.get_book("ABC"))["sym"] == "ABC"  # still healthy


async def test_gateway_errors_carry_code_message_op(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, md=False) as client:
        with pytest.raises(GatewayError) as info:
            await client.place_order("ABC", side="buy", price="100.001", qty=1)
        assert info.value.code == "invalid_price" and info.value.op == "order.place"
        assert "tick" in info.value.message
        assert info.value.response["status"] == "error"
        with pytest.raises(GatewayError) as info:
            await client.send("admin.halt", {"sym": "ABC"}, as_role="admin")
        assert info.value.code == "forbidden"
        with pytest.raises(GatewayError, match="not_found"):
            await client.cancel_order("o-999999")


async def test_a_retried_place_then_a_cancel_by_client_order_id_reaches_the_live_order(
    sim: Simulator,
) -> None:
    # The safe-retry flow the id exists for: the retry is refused as a
    # duplicate, and the cancel by that id cancels the order that is live.
    async with MarketClient.session(sim.url, md=False) as client:
        placed = await client.place_order("ABC", "buy", "1.00", 1, client_order_id="retry-7")
        with pytest.raises(GatewayError) as info:
            await client.place_order("ABC", "buy", "1.00", 1, client_order_id="retry-7")
        assert info.value.code == "duplicate_client_order_id"
        reply = await client.cancel_order(client_order_id="retry-7")
        assert reply["order"]["order_id"] == placed["order"]["order_id"]
        assert reply["order"]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"side": "hold", "price": "1.00", "qty": 1}, ValueError),
        ({"side": "buy", "price": 1.5, "qty": 1}, TypeError),
        ({"side": "buy", "price": "abc", "qty": 1}, ValueError),
        ({"side": "buy", "price": "-1", "qty": 1}, ValueError),
        ({"side": "buy", "price": "1.00", "qty": 0}, ValueError),
        ({"side": "buy", "price": "1.00", "qty": 1.0}, TypeError),
        ({"side": "buy", "price": "1.00", "qty": True}, TypeError),
        ({"side": "buy", "price": "1.00", "qty": 1, "tif": "DAY"}, ValueError),
        ({"side": "buy", "price": "1.00", "qty": 1, "type": "stop"}, ValueError),
        ({"side": "buy", "type": "limit", "qty": 1}, ValueError),
        ({"side": "buy", "type": "market", "price": "1.00", "qty": 1}, ValueError),
        ({"side": "buy", "price": "1.00", "qty": 1, "client_order_id": ""}, ValueError),
    ],
)
async def test_bad_arguments_raise_before_anything_is_sent(
    sim: Simulator, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    async with MarketClient.session(sim.url, md=False) as client:
        before = client.stats()["requests"]
        with pytest.raises(error):
            await client.place_order("ABC", **kwargs)
        assert client.stats()["requests"] == before


async def test_other_argument_checks(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, md=False) as client:
        with pytest.raises(ValueError, match="exactly one"):
            await client.cancel_order()
        with pytest.raises(ValueError, match="exactly one"):
            await client.order_history("o-1", client_order_id="c")
        with pytest.raises(ValueError, match="timeout"):
            await client.send("symbols.list", timeout=0)
        with pytest.raises(TypeError):
            await client.send("symbols.list", [1])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="as_role"):
            await client.send("admin.halt", as_role="root")
        with pytest.raises(TypeError):
            await client.get_book("ABC", depth="5")  # type: ignore[arg-type]
        with pytest.raises(LookupError, match="no market data"):
            client.best_bid_ask("ABC")  # md=False
        with pytest.raises(LookupError, match="configure_candles"):
            client.get_candles("ABC")
    with pytest.raises(ValueError, match="http"):
        MarketClient("localhost:8000")
    with pytest.raises(TypeError, match="list"):
        MarketClient("http://x", symbols="ABC")  # type: ignore[arg-type]


async def test_cancelling_a_waiting_task_leaks_nothing(sim: Simulator) -> None:
    sim.faults.delay["portfolio.get"] = 0.5
    async with MarketClient.session(sim.url, md=False) as client:
        with anyio.move_on_after(0.05) as scope:
            await client.get_portfolio()
        assert scope.cancelled_caught
        assert client.stats()["pending_requests"] == 0
        await wait_until(lambda: client.stats()["late_responses"] == 1)


async def test_leaving_the_session_with_requests_in_flight(sim: Simulator) -> None:
    sim.faults.drop.add("portfolio.get")
    outcomes: list[BaseException] = []

    async def waiter(client: MarketClient) -> None:
        try:
            await client.get_portfolio()
        except SessionClosed as exc:
            outcomes.append(exc)

    client = MarketClient.session(sim.url, md=False)
    async with anyio.create_task_group() as tg, client:
        for _ in range(5):
            tg.start_soon(waiter, client)
        await wait_until(lambda: client.stats()["pending_requests"] == 5)
        # Leaving the block failed every waiter at once: the task group can end.
    assert len(outcomes) == 5
    assert client.stats()["state"] == "closed"
    with pytest.raises(SessionClosed):
        await client.get_symbols()
    with pytest.raises(RuntimeError, match="opened once"):
        async with client:
            pass


async def test_connect_and_aclose_seed_api(sim: Simulator) -> None:
    md_seen: list[dict[str, Any]] = []
    cmd_seen: list[dict[str, Any]] = []
    client = await MarketClient.connect(
        sim.url, connect_md=True, on_md_event=md_seen.append, on_cmd_event=cmd_seen.append
    )
    try:
        await client.place_order("ABC", side="buy", type="market", qty=1)
        await wait_until(lambda: cmd_seen and any(m.get("ch") == "trade" for m in md_seen))
        assert cmd_seen[0]["event"] == "order.accepted"
    finally:
        await client.aclose()
    await client.aclose()  # idempotent


async def test_low_level_handshake_open_cmd_and_http_fallback(sim: Simulator) -> None:
    client = MarketClient(sim.url, md=False)
    try:
        hs = await client.handshake()
        assert hs["status"] == "ok" and hs["user_id"] == client.user_id
        over_http = await client.api_request("book.get", {"sym": "ABC", "depth": 3})
        assert len(over_http["bids"]) == 3
        with pytest.raises(GatewayError, match="unknown_symbol"):
            await client.api_request("book.get", {"sym": "NOPE"})
        cmd = await client.open_cmd()
        assert isinstance(cmd, RequestSession) and cmd.login is not None
        assert cmd.login["user_id"] == client.user_id
        assert (await cmd.request("book.get", {"sym": "ABC", "depth": 3}))["bids"] == over_http[
            "bids"
        ]
        await client.open_md(["ABC"])
        assert client.best_bid_ask("ABC")["bid"] is not None
    finally:
        await client.aclose()


async def test_resume_the_same_user_with_a_token(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, md=False) as first:
        await first.place_order("ABC", side="buy", price="50.00", qty=1)
        token, user_id = first.token, first.user_id
    async with MarketClient.session(sim.url, md=False, token=token) as again:
        assert again.user_id == user_id
        assert len(await again.list_orders()) == 1


async def test_bad_token_and_unreachable_gateway(sim: Simulator) -> None:
    with pytest.raises(AuthError) as info:
        async with MarketClient.session(sim.url, token="u-forged.0000"):
            pass
    assert "u-forged" not in str(info.value)
    async with open_simulator() as other:
        url = other.url
    with pytest.raises(ConnectError, match="is it running"):
        async with MarketClient.session(url):
            pass


async def test_admin_session(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, token=ADMIN_TOKEN, md=False) as admin:
        assert admin.is_admin
        reply = await admin.send("admin.halt", {"sym": "XYZ"}, as_role="admin")
        assert reply["status"] == "halted"
        symbols = await admin.get_symbols(force_refresh=True)
        assert next(s for s in symbols if s["sym"] == "XYZ")["status"] == "halted"


async def test_fail_fast_session_ends_with_connection_lost(
    sim: Simulator,
) -> None:
    with pytest.raises(ConnectionLost) as info:
        async with MarketClient.session(sim.url, reconnect=False) as client:
            await sim.disconnect(client.user_id)
            await anyio.sleep_forever()
    assert info.value.code == 1012


async def test_heartbeat_silence_ends_a_fail_fast_session(sim: Simulator) -> None:
    with pytest.raises(ConnectionLost, match="heartbeat"):
        async with MarketClient.session(sim.url, heartbeat_timeout=0.2, reconnect=False):
            await anyio.sleep_forever()  # heartbeats come every 0.5 s: too slow for 0.2


@pytest.mark.simulator(seed=2, flow_hz=400)
async def test_events_candles_and_transactions(sim: Simulator) -> None:
    hook_calls: list[str] = []

    async def async_hook(frame: dict[str, Any]) -> None:
        hook_calls.append("async:" + frame["event"])

    def bad_hook(frame: dict[str, Any]) -> None:
        raise RuntimeError("hook bug")

    async with MarketClient.session(sim.url, symbols=["ABC"], on_cmd_event=async_hook) as client:
        client.set_event_hook(bad_hook)
        candles = await client.configure_candles("ABC", interval_ms=1000, depth=5)
        assert len(candles) <= 5
        orders = client.events("order")
        trades = client.events("md.trade")
        placed = await client.place_order("ABC", side="buy", type="market", qty=2)
        got = [await orders.__anext__() for _ in range(1 + len(placed["fills"]))]
        assert [e.kind for e in got] == ["order.accepted"] + ["order.fill"] * len(placed["fills"])
        assert all(e.sym == "ABC" for e in got)
        trade = await trades.__anext__()
        assert trade.kind == "md.trade" and trade.sym == "ABC"
        assert [t["event"] for t in client.get_transactions()] == [e.kind for e in got]
        assert client.get_candles("ABC")[-1]["v"] >= 1
        await wait_until(lambda: len(hook_calls) == len(got))
        assert hook_calls == ["async:" + e.kind for e in got]
        assert client.stats()["hook_errors"] == len(got)
        client.configure_transactions(1)
        assert len(client.get_transactions()) == 1
        client.clear_transactions()
        assert client.get_transactions() == []
    # The session ended: iteration ends too.
    assert [e async for e in orders] == []


@pytest.mark.simulator(seed=2, flow_hz=400)
async def test_slow_consumer_overflow_policy(sim: Simulator) -> None:
    probe = BookProbe()
    async with MarketClient.session(sim.url, symbols=["ABC"], on_md_event=probe.hook) as client:
        slow = client.events(buffer=2)  # never read until the end
        for _ in range(5):
            await client.place_order("ABC", side="buy", price="1.00", qty=1)
        await wait_until(lambda: client.stats()["events_dropped_md"] > 0)
        # The book kept up regardless: equal to the gateway's at the same seq.
        await probe.assert_matches(client, "ABC")
        with pytest.raises(EventOverflow) as info:
            async for _ in slow:
                pass
        assert info.value.missed >= 3
        assert len(client.get_transactions()) == 5  # nothing lost from the ring buffer


@pytest.mark.simulator(seed=2, flow_hz=400)
async def test_local_books_equal_book_get_under_background_flow(sim: Simulator) -> None:
    probe = BookProbe()
    async with MarketClient.session(sim.url, on_md_event=probe.hook) as client:
        seen: set[tuple[str, int]] = set()
        for _ in range(3):
            for sym in ("ABC", "XYZ"):
                seq = await probe.assert_matches(client, sym)
                seen.add((sym, seq))
                await caught_up(client, sym, seq + 1)  # the market moves before the next check
        assert len(seen) == 6
        assert client.stats()["resyncs"] == dict.fromkeys(client.stats()["resyncs"], 0)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_websocket_transport(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, transport="trio-websocket") as client:
        assert (await client.get_book("ABC"))["sym"] == "ABC"
        assert client.best_bid_ask("ABC")["ask"] is not None


async def assert_own_order_reaches_the_local_book(client: MarketClient) -> None:
    """An order placed over CMD shows in the book kept from MD (both links work)."""
    await client.place_order("ABC", "buy", "9.00", 2)
    truth = await client.get_book("ABC")
    await caught_up(client, "ABC", truth["seq"])
    assert (Decimal("9.00"), 2) in client.book_snapshot("ABC", depth=100)["bids"]


async def test_httpx_ws_transport_on_both_backends(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, symbols=["ABC"], transport="httpx-ws") as client:
        await assert_own_order_reaches_the_local_book(client)
    with pytest.raises(ConnectionLost) as info:
        async with MarketClient.session(sim.url, transport="httpx-ws", reconnect=False) as client:
            await sim.disconnect(client.user_id)
            await anyio.sleep_forever()
    assert info.value.code == 1012  # the close code made it through the adapter


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_picows_transport_on_asyncio(sim: Simulator) -> None:
    async with MarketClient.session(
        sim.url, symbols=["ABC"], transport="picows", reconnect=FAST
    ) as client:
        await assert_own_order_reaches_the_local_book(client)
        # close codes come through the adapter, and the links come back
        async with client.events("connection") as events:
            await sim.inject("oversized", channel="md", user_id=client.user_id)
            lost = await anext_kind(events, "connection.lost")
            assert (lost.data["channel"], lost.data["code"]) == ("md", 1009)
            await anext_kind(events, "connection.restored")
            await sim.disconnect(client.user_id)
            codes = {(await anext_kind(events, "connection.lost")).data["code"] for _ in "12"}
            assert codes == {1012}
        assert (await client.get_book("ABC"))["sym"] == "ABC"
    # every socket of the session is closed, the one dropped for 1009 too
    await wait_until(lambda: sim.stats.md_connections + sim.stats.cmd_connections == 0)


@pytest.mark.parametrize("transport", [None, "picows", "trio-websocket", "httpx-ws"])
async def test_an_open_cancelled_half_way_leaves_no_connection_behind(
    sim: Simulator, anyio_backend: str, transport: TransportName | None
) -> None:
    skip_unless_runs_on(anyio_backend, transport)
    url = "ws" + sim.url[4:] + f"/ws/md?token={await new_token(sim.url)}&symbols=ABC"
    for step in range(40):  # cancelled at every stage of the TCP and WebSocket handshakes
        with anyio.move_on_after(step * 0.0001):
            async with connect_websocket(url, transport=transport):
                await anyio.sleep_forever()
        await wait_until(lambda: sim.stats.md_connections == 0, timeout=2)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_websockets_runs_on_trio_on_every_python(sim: Simulator) -> None:
    # The sans-I/O core needs no native client of the library: Trio on 3.10 too.
    async with MarketClient.session(sim.url, transport="websockets", md=False) as client:
        assert await client.get_symbols()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_picows_refused_on_trio(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="only under asyncio"):
        async with MarketClient.session(sim.url, transport="picows"):
            pass


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_trio_websocket_refused_on_asyncio(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="only under Trio"):
        async with MarketClient.session(sim.url, transport="trio-websocket"):
            pass


async def test_malformed_frames_are_counted_not_fatal(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with MarketClient.session(sim.url, symbols=["ABC"]) as client:
        gateway = sim.running.gateway
        conns = [c for cs in gateway._cmd.values() for c in cs]
        md_conns = list(gateway._md_all)
        with caplog.at_level(logging.WARNING, logger="market_client"):
            conns[0].push("not json")
            conns[0].push('{"type": "response", "corr_id": "999999", "status": "ok"}')
            md_conns[0].push("[1,2,3]")
            md_conns[0].push('{"type": "md", "ch": "book.delta", "sym": "ABC"}')
            await wait_until(
                lambda: (
                    client.stats()["malformed_frames"] + client.stats()["unsolicited_responses"]
                    == 4
                )
            )
        stats = client.stats()
        assert stats["malformed_frames"] == 3
        assert stats["unsolicited_responses"] == 1
        assert (await client.get_book("ABC"))["sym"] == "ABC"
        assert "malformed" in caplog.text


async def test_a_flood_of_one_kind_of_warning_is_logged_once_and_counted_whole(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    # 1,000 responses with one unknown corr_id and 1,000 malformed MD frames:
    # every one is counted, the first of each kind is logged, the rest held back.
    async with MarketClient.session(sim.url, symbols=["ABC"]) as client:
        gateway = sim.running.gateway
        (conn,) = [c for cs in gateway._cmd.values() for c in cs]
        (md_conn,) = gateway._md_all
        with caplog.at_level(logging.WARNING, logger="market_client"):
            for _ in range(1000):
                conn.push('{"type": "response", "corr_id": "999999", "status": "ok"}')
                md_conn.push("[1,2,3]")
            await wait_until(
                lambda: (
                    client.stats()["unsolicited_responses"] == 1000
                    and client.stats()["malformed_frames"] == 1000
                )
            )
        messages = [r.getMessage() for r in caplog.records]
        assert sum("unknown request" in m for m in messages) == 1
        assert sum("malformed MD frame" in m for m in messages) == 1


async def test_an_md_stream_that_goes_back_resyncs_the_book_and_says_so(
    sim: Simulator,
) -> None:
    # A delta with a seq below the book's (a gateway restart, a replay rewind):
    # counted, a book.restarted event, and the book is resynced from book.get.
    async with MarketClient.session(sim.url, symbols=["ABC"]) as client:
        async with client.events("book.restarted") as events:
            user = sim.running.exchange.new_user()
            order = {"sym": "ABC", "side": "buy", "price": "1.00", "qty": 1}
            placed, _ = sim.running.exchange.place(user, order)  # the stream passes the snapshot
            seq = sim.running.exchange.symbols["ABC"].seq
            await wait_until(lambda: client.stats()["md_messages"] > 0 and _book_seq(client) == seq)
            (md_conn,) = sim.running.gateway._md_all
            md_conn.push(
                '{"type": "md", "ch": "book.delta", "sym": "ABC", "seq": 1, "ts_ns": 1,'
                ' "changes": [["buy", "1.00", 5]]}'
            )
            evt = await anext_kind(events, "book.restarted")
            assert evt.data == {"sym": "ABC", "seq": 1} and evt.sym == "ABC"
        stats = client.stats()
        assert stats["md_restarts"]["ABC"] == 1 and stats["resyncs"]["ABC"] >= 1
        await wait_until(lambda: not client.stats()["out_of_sync"])
        sim.running.exchange.cancel(user, placed)
        assert (await client.get_book("ABC"))["seq"] >= seq


def _book_seq(client: MarketClient) -> int:
    return int(client.book_snapshot("ABC")["seq"])


async def test_md_gap_causes_exactly_one_resync_and_a_right_book(sim: Simulator) -> None:
    async with (
        MarketClient.session(sim.url, symbols=["ABC"]) as client,
        MarketClient.session(sim.url, token=ADMIN_TOKEN, md=False) as admin,
    ):
        await sim.md_gap("ABC", 1)
        await admin.place_order("ABC", "buy", "10.00", 1)  # its delta is never sent
        await admin.place_order("ABC", "buy", "10.01", 1)  # this one shows the gap
        truth = await client.get_book("ABC", depth=1000)
        await caught_up(client, "ABC", truth["seq"])
        local = client.book_snapshot("ABC", depth=1000)
        assert local["bids"] == [(Decimal(p), q) for p, q in truth["bids"]]
        assert local["asks"] == [(Decimal(p), q) for p, q in truth["asks"]]
        assert (Decimal("10.00"), 1) in local["bids"]
        assert client.stats()["resyncs"] == {"ABC": 1}


@pytest.mark.simulator(seed=4, flow_hz=400)
async def test_candles_equal_the_gateway_once_the_market_is_quiet(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, symbols=["ABC"]) as client:
        await client.configure_candles("ABC", interval_ms=1000, depth=50)
        await client.configure_candles("ABC", interval_ms=2000, depth=3)
        # A sleep on purpose: the test is about candles of several intervals, so
        # the flow must trade across a few 1 s and 2 s boundaries.
        await anyio.sleep(2.5)
        await sim.flow(0)
        for interval, depth in ((1000, 50), (2000, 3)):
            await assert_candles_match(client, "ABC", interval, depth)
            assert client.get_candles("ABC", interval)  # equal and not empty
