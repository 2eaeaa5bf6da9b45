"""The session's own guarantees: lifecycle, a request path that cannot leak, reconciliation.

Against the real simulator, on Trio and asyncio.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from market_client import (
    ConnectionLost,
    Event,
    GatewayError,
    MarketClient,
    RequestSession,
    RequestTimeout,
    TooManyInFlight,
    TransportClosed,
    WebSocket,
    WebSocketTransport,
)
from market_client._wire import CMD_FRAME_LIMIT
from market_client.testing import ScriptedWebSocket, Simulator, wait_until

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


class _Answers(ScriptedWebSocket):
    """A socket whose gateway answers every request (or none) as it is sent."""

    def __init__(self, answer: bool) -> None:
        super().__init__(close_code=None)
        self.answer = answer

    async def send(self, text: str) -> None:
        await super().send(text)
        if self.answer:
            msg_id = json.loads(text)["msg_id"]
            self.push({"type": "response", "corr_id": msg_id, "status": "ok", "payload": {}})


async def test_a_request_is_answered_times_out_and_cancels_cleanly() -> None:
    # The deadline is a cancel scope: a request past it raises RequestTimeout,
    # the caller's own scope cancels it, and neither leaves its waiter behind.
    for answer in (True, False):
        ws = _Answers(answer)
        session = RequestSession(ws, on_event=lambda event: None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            if answer:
                assert await session.request("portfolio.get") == {}
            else:
                with pytest.raises(RequestTimeout):
                    await session.request("portfolio.get", timeout=0.1)
                with anyio.move_on_after(0.05) as scope:  # the caller's own deadline
                    await session.request("portfolio.get", timeout=30)
                assert scope.cancelled_caught
            assert len(session.correlator) == 0
            tg.cancel_scope.cancel()
        assert len(ws.sent) == (1 if answer else 2)


@pytest.mark.parametrize("first", ["reply", "lost"])
async def test_a_reply_or_a_lost_link_in_the_turn_the_deadline_passes_wins(first: str) -> None:
    # The reply (or the lost link) arrives while the send is in progress, and
    # the deadline (0 s) cancels the request at its next checkpoint: what
    # came is kept, not turned into a RequestTimeout.
    session: RequestSession | None = None

    class _SameTurn(ScriptedWebSocket):
        async def send(self, text: str) -> None:
            assert session is not None
            if first == "reply":
                msg_id = json.loads(text)["msg_id"]
                session.correlator.resolve({"corr_id": msg_id, "status": "ok", "payload": {"a": 1}})
            else:
                session.fail(ConnectionLost("gone"))
            await anyio.lowlevel.checkpoint()  # where the deadline cancels it

    session = RequestSession(_SameTurn(close_code=None), on_event=lambda event: None)
    if first == "reply":
        assert await session.request("portfolio.get", timeout=0) == {"a": 1}
    else:
        with pytest.raises(ConnectionLost):
            await session.request("portfolio.get", timeout=0)
    assert len(session.correlator) == 0 and session.correlator.late == 0


def test_a_request_session_works_in_every_loop_it_runs_in() -> None:
    # One session used from two asyncio runs, then a Trio run, then Trio in
    # guest mode on an asyncio loop (there the running asyncio loop is the
    # host's, while the clock, the events and the scopes are Trio's).
    import asyncio

    import trio

    session: RequestSession | None = None
    answered: list[int] = []

    async def one_request() -> None:
        nonlocal session
        ws = _Answers(answer=True)
        if session is None:
            session = RequestSession(ws, on_event=lambda event: None)
        session._ws = ws  # the socket of this run
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            with anyio.fail_after(5):
                assert await session.request("portfolio.get", timeout=5) == {}
            tg.cancel_scope.cancel()
        answered.append(len(ws.sent))

    anyio.run(one_request, backend="asyncio")
    anyio.run(one_request, backend="asyncio")
    anyio.run(one_request, backend="trio")

    async def host() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            one_request,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )
        (await done).unwrap()

    asyncio.run(host())
    assert answered == [1, 1, 1, 1]


async def test_a_send_that_waits_for_room_keeps_the_requests_deadline() -> None:
    class _NoRoom(ScriptedWebSocket):
        async def send(self, text: str) -> None:
            await anyio.sleep_forever()  # the peer stopped reading

    session = RequestSession(_NoRoom(close_code=None), on_event=lambda event: None)
    start = anyio.current_time()
    with pytest.raises(RequestTimeout):
        await session.request("portfolio.get", timeout=0.1)
    assert 0.1 <= anyio.current_time() - start < 1
    assert len(session.correlator) == 0


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


async def test_a_reconciliation_the_gateway_refuses_does_not_end_the_session(
    sim: Simulator,
) -> None:
    async with MarketClient.session(sim.url, md=False, reconnect=FAST) as client:
        await client.place_order("ABC", "buy", "1.00", 1)
        sim.faults.fail.add("order.list")
        async with client.events("connection") as events:
            await sim.disconnect(client.user_id)
            await anext_kind(events, "connection.restored")
        await wait_until(lambda: client._reconciler.failures >= 1)
        sim.faults.clear()
        await wait_until(lambda: not client._reconciler._running)
        assert await client.get_symbols(force_refresh=True)
        assert client.open_orders() == await client.list_orders()


class _Scripted(WebSocketTransport):
    """Connects the client to scripted sockets instead of the gateway."""

    def __init__(self, make: Callable[[], ScriptedWebSocket]) -> None:
        super().__init__()
        self.make = make

    @contextlib.asynccontextmanager
    async def open(self, url: str, **options: Any) -> AsyncIterator[WebSocket]:
        yield self.make()


def _login_reply(request: Any, event_seq: int = 0) -> list[dict[str, Any]]:
    if not request or request.get("op") != "auth.login":
        return []
    return [
        {
            "type": "response",
            "ver": "1.0",
            "corr_id": request["msg_id"],
            "op": "auth.login",
            "status": "ok",
            "payload": {"user_id": "u-1", "session_id": "s", "event_seq": event_seq},
        }
    ]


class _Eager(ScriptedWebSocket):
    """Returns buffered frames without a checkpoint, as the websockets library does."""

    async def recv(self) -> str | bytes:
        if self._frames and self.closed_by_us is None:
            return self._frames.popleft()
        return await super().recv()


async def test_a_burst_of_cmd_frames_gives_other_tasks_a_turn_every_16(
    anyio_backend_name: str,
) -> None:
    # recv() hands over waiting frames without a checkpoint on every transport:
    # the CMD reader gives other tasks a turn every FAIR_EVERY frames.
    events: list[dict[str, Any]] = []
    burst = [
        {"type": "event", "event": "order.accepted", "seq": i, "payload": {}} for i in range(1, 161)
    ]
    all_read = anyio.Event()

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if len(events) == len(burst):
            all_read.set()

    ws = _Eager(close_code=None)
    session = RequestSession(ws, on_event=on_event)
    seen_by_other: list[int] = []

    async def other() -> None:
        while len(seen_by_other) < 10:
            seen_by_other.append(len(events))
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            ws.push(*burst)
            tg.start_soon(other)
            await all_read.wait()
            tg.cancel_scope.cancel()
    # The other task ran between the frames, not only once the burst was read:
    # 16 frames apart on asyncio, at most 32 on Trio (it may run the reader
    # twice between two of the other task's turns: a batch's order is random).
    assert len({n for n in seen_by_other if 0 < n < len(burst)}) >= 3, seen_by_other
    most = 16 if anyio_backend_name == "asyncio" else 32
    assert max(b - a for a, b in itertools.pairwise(seen_by_other)) <= most, seen_by_other


async def test_an_event_right_behind_the_login_reply_is_not_a_gateway_reset(
    sim: Simulator,
) -> None:
    order = {"order_id": "o-1", "sym": "ABC", "status": "open", "filled_qty": 0, "qty": 1}

    def reply(request: Any) -> list[dict[str, Any]]:
        frames = _login_reply(request, event_seq=5)
        if frames:
            frames.append(
                {"type": "event", "event": "order.accepted", "seq": 6, "payload": {"order": order}}
            )
        return frames

    transport = _Scripted(lambda: _Eager(reply=reply, close_code=None))
    async with MarketClient.session(sim.url, md=False, transport=transport) as client:
        await wait_until(lambda: client.stats()["cmd_events"] == 1)
        assert client.stats()["gateway_resets"] == 0
        assert client.stats()["missed_private_events"] == 0
        assert [o["order_id"] for o in client.open_orders()] == ["o-1"]


class _ClosesDuringPing(ScriptedWebSocket):
    """A pong that takes 0.3 s; the peer closes meanwhile."""

    pings_started = 0

    async def ping(self) -> None:
        self.pings_started += 1
        with anyio.move_on_after(0.3):
            await self._gone.wait()
        if self._gone.is_set():
            raise TransportClosed(1012)

    async def recv(self) -> str | bytes:
        try:
            return await super().recv()
        except TransportClosed:
            self._gone.set()
            await anyio.sleep(0.01)  # the ping sees the close first
            raise


async def test_a_close_while_a_ping_waits_is_a_drop_to_reconnect(sim: Simulator) -> None:
    sockets: list[_ClosesDuringPing] = []

    def make() -> _ClosesDuringPing:
        sockets.append(_ClosesDuringPing(reply=_login_reply, close_code=None))
        return sockets[-1]

    async with MarketClient.session(
        sim.url, md=False, transport=_Scripted(make), reconnect=FAST, heartbeat_timeout=2
    ) as client:
        await wait_until(lambda: sockets[0].pings_started > 0)
        sockets[0].close(1012)
        await wait_until(lambda: client.stats()["links"]["cmd"]["reconnects"] == 1)


async def test_after_a_failure_every_call_says_what_ended_the_session(sim: Simulator) -> None:
    client = MarketClient(sim.url, md=False, reconnect=False)
    with pytest.raises(ConnectionLost):
        async with client:
            await sim.disconnect(client.user_id)
            await anyio.sleep_forever()
    with pytest.raises(ConnectionLost):
        await client.get_symbols()


async def test_a_candle_series_the_gateway_refuses_is_not_kept(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, symbols=["ABC"]) as client:
        with pytest.raises(ValueError, match="up to one day"):
            await client.configure_candles("ABC", interval_ms=90_000_000)
        with pytest.raises(GatewayError):
            await client.configure_candles("NOPE", interval_ms=1000)
        assert "NOPE" not in client._market.symbols or not client._market.symbols["NOPE"].series


async def test_symbol_names_that_cannot_travel_in_a_url_are_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="symbol names"):
        MarketClient(sim.url, symbols=["A#B&token=x"])


async def test_a_recording_started_mid_session_gets_the_books_and_the_resyncs(
    sim: Simulator, tmp_path: Path
) -> None:
    from market_client import recording

    async with (
        MarketClient.session(sim.url, symbols=["ABC"]) as client,
        client.record(tmp_path / "rec"),  # the books are synced already: handed over
    ):
        await sim.md_gap("ABC", 1)
        await client.place_order("ABC", "buy", "99.00", 1)  # a delta lost: a gap
        await client.place_order("ABC", "buy", "98.00", 1)  # the next shows it
        await wait_until(lambda: client.stats()["resyncs"]["ABC"] >= 1)
        await wait_until(lambda: not client._market.out_of_sync())
    snapshots = recording.open(tmp_path / "rec").table("book_snapshots")
    sources = set(snapshots.column("source").to_pylist())
    assert {"handover", "resync"} <= sources


async def test_two_tasks_reading_one_stream_both_end_when_the_session_closes(
    sim: Simulator,
) -> None:
    got: list[str] = []

    async def read(stream: Any) -> None:
        async for evt in stream:
            got.append(evt.kind)

    # Leaving the session closes the stream: both readers end, and so the task group.
    async with (
        anyio.create_task_group() as tg,
        MarketClient.session(sim.url, md=False) as client,
    ):
        stream = client.events("order")
        tg.start_soon(read, stream)
        tg.start_soon(read, stream)
        await wait_until(lambda: stream.statistics().tasks_waiting_receive == 2)
        await client.place_order("ABC", "buy", "1.00", 1)
        await wait_until(lambda: got)
    assert got[0] == "order.accepted"
