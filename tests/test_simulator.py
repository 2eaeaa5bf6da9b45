"""The simulator gateway over real sockets, driven by a plain WebSocket peer."""

from __future__ import annotations

from decimal import Decimal

import anyio
import httpx
import orjson
import pytest

from market_client._transports import TransportClosed, connect_websocket
from market_client.simulator import RunningSimulator, serve

from .conftest import ADMIN_TOKEN
from .rawws import close_code, handshake, md_next, new_token, raw_cmd, raw_md

pytestmark = pytest.mark.anyio


# -- HTTP routes ---------------------------------------------------------------
async def test_healthz_and_handshake_create_and_resume(sim: RunningSimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
    first = (await handshake(sim.url)).json()
    assert first["status"] == "ok" and first["user_id"].startswith("u-")
    assert first["is_admin"] is False
    again = (await handshake(sim.url, first["token"])).json()
    assert again["user_id"] == first["user_id"] and again["token"] == first["token"]


async def test_unknown_token_gets_401(sim: RunningSimulator) -> None:
    for token in ("nope", "u-123.0000", ""):
        response = await handshake(sim.url, token)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


async def test_admin_token_handshake_is_admin(sim: RunningSimulator) -> None:
    reply = (await handshake(sim.url, ADMIN_TOKEN)).json()
    assert reply["is_admin"] is True


async def test_http_request_same_response_as_cmd(sim: RunningSimulator) -> None:
    token = await new_token(sim.url)
    async with httpx.AsyncClient(base_url=sim.url) as http:
        reply = await http.post(
            "/api/request",
            headers={"X-Auth-Token": token},
            json={"op": "book.get", "payload": {"sym": "ABC", "depth": 2}},
        )
        assert reply.status_code == 200
        body = reply.json()
        assert body["type"] == "response" and body["status"] == "ok"
        assert len(body["payload"]["bids"]) == 2
        missing = await http.post("/api/request", json={"op": "symbols.list"})
        assert missing.status_code == 401
        bad = await http.post(
            "/api/request", headers={"X-Auth-Token": "x"}, json={"op": "symbols.list"}
        )
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"


async def test_tokens_survive_a_restart_with_the_same_secret(anyio_backend: str) -> None:
    async with serve(flow_hz=0, secret="s3cret") as first:
        hs = (await handshake(first.url)).json()
    async with serve(flow_hz=0, secret="s3cret") as second:
        again = await handshake(second.url, hs["token"])
        assert again.status_code == 200 and again.json()["user_id"] == hs["user_id"]
    async with serve(flow_hz=0, secret="other") as third:
        assert (await handshake(third.url, hs["token"])).status_code == 401


# -- CMD basics ------------------------------------------------------------------
async def test_bad_token_closes_cmd_and_md_with_4401(sim: RunningSimulator) -> None:
    for path in ("cmd", "md"):
        async with connect_websocket(f"ws{sim.url[4:]}/ws/{path}?token=bogus") as ws:
            assert await close_code(ws) == 4401


async def test_ops_before_login_are_refused(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url, login=False) as cmd:
        assert await cmd.error("symbols.list") == "not_logged_in"
        login = await cmd.ok("auth.login")
        assert login["user_id"].startswith("u-") and login["session_id"]
        assert login["is_admin"] is False
        assert (await cmd.ok("symbols.list"))["symbols"]


async def test_every_read_op_happy_path(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd:
        symbols = (await cmd.ok("symbols.list"))["symbols"]
        assert len(symbols) >= 3
        assert len({s["tick"] for s in symbols}) >= 3
        for s in symbols:
            assert set(s) == {"sym", "tick", "min_qty", "lot", "status"}
        book = await cmd.ok("book.get", {"sym": "ABC", "depth": 3})
        assert book["sym"] == "ABC" and isinstance(book["seq"], int)
        bid_prices = [Decimal(p) for p, _ in book["bids"]]
        ask_prices = [Decimal(p) for p, _ in book["asks"]]
        assert bid_prices == sorted(bid_prices, reverse=True)
        assert ask_prices == sorted(ask_prices)
        assert bid_prices[0] < ask_prices[0]
        only_bids = await cmd.ok("book.get", {"sym": "ABC", "side": "buy"})
        assert only_bids["asks"] == [] and only_bids["bids"]
        portfolio = await cmd.ok("portfolio.get")
        assert portfolio == {"cash": "1000000", "positions": []}
        assert (await cmd.ok("order.list"))["orders"] == []
        candles = await cmd.ok("candles.get", {"sym": "ABC", "interval_ms": 1000})
        assert candles["interval_ms"] == 1000 and candles["candles"] == []


async def test_place_list_cancel_history(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd:
        placed = await cmd.ok(
            "order.place",
            {
                "sym": "ABC",
                "side": "buy",
                "type": "limit",
                "price": "90.00",
                "qty": 2,
                "tif": "GTC",
                "client_order_id": "c-1",
            },
        )
        order = placed["order"]
        assert placed["fills"] == []
        assert order["status"] == "open" and order["leaves_qty"] == 2
        assert order["price"] == "90.00" and order["client_order_id"] == "c-1"
        accepted = await cmd.event("order.accepted")
        assert accepted["payload"]["order"]["order_id"] == order["order_id"]
        listed = (await cmd.ok("order.list"))["orders"]
        assert [o["order_id"] for o in listed] == [order["order_id"]]
        book = await cmd.ok("book.get", {"sym": "ABC", "depth": 50})
        assert ["90.00", 2] in book["bids"]
        cancelled = await cmd.ok("order.cancel", {"client_order_id": "c-1"})
        assert cancelled["order"]["status"] == "cancelled"
        assert cancelled["order"]["leaves_qty"] == 0
        assert (await cmd.event("order.cancelled"))["payload"]["order"]["order_id"] == order[
            "order_id"
        ]
        assert (await cmd.ok("order.list"))["orders"] == []
        assert len((await cmd.ok("order.list", {"status": "all"}))["orders"]) == 1
        history = await cmd.ok("order.history", {"order_id": order["order_id"]})
        assert history["order"]["status"] == "cancelled" and history["fills"] == []
        assert await cmd.error("order.cancel", {"order_id": order["order_id"]}) == "not_found"


async def test_fills_events_and_portfolio(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as maker, raw_cmd(sim.url) as taker:
        await maker.ok("order.place", {"sym": "ABC", "side": "sell", "price": "100.50", "qty": 5})
        await maker.event("order.accepted")
        # Ours is the only order at 100.50? Flow is off; the seeded book's asks are lower,
        # so cross through everything up to 100.50 and check our fill is among them.
        result = await taker.ok(
            "order.place",
            {"sym": "ABC", "side": "buy", "price": "100.50", "qty": 1000, "tif": "IOC"},
        )
        fills = result["fills"]
        assert fills and all(f["liquidity"] == "taker" for f in fills)
        assert sum(f["qty"] for f in fills) == result["order"]["filled_qty"]
        prices = [Decimal(f["price"]) for f in fills]
        assert prices == sorted(prices)  # best price first
        maker_fill = await maker.event("order.fill")
        assert maker_fill["payload"]["fill"]["liquidity"] == "maker"
        assert maker_fill["payload"]["fill"]["price"] == "100.50"
        assert maker_fill["payload"]["order"]["status"] == "filled"
        taker_events = [await taker.event("order.fill") for _ in fills]
        assert [e["payload"]["fill"]["trade_id"] for e in taker_events] == [
            f["trade_id"] for f in fills
        ]
        seqs = [e["seq"] for e in taker.events] + [e["seq"] for e in taker_events]
        assert sorted(seqs) == list(range(min(seqs), max(seqs) + 1)) or seqs
        assert result["order"]["status"] == "cancelled"  # IOC remainder
        await taker.event("order.cancelled")
        portfolio = await taker.ok("portfolio.get")
        spent = sum(Decimal(f["price"]) * f["qty"] for f in fills)
        assert Decimal(portfolio["cash"]) == Decimal(1_000_000) - spent
        (position,) = portfolio["positions"]
        assert position["qty"] == result["order"]["filled_qty"]
        assert (
            Decimal(position["avg_price"])
            == (spent / position["qty"]).quantize(Decimal("0.000001")).normalize()
        )
        seller = await maker.ok("portfolio.get")
        assert seller["positions"][0]["qty"] == -5


async def test_fok_and_ioc_and_market_semantics(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd:
        before = await cmd.ok("book.get", {"sym": "QQQ", "depth": 100})
        total_asks = sum(q for _, q in before["asks"])
        fok = await cmd.ok(
            "order.place",
            {"sym": "QQQ", "side": "buy", "type": "market", "qty": total_asks + 1, "tif": "FOK"},
        )
        assert fok["order"]["status"] == "cancelled" and fok["fills"] == []
        assert (await cmd.ok("book.get", {"sym": "QQQ", "depth": 100}))["asks"] == before["asks"]
        best_price, best_qty = before["asks"][0]
        fok_ok = await cmd.ok(
            "order.place",
            {"sym": "QQQ", "side": "buy", "price": best_price, "qty": best_qty, "tif": "FOK"},
        )
        assert fok_ok["order"]["status"] == "filled"
        assert sum(f["qty"] for f in fok_ok["fills"]) == best_qty
        ioc = await cmd.ok(
            "order.place", {"sym": "QQQ", "side": "sell", "price": "1.00", "qty": 3, "tif": "IOC"}
        )
        assert ioc["order"]["filled_qty"] == 3 and ioc["order"]["status"] == "filled"
        # An IOC that cannot reach the book is cancelled whole; nothing rests.
        far = await cmd.ok(
            "order.place", {"sym": "QQQ", "side": "buy", "price": "1.00", "qty": 3, "tif": "IOC"}
        )
        assert far["order"]["status"] == "cancelled" and far["order"]["filled_qty"] == 0
        assert ["1.00", 3] not in (await cmd.ok("book.get", {"sym": "QQQ", "depth": 1000}))["bids"]


async def test_price_time_priority_over_the_wire(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as first, raw_cmd(sim.url) as second, raw_cmd(sim.url) as taker:
        for who in (first, second):
            await who.ok("order.place", {"sym": "ETH", "side": "sell", "price": "2500.0", "qty": 2})
        await taker.ok("order.place", {"sym": "ETH", "side": "sell", "price": "2500.0", "qty": 1})
        # The seeded quotes leave the fair price 2500.0 empty (bids below, asks above):
        # the three orders rest there, and a buy at 2500.0 takes them oldest first.
        result = await taker.ok(
            "order.place", {"sym": "ETH", "side": "buy", "price": "2500.0", "qty": 3, "tif": "IOC"}
        )
        assert [f["qty"] for f in result["fills"]] == [2, 1]
        assert (await first.event("order.fill"))["payload"]["order"]["status"] == "filled"
        partial = await second.event("order.fill")
        assert partial["payload"]["order"]["status"] == "partially_filled"
        assert partial["payload"]["order"]["leaves_qty"] == 1


async def test_bad_frames_get_errors_and_the_socket_stays_open(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd:
        await cmd.send_raw("this is not json")
        reply = await cmd.response()
        assert reply["status"] == "error" and reply["corr_id"] is None
        assert reply["error"]["code"] == "bad_request"
        await cmd.send_raw("[1, 2]")
        assert (await cmd.response())["error"]["code"] == "bad_request"
        await cmd.send_raw(orjson.dumps({"type": "request", "msg_id": "x-7"}).decode())
        reply = await cmd.response()
        assert reply["corr_id"] == "x-7" and reply["error"]["code"] == "bad_request"
        await cmd.send_raw(
            orjson.dumps({"msg_id": "x-8", "op": "book.get", "payload": [1]}).decode()
        )
        assert (await cmd.response())["error"]["code"] == "bad_request"
        assert await cmd.error("no.such.op") == "unknown_op"
        assert (await cmd.ok("symbols.list"))["symbols"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"sym": "NOPE", "side": "buy", "price": "1.00", "qty": 1}, "unknown_symbol"),
        ({"sym": "ABC", "side": "hold", "price": "1.00", "qty": 1}, "invalid_side"),
        ({"sym": "ABC", "side": "buy", "type": "stop", "price": "1.00", "qty": 1}, "invalid_type"),
        ({"sym": "ABC", "side": "buy", "price": "1.005", "qty": 1}, "invalid_price"),
        ({"sym": "ABC", "side": "buy", "price": 100.0, "qty": 1}, "invalid_price"),
        ({"sym": "ABC", "side": "buy", "price": "-1", "qty": 1}, "invalid_price"),
        ({"sym": "ABC", "side": "buy", "price": "abc", "qty": 1}, "invalid_price"),
        ({"sym": "ABC", "side": "buy", "qty": 1}, "invalid_price"),
        (
            {"sym": "ABC", "side": "buy", "type": "market", "price": "1.00", "qty": 1},
            "invalid_price",
        ),
        ({"sym": "ABC", "side": "buy", "price": "1.00", "qty": 0}, "invalid_qty"),
        ({"sym": "ABC", "side": "buy", "price": "1.00", "qty": 1.5}, "invalid_qty"),
        ({"sym": "XYZ", "side": "buy", "price": "1.00", "qty": 15}, "invalid_qty"),
        ({"sym": "ABC", "side": "buy", "price": "1.00", "qty": 1, "tif": "DAY"}, "invalid_tif"),
        ({"side": "buy", "price": "1.00", "qty": 1}, "bad_request"),
    ],
)
async def test_order_validation_codes(
    sim: RunningSimulator, payload: dict[str, object], code: str
) -> None:
    async with raw_cmd(sim.url) as cmd:
        assert await cmd.error("order.place", payload) == code
        assert (await cmd.ok("order.list", {"status": "all"}))["orders"] == []


async def test_duplicate_client_order_id_and_not_found(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd, raw_cmd(sim.url) as other:
        order = {"sym": "ABC", "side": "buy", "price": "50.00", "qty": 1, "client_order_id": "k"}
        placed = await cmd.ok("order.place", order)
        assert await cmd.error("order.place", order) == "duplicate_client_order_id"
        rejected = await cmd.event("order.rejected")
        assert rejected["payload"]["reason"] == "duplicate_client_order_id"
        assert rejected["payload"]["order"]["status"] == "rejected"
        # Another user can neither see nor cancel it.
        oid = placed["order"]["order_id"]
        assert await other.error("order.cancel", {"order_id": oid}) == "not_found"
        assert await other.error("order.history", {"order_id": oid}) == "not_found"
        assert await other.error("order.cancel", {"client_order_id": "k"}) == "not_found"
        assert await other.error("order.cancel", {}) == "bad_request"
        # Once the first is no longer live, the id may be used again.
        await cmd.ok("order.cancel", {"order_id": oid})
        again = await cmd.ok("order.place", order)
        assert again["order"]["status"] == "open"


async def test_candles_get_validation_and_last_seq(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd:
        assert await cmd.error("candles.get", {"sym": "ABC", "interval_ms": 1500}) == "bad_request"
        assert await cmd.error("candles.get", {"sym": "ABC", "interval_ms": 0}) == "bad_request"
        await cmd.ok("order.place", {"sym": "ABC", "side": "buy", "type": "market", "qty": 4})
        reply = await cmd.ok("candles.get", {"sym": "ABC", "interval_ms": 60_000})
        (candle,) = reply["candles"]
        assert candle["v"] == 4 and candle["n"] >= 1
        assert Decimal(candle["l"]) <= Decimal(candle["o"]) <= Decimal(candle["h"])
        book = await cmd.ok("book.get", {"sym": "ABC"})
        # The trades came before the delta that removed the liquidity they took.
        assert reply["last_seq"] == book["seq"] - 1


async def test_admin_ops_need_admin(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd, raw_cmd(sim.url, ADMIN_TOKEN) as admin:
        assert await cmd.error("admin.halt", {"sym": "ABC"}, as_="admin") == "forbidden"
        assert await admin.error("admin.halt", {"sym": "ABC"}) == "forbidden"  # no "as"
        assert await admin.error("admin.flow", {"rate_hz": -1}, as_="admin") == "bad_request"
        assert (await admin.ok("admin.flow", {"rate_hz": 0}, as_="admin")) == {"rate_hz": 0}


async def test_halt_and_resume(sim: RunningSimulator) -> None:
    async with (
        raw_cmd(sim.url) as cmd,
        raw_cmd(sim.url, ADMIN_TOKEN) as admin,
        raw_md(sim.url, symbols="ABC") as md,
    ):
        snapshot = await md_next(md)
        assert snapshot["ch"] == "book.snapshot"
        resting = await cmd.ok(
            "order.place", {"sym": "ABC", "side": "buy", "price": "10.00", "qty": 1}
        )
        await admin.ok("admin.halt", {"sym": "ABC"}, as_="admin")
        cancelled = await cmd.event("order.cancelled")
        assert cancelled["payload"]["order"]["order_id"] == resting["order"]["order_id"]
        assert (
            await cmd.error(
                "order.place", {"sym": "ABC", "side": "buy", "price": "10.00", "qty": 1}
            )
            == "halted"
        )
        symbols = (await cmd.ok("symbols.list"))["symbols"]
        assert next(s for s in symbols if s["sym"] == "ABC")["status"] == "halted"
        book = await cmd.ok("book.get", {"sym": "ABC"})
        assert book["bids"] == [] and book["asks"] == []
        while (msg := await md_next(md))["ch"] != "status":
            assert msg["ch"] == "book.delta"
        assert msg["status"] == "halted"
        await admin.ok("admin.resume", {"sym": "ABC"}, as_="admin")
        assert (await md_next(md))["status"] == "trading"
        assert (
            await cmd.ok("order.place", {"sym": "ABC", "side": "buy", "price": "10.00", "qty": 1})
        )["order"]["status"] == "open"


async def test_internal_error_and_rate_limit(anyio_backend: str) -> None:
    async with serve(flow_hz=0, rate_limit_hz=5) as sim:
        sim.faults.fail.add("portfolio.get")
        async with raw_cmd(sim.url) as cmd:
            assert await cmd.error("portfolio.get") == "internal"
            codes = [await cmd.error("portfolio.get") for _ in range(8)]
            assert "rate_limited" in codes


# -- market data -------------------------------------------------------------------
async def test_md_snapshot_then_contiguous_increments_matching_trades(
    busy_sim: RunningSimulator,
) -> None:
    async with raw_md(busy_sim.url, symbols="ABC,XYZ") as md:
        first = [await md_next(md), await md_next(md)]
        assert [m["ch"] for m in first] == ["book.snapshot", "book.snapshot"]
        seq = {m["sym"]: m["seq"] for m in first}
        trades = 0
        while trades < 20:
            msg = await md_next(md)
            if msg["ch"] in ("book.delta", "trade"):
                assert msg["seq"] == seq[msg["sym"]] + 1, msg
                seq[msg["sym"]] = msg["seq"]
                trades += msg["ch"] == "trade"
                if msg["ch"] == "trade":
                    assert msg["aggressor"] in ("buy", "sell") and msg["qty"] > 0
                    Decimal(msg["price"])


async def test_trade_messages_match_fills(sim: RunningSimulator) -> None:
    async with raw_md(sim.url, symbols="ABC") as md, raw_cmd(sim.url) as cmd:
        snapshot = await md_next(md)
        result = await cmd.ok(
            "order.place", {"sym": "ABC", "side": "buy", "type": "market", "qty": 20}
        )
        seq = snapshot["seq"]
        for fill in result["fills"]:
            trade = await md_next(md)
            assert trade["ch"] == "trade" and trade["seq"] == seq + 1
            seq += 1
            assert (trade["trade_id"], trade["price"], trade["qty"], trade["aggressor"]) == (
                fill["trade_id"],
                fill["price"],
                fill["qty"],
                "buy",
            )
        delta = await md_next(md)
        assert delta["ch"] == "book.delta" and delta["seq"] == seq + 1


async def test_heartbeats_arrive(sim: RunningSimulator) -> None:
    async with raw_md(sim.url, symbols="ABC") as md:
        await md_next(md)
        with anyio.fail_after(2):
            assert (await md_next(md, skip_heartbeats=False))["ch"] == "heartbeat"


async def test_md_gap_is_visible(sim: RunningSimulator) -> None:
    async with raw_md(sim.url, symbols="ABC") as md, raw_cmd(sim.url, ADMIN_TOKEN) as admin:
        snapshot = await md_next(md)
        await admin.ok("admin.md_gap", {"sym": "ABC", "count": 2}, as_="admin")
        for price in ("10.00", "10.01", "10.02"):
            await admin.ok("order.place", {"sym": "ABC", "side": "buy", "price": price, "qty": 1})
        msg = await md_next(md)
        assert msg["ch"] == "book.delta" and msg["seq"] == snapshot["seq"] + 3


async def test_unknown_md_symbol_is_refused(sim: RunningSimulator) -> None:
    async with raw_md(sim.url, symbols="NOPE") as md:
        assert await close_code(md) == 4400


# -- connection control ----------------------------------------------------------
async def test_oversized_frame_closes_with_1009(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd:
        await cmd.send_raw('{"op": "x", "pad": "' + "a" * 70_000 + '"}')
        assert await close_code(cmd.ws) == 1009


async def test_admin_disconnect_closes_with_1012(sim: RunningSimulator) -> None:
    token = await new_token(sim.url)
    async with (
        raw_cmd(sim.url, token) as cmd,
        raw_md(sim.url, token, "ABC") as md,
        raw_cmd(sim.url, ADMIN_TOKEN) as admin,
    ):
        await md_next(md)
        user_id = (await cmd.ok("auth.login"))["user_id"]
        await admin.ok("admin.disconnect", {"user_id": user_id}, as_="admin")
        assert await close_code(cmd.ws) == 1012
        assert await close_code(md) == 1012
        assert (await admin.ok("symbols.list"))["symbols"]  # others stay connected


async def test_slow_md_subscriber_is_cut_off_with_1013(anyio_backend: str) -> None:
    async with (
        serve(flow_hz=1000, queue_size=300, seed=3, send_buffer=4096) as sim,
        raw_md(sim.url) as slow,
        raw_md(sim.url) as fast,
    ):
        # `slow` never reads; `fast` keeps reading and is not disturbed.
        cut_off = False
        while not cut_off:
            await md_next(fast)
            cut_off = sim.stats.md_dropped_slow > 0
        assert await close_code(slow) == 1013
        for _ in range(50):
            await md_next(fast)


async def test_events_go_to_every_logged_in_connection_of_the_user(sim: RunningSimulator) -> None:
    token = await new_token(sim.url)
    async with raw_cmd(sim.url, token) as one, raw_cmd(sim.url, token) as two:
        await one.ok("order.place", {"sym": "ABC", "side": "buy", "price": "20.00", "qty": 1})
        a = await one.event("order.accepted")
        b = await two.event("order.accepted")
        assert a["seq"] == b["seq"] == 1


async def test_socket_closes_cleanly_when_client_leaves(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url):
        pass
    await anyio.sleep(0.1)
    assert sim.stats.cmd_connections == 0
    with pytest.raises(TransportClosed):
        async with raw_cmd(sim.url) as cmd:
            await cmd.ws.aclose()
            await cmd.ws.recv()
