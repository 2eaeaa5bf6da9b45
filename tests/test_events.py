"""`Event`: a repr that says what happened, and typed views of order events."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import anyio
import pytest

from market_client import ConnectionLost, Event, MarketClient
from market_client._events import EventHub, new_event
from market_client.simulator import RunningSimulator
from market_client.testing import ScriptedWebSocket

ORDER = {
    "order_id": "o-7",
    "client_order_id": None,
    "user_id": "u-1",
    "sym": "ABC",
    "side": "buy",
    "type": "limit",
    "price": "100.01",
    "qty": 5,
    "filled_qty": 2,
    "leaves_qty": 3,
    "status": "partially_filled",
    "tif": "GTC",
    "ts_ns": 1,
}
FILL = {
    "trade_id": "t-9",
    "order_id": "o-7",
    "sym": "ABC",
    "side": "buy",
    "price": "100.01",
    "qty": 2,
    "liquidity": "taker",
    "ts_ns": 1,
}


def cmd(event: str, **payload: Any) -> Event:
    frame = {"type": "event", "ver": "1.0", "event": event, "seq": 3, "payload": payload}
    return Event(event, frame, "ABC")


def test_order_fill_has_typed_views_and_a_useful_repr() -> None:
    evt = cmd("order.fill", order=ORDER, fill=FILL)
    assert evt.order == ORDER and evt.fill == FILL
    assert evt.reason is None
    assert repr(evt) == "Event(order.fill ABC o-7 buy 5@100.01 fill 2@100.01 partially_filled 2/5)"


def test_the_views_are_copies_and_read_only() -> None:
    evt = cmd("order.accepted", order=ORDER)
    view = evt.order
    assert view is not None
    view["status"] = "cancelled"  # type: ignore[typeddict-item]
    assert evt.data["payload"]["order"]["status"] == "partially_filled"
    # A frozen, slotted dataclass: FrozenInstanceError, or TypeError on some Pythons.
    with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):
        evt.order = None  # type: ignore[misc]
    assert evt.fill is None


def test_the_readers_fast_constructor_builds_the_same_frozen_event() -> None:
    data = {"ch": "trade", "price": "100.01", "qty": 3, "seq": 9}
    for sym in ("ABC", None):
        fast, slow = new_event("md.trade", data, sym), Event("md.trade", data, sym)
        assert type(fast) is Event
        assert fast == slow and repr(fast) == repr(slow)
        assert (fast.kind, fast.data, fast.sym) == ("md.trade", data, sym)
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.kind = "md.other"  # type: ignore[misc]
        assert dataclasses.astuple(fast) == dataclasses.astuple(slow)
        assert pickle.loads(pickle.dumps(fast)) == slow and copy.copy(fast) == slow
    # new_event sets these three slots and runs nothing else: a new field or a
    # __post_init__ would be skipped, so either must fail here first.
    assert [f.name for f in dataclasses.fields(Event)] == ["kind", "data", "sym"]
    assert not hasattr(Event, "__post_init__")


def test_an_md_event_with_no_room_is_dropped_and_counted() -> None:
    hub = EventHub()
    full, roomy = hub.subscribe(("md",), 1), hub.subscribe(("md",), 5)
    for seq in (1, 2, 3):
        hub.deliver(new_event("md.trade", {"seq": seq}, "ABC"), hub.targets("md.trade"))
    assert [e.data["seq"] for e in full._sub.buffer] == [1]
    assert [e.data["seq"] for e in roomy._sub.buffer] == [1, 2, 3]
    assert full.dropped == 2 and roomy.dropped == 0 and hub.dropped_md == 2
    assert full._sub.missed == 0  # market data is dropped, never raised as missed


def test_rejected_orders_say_why() -> None:
    evt = cmd("order.rejected", order={**ORDER, "status": "rejected"}, reason="invalid_price")
    assert evt.reason == "invalid_price"
    assert repr(evt).endswith("reason=invalid_price)")


@pytest.mark.parametrize(
    ("evt", "text"),
    [
        (
            Event("md.trade", {"price": "100.01", "qty": 3, "aggressor": "buy", "seq": 9}, "ABC"),
            "Event(md.trade ABC 3@100.01 buy seq=9)",
        ),
        (
            Event("md.book.delta", {"seq": 4, "changes": [["buy", "1", 0]]}, "ABC"),
            "Event(md.book.delta ABC seq=4 changes=1)",
        ),
        (
            Event("md.book.snapshot", {"seq": 4, "bids": [["1", 1]], "asks": []}, "ABC"),
            "Event(md.book.snapshot ABC seq=4 levels=1/0)",
        ),
        (Event("md.status", {"status": "halted"}, "ABC"), "Event(md.status ABC halted)"),
        (
            Event("connection.lost", {"channel": "md", "code": 1012}),
            "Event(connection.lost channel='md' code=1012)",
        ),
    ],
)
def test_repr_of_market_data_and_session_events(evt: Event, text: str) -> None:
    assert repr(evt) == text
    assert evt.order is None and evt.fill is None


@pytest.mark.parametrize("data", [{}, {"payload": None}, {"payload": {"order": "x"}}])
def test_malformed_order_events_have_no_views_and_still_repr(data: dict[str, Any]) -> None:
    evt = Event("order.fill", data, None)
    assert evt.order is None and evt.fill is None
    assert repr(evt) == "Event(order.fill)"


@pytest.mark.anyio
async def test_views_of_a_real_fill(sim: RunningSimulator) -> None:
    async with (
        MarketClient.session(sim.url) as maker,
        MarketClient.session(sim.url) as taker,
        taker.events("order.fill") as stream,
    ):
        await maker.place_order("ABC", "sell", "100.00", 2)
        await taker.place_order("ABC", "buy", "100.00", 2)
        evt = await stream.__anext__()
    assert evt.fill is not None and evt.order is not None
    assert evt.fill["qty"] == 2 and evt.fill["price"] == "100.00"
    assert evt.order["status"] == "filled" and evt.order["order_id"] == evt.fill["order_id"]
    assert "order.fill ABC" in repr(evt) and "filled 2/2" in repr(evt)


def test_the_hub_knows_who_wants_a_kind_as_subscribers_come_and_go() -> None:
    from market_client._events import EventHub

    hub = EventHub()
    assert not hub.wants("md.trade")
    orders = hub.subscribe(("order",), 10)
    assert hub.wants("order.fill") and not hub.wants("md.trade")
    md = hub.subscribe(("md",), 10)
    assert hub.wants("md.trade") and hub.wants("md.book.delta") and not hub.wants("mdx")
    # What the MD reader uses: the wanting subscribers, handed to deliver.
    assert hub.targets("md.trade") == (md._sub,) and hub.targets("mdx") == ()
    assert hub.targets("order.fill") == (orders._sub,)
    hub.deliver(Event("md.trade", {"n": 1}, "ABC"), hub.targets("md.trade"))
    assert list(md._sub.buffer) == [Event("md.trade", {"n": 1}, "ABC")]
    assert not orders._sub.buffer
    md.close()
    assert hub.targets("md.trade") == ()
    assert not hub.wants("md.trade") and hub.wants("order.fill")
    hub.close()
    assert not hub.wants("order.fill")
    orders.close()


def test_publish_reaches_exactly_who_wants_the_kind_as_subscribers_come_and_go() -> None:
    from market_client._events import EventHub

    hub = EventHub()

    def held(stream: Any) -> list[str]:
        return [e.data["n"] for e in stream._sub.buffer]

    trades = hub.subscribe(("md.trade",), 10)
    hub.publish(Event("md.trade", {"n": "t1"}, "ABC"))
    hub.publish(Event("order.fill", {"n": "f1"}, "ABC"))  # nobody wants it: worked out as such
    everything = hub.subscribe((), 10)
    orders = hub.subscribe(("order",), 10)
    hub.publish(Event("order.fill", {"n": "f2"}, "ABC"))  # the newcomers are asked again
    hub.publish(Event("md.trade", {"n": "t2"}, "ABC"))
    trades.close()
    hub.publish(Event("md.trade", {"n": "t3"}, "ABC"))
    assert held(trades) == []  # closed: emptied, and given nothing more
    assert held(everything) == ["f2", "t2", "t3"]
    assert held(orders) == ["f2"]
    hub.close()
    hub.publish(Event("md.trade", {"n": "t4"}, "ABC"))
    assert held(everything) == [] and held(orders) == []


def test_a_subscriber_leaving_while_the_hub_works_out_a_kind_leaves_nothing_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from market_client._events import EventHub, _Subscriber

    hub = EventHub()
    first, second = hub.subscribe(("md",), 10), hub.subscribe(("md",), 10)
    wants = _Subscriber.wants

    def closing_wants(sub: _Subscriber, kind: str) -> bool:
        first.close()  # as the garbage collector running a stream's __del__ would
        return wants(sub, kind)

    monkeypatch.setattr(_Subscriber, "wants", closing_wants)
    hub.publish(Event("md.trade", {"n": 1}, "ABC"))
    monkeypatch.setattr(_Subscriber, "wants", wants)
    hub.publish(Event("md.trade", {"n": 2}, "ABC"))
    assert [e.data["n"] for e in second._sub.buffer] == [1, 2]
    assert len(first._sub.buffer) <= 1  # what came while it left, at most; nothing after


def test_a_consumers_turn_for_the_reader_is_also_a_look_for_cancellation() -> None:
    from market_client._events import CANCEL_EVERY, DRAIN_EVERY

    assert DRAIN_EVERY % CANCEL_EVERY == 0


@pytest.mark.anyio
async def test_a_cancelled_consumer_stops_within_a_few_buffered_events() -> None:
    from market_client._events import CANCEL_EVERY, DRAIN_EVERY, EventHub

    hub = EventHub()
    stream = hub.subscribe(("md",), 1000)
    for i in range(500):
        hub.publish(Event("md.trade", {"i": i}, "ABC"))
    taken = 0
    with anyio.fail_after(5), anyio.CancelScope() as scope:
        async for _ in stream:
            taken += 1
            if taken == 3:
                scope.cancel()  # the buffer still holds hundreds
    assert 3 < taken <= 3 + CANCEL_EVERY < DRAIN_EVERY


@pytest.mark.anyio
async def test_the_md_readers_events_are_the_frozen_events_of_its_messages() -> None:
    snapshot = {"type": "md", "ch": "book.snapshot", "sym": "ABC", "seq": 0, "bids": [], "asks": []}
    trade = {
        "type": "md",
        "ch": "trade",
        "sym": "ABC",
        "seq": 1,
        "trade_id": "t-1",
        "price": "100.01",
        "qty": 2,
        "aggressor": "buy",
        "ts_ns": 5,
    }
    client = MarketClient("http://127.0.0.1:9")
    stream = client._hub.subscribe(("md",), 10)
    with pytest.raises(ConnectionLost):
        await client._md._read(ScriptedWebSocket([snapshot, trade]), anyio.Event(), set())
    got = list(stream._sub.buffer)
    assert got == [Event("md.book.snapshot", snapshot, "ABC"), Event("md.trade", trade, "ABC")]
    assert all(type(evt) is Event for evt in got)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[1].sym = "XYZ"  # type: ignore[misc]


@pytest.mark.anyio
async def test_a_consumer_looks_the_backend_up_once_not_at_every_look_for_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # AnyIO's own checkpoint functions ask sniffio for the backend at every
    # call (about 1 µs on asyncio); a stream asks once, then calls the backend's.
    import sniffio

    from market_client._events import CANCEL_EVERY, DRAIN_EVERY

    hub = EventHub()
    stream = hub.subscribe(("md",), 10_000)
    for i in range(10 * DRAIN_EVERY):
        hub.publish(Event("md.trade", {"i": i}, "ABC"))
    lookups = 0
    current = sniffio.current_async_library

    def counting() -> str:
        nonlocal lookups
        lookups += 1
        return current()

    monkeypatch.setattr(sniffio, "current_async_library", counting)
    taken: list[int] = []
    async for evt in stream:
        taken.append(evt.data["i"])
        if len(taken) == 10 * DRAIN_EVERY:
            break
    assert taken == list(range(10 * DRAIN_EVERY))  # in order, none lost to the looks
    assert lookups <= 2 < 10 * DRAIN_EVERY // CANCEL_EVERY  # (AnyIO asks once more)


@pytest.mark.anyio
async def test_a_missed_private_event_is_raised_at_the_next_step_with_events_still_buffered() -> (
    None
):
    from market_client import EventOverflow

    hub = EventHub()
    stream = hub.subscribe((), 3)
    for i in range(3):
        hub.publish(Event("md.trade", {"i": i}, "ABC"))
    assert (await stream.__anext__()).data == {"i": 0}  # mid-count to the next look
    hub.publish(Event("md.trade", {"i": 3}, "ABC"))
    hub.publish(Event("order.fill", {"i": 4}, "ABC"))  # no room: missed, never dropped silently
    hub.publish(Event("order.fill", {"i": 5}, "ABC"))
    with pytest.raises(EventOverflow) as caught:
        await stream.__anext__()
    assert caught.value.missed == 2
    assert [(await stream.__anext__()).data["i"] for _ in range(3)] == [1, 2, 3]


def test_the_clock_is_the_loops_own_reading_without_its_python_frame() -> None:
    import asyncio
    import time

    from market_client._events import loop_clock

    class OwnClock(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return 42.0

    async def clocks() -> tuple[object, float]:
        clock = loop_clock()
        return clock, clock()

    default = asyncio.new_event_loop()
    try:
        clock, reading = default.run_until_complete(clocks())
        assert clock is time.monotonic  # what asyncio's loop.time() returns
        assert abs(reading - default.time()) < 1
    finally:
        default.close()
    own = OwnClock()
    try:
        assert own.run_until_complete(clocks())[1] == 42.0  # a loop with a clock of its own
    finally:
        own.close()
