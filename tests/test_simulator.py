"""The simulator gateway over real sockets, driven by a plain WebSocket peer.

Only what needs the network is here: HTTP and WebSocket wiring, close codes,
fan-out, heartbeats, body limits and the fault knobs the I/O layer applies.
The rules themselves are tested without sockets in test_gateway_rules.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import anyio
import httpx
import orjson
import pytest

from market_client._transports import TransportClosed, connect_websocket
from market_client._wire import CMD_FRAME_LIMIT, HTTP_BODY_LIMIT
from market_client.simulator import RunningSimulator, serve
from market_client.simulator._exchange import Limits

from .conftest import ADMIN_TOKEN
from .rawws import close_code, handshake, md_next, new_token, raw_cmd, raw_md

pytestmark = pytest.mark.anyio


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Return once ``predicate()`` holds; the test's ``fail_after`` bounds the wait."""
    while not predicate():
        await anyio.sleep(0.005)


# -- HTTP routes ---------------------------------------------------------------
async def test_healthz_and_handshake_create_and_resume(sim: RunningSimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
    first = (await handshake(sim.url)).json()
    assert first["status"] == "ok" and first["user_id"].startswith("u-")
    assert first["is_admin"] is False
    again = (await handshake(sim.url, first["token"])).json()
    assert again["user_id"] == first["user_id"] and again["token"] == first["token"]


async def test_a_token_the_gateway_did_not_issue_gets_401(sim: RunningSimulator) -> None:
    issued = await new_token(sim.url)
    forged = [issued[:-1], issued + "0", "u-123.0000", "tökén", "\u00ff" * 300, "nope", ""]
    async with httpx.AsyncClient(base_url=sim.url) as http:
        bodies = [{"token": t} for t in [*forged, ADMIN_TOKEN + "\u00e9", 5, ["x"], {}, True]]
        for body in bodies:
            response = await http.post("/auth/handshake", json=body)
            assert response.status_code == 401, body
            assert response.json()["error"]["code"] == "unauthorized"
        for header in ("t\u00f6k\u00e9n".encode("latin-1"), b"\xff\xfe", issued[:-1].encode()):
            response = await http.post(
                "/api/request", headers={"X-Auth-Token": header}, json={"op": "symbols.list"}
            )
            assert response.status_code == 401, header
        admin = await http.post("/auth/handshake", json={"token": ADMIN_TOKEN})
        assert admin.json()["is_admin"] is True


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


# -- CMD basics ------------------------------------------------------------------
async def test_bad_token_closes_cmd_and_md_with_4401(sim: RunningSimulator) -> None:
    issued = await new_token(sim.url)
    for token in ("bogus", "t%C3%B6k", "%FF%FE", "%00", issued[:-1]):
        for path in ("cmd", "md"):
            async with connect_websocket(f"ws{sim.url[4:]}/ws/{path}?token={token}") as ws:
                assert await close_code(ws) == 4401, (path, token)


async def test_an_order_over_the_wire_events_before_its_response(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd:
        placed = await cmd.request(
            "order.place", {"sym": "ABC", "side": "buy", "price": "90.00", "qty": 2}
        )
        # The event the op caused came before the response, on the same socket.
        (accepted,) = cmd.events
        assert accepted["event"] == "order.accepted"
        assert accepted["payload"]["order"] == placed["payload"]["order"]
        listed = (await cmd.ok("order.list"))["orders"]
        assert listed == [placed["payload"]["order"]]


async def test_bad_frames_get_errors_and_the_socket_stays_open(sim: RunningSimulator) -> None:
    async with raw_cmd(sim.url) as cmd:
        await cmd.send_raw("this is not json")
        reply = await cmd.response()
        assert reply["status"] == "error" and reply["corr_id"] is None
        assert reply["error"]["code"] == "bad_request"
        await cmd.send_raw(orjson.dumps({"type": "request", "msg_id": "x-7"}).decode())
        reply = await cmd.response()
        assert reply["corr_id"] == "x-7" and reply["error"]["code"] == "bad_request"
        assert await cmd.error("no.such.op") == "unknown_op"
        assert (await cmd.ok("symbols.list"))["symbols"]


HOSTILE_FRAMES = [
    ("[1, 2]", "bad_request"),
    ("null", "bad_request"),
    ('"op"', "bad_request"),
    ('{"op": [1]}', "bad_request"),
    ('{"op": {}}', "bad_request"),
    ('{"op": 1e308}', "bad_request"),
    ('{"op": 18446744073709551615}', "bad_request"),
    ('{"op": 123456789012345678901234567890}', "bad_request"),
    ('{"op": "book.get", "payload": [1]}', "bad_request"),
    ('{"op": "book.get", "msg_id": {}, "payload": {"sym": "ABC", "depth": 1e999}}', None),
    ('{"op": "book.get", "payload": {"sym": ["ABC"]}}', "bad_request"),
    ('{"op": "book.get", "payload": {"sym": "ABC", "depth": 9223372036854775808}}', "bad_request"),
    ('{"op": "order.place", "payload": {"sym": "ABC", "side": "buy", "qty": 1,'
     ' "price": "1e999999999"}}', "invalid_price"),
    ('{"op": "order.place", "payload": {"sym": "ABC", "side": "buy", "qty": 1, "price": "1e30"}}',
     "invalid_price"),
    ('{"op": "order.place", "payload": {"sym": "ABC", "side": "buy", "price": "1.00",'
     ' "qty": 18446744073709551615}}', "invalid_qty"),
    ('{"op": "order.place", "payload": {"sym": "ABC", "side": {}, "price": "1", "qty": 1}}',
     "invalid_side"),
    ('{"op": "order.cancel", "payload": {"order_id": [1]}}', "bad_request"),
    ('{"op": "candles.get", "payload": {"sym": "ABC", "interval_ms": 1000,'
     ' "since_ns": 99999999999999999999}}', "bad_request"),
]  # fmt: skip


async def test_hostile_frames_get_error_codes_and_the_socket_stays_open(
    sim: RunningSimulator,
) -> None:
    # The knobs the I/O layer reads from a frame's op must not trip on odd ops either.
    sim.faults.drop.add("portfolio.get")
    sim.faults.delay["order.history"] = 0.01
    async with raw_cmd(sim.url) as cmd:
        for text, code in HOSTILE_FRAMES:
            await cmd.send_raw(text)
            reply = await cmd.response()
            assert reply["status"] == "error", text
            if code is not None:  # a value orjson cannot read makes the frame not JSON
                assert reply["error"]["code"] == code, (text, reply)
        assert (await cmd.ok("symbols.list"))["symbols"]


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
        serve(flow_hz=0, queue_size=300, send_buffer=4096) as sim,
        raw_md(sim.url) as slow,
        raw_md(sim.url) as fast,
    ):
        user = sim.exchange.new_user()
        order = {"sym": "ABC", "side": "buy", "price": "1.00", "qty": 1}
        # The snapshots first: once they came, `fast` is subscribed, and no
        # delta of a burst can be folded into a snapshot it has yet to get.
        for _ in sim.exchange.symbols:
            assert (await md_next(fast))["ch"] == "book.snapshot"

        async def burst() -> None:
            # 40 deltas at once, then `fast` reads them: it never lags by more,
            # however slow the machine, while `slow` never reads.
            for _ in range(20):
                placed, _ = sim.exchange.place(user, order)
                sim.exchange.cancel(user, placed)
            for _ in range(40):
                await md_next(fast)

        while sim.stats.md_dropped_slow == 0:
            await burst()
        assert await close_code(slow) == 1013
        await burst()  # `fast` was not disturbed


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
    await wait_until(lambda: sim.stats.cmd_connections == 0)
    with pytest.raises(TransportClosed):
        async with raw_cmd(sim.url) as cmd:
            await cmd.ws.aclose()
            await cmd.ws.recv()


async def test_delay_and_drop_faults_over_the_wire(sim: RunningSimulator) -> None:
    sim.faults.delay["book.get"] = 0.2
    sim.faults.drop.add("portfolio.get")
    async with raw_cmd(sim.url) as cmd:
        for msg_id, op in (("late", "book.get"), ("never", "portfolio.get")):
            frame = {"msg_id": msg_id, "op": op, "payload": {"sym": "ABC"}}
            await cmd.send_raw(orjson.dumps(frame).decode())
        assert (await cmd.ok("symbols.list"))["symbols"]  # answered first
        assert (await cmd.response())["corr_id"] == "late"
        sim.faults.clear()
        assert await cmd.ok("portfolio.get")


async def test_http_bodies_over_the_limit_get_413_unread(sim: RunningSimulator) -> None:
    token = await new_token(sim.url)
    async with httpx.AsyncClient(base_url=sim.url) as http:

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(HTTP_BODY_LIMIT // 1024 + 2):
                yield b" " * 1024

        for path, headers in (("/auth/handshake", {}), ("/api/request", {"X-Auth-Token": token})):
            big = await http.post(path, headers=headers, content=b" " * (HTTP_BODY_LIMIT + 1))
            streamed = await http.post(path, headers=headers, content=chunked())
            for response in (big, streamed):
                assert response.status_code == 413, path
                assert response.json()["status"] == "error"
                assert response.json()["error"]["code"] == "bad_request"
        # /api/request takes what a CMD frame takes.
        body = orjson.dumps({"op": "symbols.list", "pad": "x" * (CMD_FRAME_LIMIT - 100)})
        assert len(body) <= CMD_FRAME_LIMIT
        reply = await http.post("/api/request", headers={"X-Auth-Token": token}, content=body)
        assert reply.status_code == 200 and reply.json()["status"] == "ok"
    # A declared length over the limit is refused before any of the body is sent.
    host, port = sim.url.removeprefix("http://").rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(
            b"POST /auth/handshake HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300000000\r\n\r\n"
        )
        head = await stream.receive()
        assert head.startswith(b"HTTP/1.1 413"), head


async def test_open_order_cap_over_the_wire(anyio_backend: str) -> None:
    async with serve(flow_hz=0, max_open_orders=2) as sim, raw_cmd(sim.url) as cmd:
        order = {"sym": "ABC", "side": "buy", "price": "1.00", "qty": 1}
        for _ in range(2):
            await cmd.ok("order.place", order)
        assert await cmd.error("order.place", order) == "too_many_orders"
        rejected = await cmd.event("order.rejected")
        assert rejected["payload"]["reason"] == "too_many_orders"


async def test_sockets_per_user_over_the_cap_close_with_1013(sim: RunningSimulator) -> None:
    sim.exchange.accounts.limits = Limits(max_connections_per_user=2)
    token = await new_token(sim.url)
    async with raw_cmd(sim.url, token), raw_md(sim.url, token, "ABC") as md:
        await md_next(md)
        async with connect_websocket(f"ws{sim.url[4:]}/ws/cmd?token={token}") as third:
            assert await close_code(third) == 1013
    await wait_until(lambda: sim.stats.cmd_connections == sim.stats.md_connections == 0)
    async with raw_cmd(sim.url, token) as again:  # the count went down with the sockets
        assert (await again.ok("symbols.list"))["symbols"]
