"""`Event` (a repr that says what happened, typed views of order events) and its fan-out.

The fan-out: one bounded memory object stream per ``events()`` subscriber,
its overflow policy, how it closes, and how a consumer shares the loop.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import warnings
from typing import Any

import anyio
import pytest

from market_client import ConnectionLost, Event, EventOverflow, MarketClient
from market_client._events import TURN_EVERY, EventHub, EventStream, new_event
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


async def taken(stream: EventStream) -> list[Event]:
    """Every event ``stream`` yields until its iteration ends (its hub closed, say)."""
    return [evt async for evt in stream]


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


@pytest.mark.anyio
async def test_an_md_event_with_no_room_is_dropped_and_counted() -> None:
    hub = EventHub()
    full, roomy = hub.subscribe(("md",), 1), hub.subscribe(("md",), 5)
    for seq in (1, 2, 3):
        hub.deliver(new_event("md.trade", {"seq": seq}, "ABC"), hub.targets("md.trade"))
    hub.close()
    assert [e.data["seq"] for e in await taken(full)] == [1]  # no EventOverflow: dropped
    assert [e.data["seq"] for e in await taken(roomy)] == [1, 2, 3]
    assert full.dropped == 2 and roomy.dropped == 0
    assert hub.dropped_md == 2 and hub.missed_private == 0


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


@pytest.mark.anyio
async def test_the_hub_knows_who_wants_a_kind_as_subscribers_come_and_go() -> None:
    hub = EventHub()
    assert not hub.wants("md.trade") and not hub.has_subscribers
    orders = hub.subscribe(("order",), 10)
    assert hub.wants("order.fill") and not hub.wants("md.trade")
    md = hub.subscribe(("md",), 10)
    assert hub.wants("md.trade") and hub.wants("md.book.delta") and not hub.wants("mdx")
    # What the MD reader uses: the wanting subscribers, handed to deliver.
    assert len(hub.targets("md.trade")) == 1 and hub.targets("mdx") == ()
    assert len(hub.targets("order.fill")) == 1
    assert hub.targets("order.fill") != hub.targets("md.trade")
    hub.deliver(Event("md.trade", {"n": 1}, "ABC"), hub.targets("md.trade"))
    md.close()
    assert hub.targets("md.trade") == ()
    assert not hub.wants("md.trade") and hub.wants("order.fill")
    assert await taken(md) == []  # unsubscribed: what was buffered is discarded
    hub.close()
    assert not hub.wants("order.fill") and not hub.has_subscribers
    assert await taken(orders) == []


@pytest.mark.anyio
async def test_publish_reaches_exactly_who_wants_the_kind_as_subscribers_come_and_go() -> None:
    hub = EventHub()

    async def held(stream: EventStream) -> list[str]:
        return [e.data["n"] for e in await taken(stream)]

    trades = hub.subscribe(("md.trade",), 10)
    hub.publish(Event("md.trade", {"n": "t1"}, "ABC"))
    hub.publish(Event("order.fill", {"n": "f1"}, "ABC"))  # nobody wants it: worked out as such
    everything = hub.subscribe((), 10)
    orders = hub.subscribe(("order",), 10)
    hub.publish(Event("order.fill", {"n": "f2"}, "ABC"))  # the newcomers are asked again
    hub.publish(Event("md.trade", {"n": "t2"}, "ABC"))
    trades.close()
    hub.publish(Event("md.trade", {"n": "t3"}, "ABC"))
    hub.close()
    hub.publish(Event("md.trade", {"n": "t4"}, "ABC"))  # the session is over: nobody gets it
    assert await held(trades) == []  # closed: emptied, and given nothing more
    # The hub closed: each takes what was buffered for it, then its iteration ends.
    assert await held(everything) == ["f2", "t2", "t3"]
    assert await held(orders) == ["f2"]
    late = hub.subscribe((), 10)
    assert await held(late) == []  # a subscriber after the end ends at once


@pytest.mark.anyio
async def test_a_subscriber_leaving_while_the_hub_works_out_a_kind_leaves_nothing_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from market_client._events import _Subscriber

    hub = EventHub()
    first, second = hub.subscribe(("md",), 10), hub.subscribe(("md",), 10)
    wants = _Subscriber.wants

    def closing_wants(sub: _Subscriber, kind: str) -> bool:
        first.close()  # as the garbage collector finalizing a stream would
        return wants(sub, kind)

    monkeypatch.setattr(_Subscriber, "wants", closing_wants)
    hub.publish(Event("md.trade", {"n": 1}, "ABC"))  # offered to `first` too: skipped
    monkeypatch.setattr(_Subscriber, "wants", wants)
    hub.publish(Event("md.trade", {"n": 2}, "ABC"))
    assert len(hub.targets("md.trade")) == 1
    hub.close()
    assert [e.data["n"] for e in await taken(second)] == [1, 2]
    assert await taken(first) == []


@pytest.mark.anyio
async def test_a_cancelled_consumer_stops_within_a_turn_of_buffered_events() -> None:
    hub = EventHub()
    stream = hub.subscribe(("md",), 1000)
    for i in range(500):
        hub.publish(Event("md.trade", {"i": i}, "ABC"))
    count = 0
    with anyio.CancelScope() as scope:
        async for _ in stream:
            count += 1
            if count == 3:
                scope.cancel()  # the buffer still holds hundreds
    assert 3 < count < 3 + TURN_EVERY
    assert [e.data["i"] async for e in _ended(hub, stream)][:1] == [count]  # none lost
    stream.close()


def _ended(hub: EventHub, stream: EventStream) -> EventStream:
    hub.close()
    return stream


@pytest.mark.anyio
async def test_a_consumer_under_a_flood_gives_the_other_tasks_a_turn_every_few_events() -> None:
    hub = EventHub()
    stream = hub.subscribe(("md",), 10_000)
    for i in range(10 * TURN_EVERY):
        hub.publish(Event("md.trade", {"i": i}, "ABC"))
    turns = 0
    seen: list[int] = []  # the other task's turns so far, at each event taken

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    got: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        async for evt in stream:
            got.append(evt.data["i"])
            seen.append(turns)
            if len(got) == 10 * TURN_EVERY:
                break
        tg.cancel_scope.cancel()
    stream.close()
    assert got == list(range(10 * TURN_EVERY))  # in order, none lost to the turns
    # A turn every TURN_EVERY events; Trio may run the other task just before
    # one turn and just after the next, so it is seen to move every two.
    window = 2 * TURN_EVERY
    assert all(seen[i + window] > seen[i] for i in range(len(seen) - window))
    assert seen[-1] <= 11  # and no more than one turn every TURN_EVERY events


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
    client._hub.close()
    got = await taken(stream)
    assert got == [Event("md.book.snapshot", snapshot, "ABC"), Event("md.trade", trade, "ABC")]
    assert all(type(evt) is Event for evt in got)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[1].sym = "XYZ"  # type: ignore[misc]


@pytest.mark.anyio
async def test_a_missed_private_event_is_raised_at_the_next_step_with_events_still_buffered() -> (
    None
):
    hub = EventHub()
    stream = hub.subscribe((), 3)
    for i in range(3):
        hub.publish(Event("md.trade", {"i": i}, "ABC"))
    assert (await stream.__anext__()).data == {"i": 0}
    hub.publish(Event("md.trade", {"i": 3}, "ABC"))
    hub.publish(Event("order.fill", {"i": 4}, "ABC"))  # no room: missed, never dropped silently
    hub.publish(Event("connection.lost", {"i": 5}))
    hub.publish(Event("md.trade", {"i": 6}, "ABC"))  # market data: dropped and counted
    assert (hub.missed_private, hub.dropped_md, stream.dropped) == (2, 1, 1)
    with pytest.raises(EventOverflow) as caught:
        await stream.__anext__()
    assert caught.value.missed == 2
    assert [(await stream.__anext__()).data["i"] for _ in range(3)] == [1, 2, 3]
    hub.publish(Event("order.fill", {"i": 7}, "ABC"))  # room again
    assert (await stream.__anext__()).data["i"] == 7
    stream.close()


@pytest.mark.anyio
async def test_a_private_event_missed_before_the_session_closed_is_still_raised() -> None:
    hub = EventHub()
    stream = hub.subscribe((), 1)
    hub.publish(Event("order.accepted", {"i": 0}, "ABC"))
    hub.publish(Event("order.fill", {"i": 1}, "ABC"))  # missed
    hub.close()
    with pytest.raises(EventOverflow, match="1 private event"):
        await stream.__anext__()
    assert [e.data["i"] for e in await taken(stream)] == [0]


@pytest.mark.anyio
async def test_tasks_sharing_a_stream_each_get_their_own_events_and_all_end_at_the_close() -> None:
    hub = EventHub()
    stream = hub.subscribe(("order",), 10)
    got: list[list[int]] = [[], [], []]

    async def read(into: list[int]) -> None:
        async for evt in stream:
            into.append(evt.data["i"])

    async with anyio.create_task_group() as tg:
        for into in got:
            tg.start_soon(read, into)
        await anyio.wait_all_tasks_blocked()  # all three wait on the empty stream
        for i in range(6):
            hub.publish(Event("order.fill", {"i": i}, "ABC"))
        await anyio.wait_all_tasks_blocked()
        hub.close()  # every waiting task ends; the task group with them
    assert sorted(i for into in got for i in into) == list(range(6))  # each once
    stream.close()


@pytest.mark.anyio
async def test_unsubscribing_ends_every_task_waiting_on_the_stream() -> None:
    hub = EventHub()
    stream = hub.subscribe(("order",), 10)
    ended: list[str] = []

    async def read(name: str) -> None:
        async for _ in stream:
            pass
        ended.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read, "a")
        tg.start_soon(read, "b")
        await anyio.wait_all_tasks_blocked()
        assert hub.has_subscribers
        stream.close()  # not the session: one subscriber leaves, its waiters with it
    assert sorted(ended) == ["a", "b"]
    assert not hub.has_subscribers and not hub.closed
    hub.publish(Event("order.fill", {}, "ABC"))  # offered to nobody, raises nothing
    async with stream:  # closing again, by leaving a block, is harmless
        assert await taken(stream) == []


@pytest.mark.anyio
async def test_leaving_async_with_unsubscribes_and_discards_what_is_buffered() -> None:
    hub = EventHub()
    async with hub.subscribe(("md",), 10) as stream:
        hub.publish(Event("md.trade", {"i": 0}, "ABC"))
        hub.publish(Event("md.trade", {"i": 1}, "ABC"))
        assert (await stream.__anext__()).data["i"] == 0
    assert not hub.has_subscribers
    assert await taken(stream) == []


@pytest.mark.parametrize("in_a_cycle", [False, True], ids=["dropped", "in-a-cycle"])
def test_a_stream_dropped_unclosed_unsubscribes_without_a_resource_warning(
    in_a_cycle: bool,
) -> None:
    hub = EventHub()
    keep = hub.subscribe(("md",), 10)
    stream = hub.subscribe(("md",), 10)
    hub.publish(Event("md.trade", {"i": 0}, "ABC"))  # something left buffered in it
    if in_a_cycle:  # freed by the cycle collector, in no order of AnyIO's choosing
        cycle: list[Any] = [stream]
        cycle.append(cycle)
        del cycle
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del stream
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert len(hub.targets("md.trade")) == 1  # `keep` only
    keep.close()
    assert not hub.has_subscribers


@pytest.mark.anyio
async def test_a_subscriber_whose_receiving_end_closed_is_removed_at_the_next_event() -> None:
    hub = EventHub()
    stream = hub.subscribe(("md",), 10)
    stream._receive.close()  # as if the stream were gone but not unsubscribed
    hub.publish(Event("md.trade", {}, "ABC"))  # BrokenResourceError: skipped, not raised
    assert not hub.has_subscribers and hub.dropped_md == 0
    assert await taken(stream) == []
    stream.close()
