"""The client's sans-I/O core, tested without sockets."""

from __future__ import annotations

import inspect
from collections import defaultdict
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import market_client
from market_client import MarketClientError, TooManyInFlight
from market_client._book import BookError, LocalBook
from market_client._candles import CandleSeries
from market_client._protocol import Correlator, decode_frame, encode_request
from market_client._reconnect import LinkState, ReconnectPolicy
from market_client._ring import TransactionLog
from market_client._state import MarketState, Sequencer


# -- correlation ---------------------------------------------------------------
class Slot:
    def __init__(self) -> None:
        self.frame: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def set_result(self, frame: dict[str, Any]) -> None:
        assert self.frame is None and self.error is None
        self.frame = frame

    def set_error(self, exc: BaseException) -> None:
        assert self.frame is None and self.error is None
        self.error = exc


def test_correlator_matches_by_corr_id_and_counts_the_rest() -> None:
    table: Correlator[Slot] = Correlator()
    a, b = Slot(), Slot()
    ida, idb = table.add(a), table.add(b)
    assert ida != idb and len(table) == 2
    assert table.resolve({"corr_id": idb, "status": "ok"})
    assert b.frame is not None and a.frame is None
    table.abandon(ida)  # timed out
    assert len(table) == 0
    assert not table.resolve({"corr_id": ida})
    assert table.late == 1 and a.frame is None
    assert not table.resolve({"corr_id": "never-issued"})
    assert not table.resolve({"corr_id": None})
    assert table.unsolicited == 2


def test_correlator_fails_everything_on_disconnect_and_is_bounded() -> None:
    table: Correlator[Slot] = Correlator(max_pending=3)
    slots = [Slot() for _ in range(3)]
    for slot in slots:
        table.add(slot)
    with pytest.raises(TooManyInFlight, match="3 requests already in flight") as info:
        table.add(Slot())
    assert info.value.limit == 3 and isinstance(info.value, MarketClientError)
    boom = ConnectionError("gone")
    assert table.fail_all(boom) == 3
    assert all(s.error is boom for s in slots) and len(table) == 0


def test_correlator_remembers_a_bounded_number_of_abandoned_ids() -> None:
    table: Correlator[Slot] = Correlator(remember_abandoned=2)
    ids = [table.add(Slot()) for _ in range(3)]
    for msg_id in ids:
        table.abandon(msg_id)
    assert not table.resolve({"corr_id": ids[0]})  # forgotten: unsolicited
    assert table.unsolicited == 1
    assert not table.resolve({"corr_id": ids[2]})
    assert table.late == 1


def test_envelope_and_decoding() -> None:
    frame = decode_frame(encode_request("order.place", {"sym": "ABC"}, "7", "admin"))
    assert frame is not None
    assert {k: frame[k] for k in ("type", "ver", "msg_id", "op", "payload", "as")} == {
        "type": "request",
        "ver": "1.0",
        "msg_id": "7",
        "op": "order.place",
        "payload": {"sym": "ABC"},
        "as": "admin",
    }
    assert frame["ts"].endswith("Z") and len(frame["ts"]) == 24
    assert decode_frame("nope") is None and decode_frame("[1]") is None
    assert decode_frame(b'{"a": 1}') == {"a": 1}


@given(st.lists(st.integers(0, 4_102_444_800_000_000_000), min_size=1, max_size=20))
@example([1_700_000_000_998_000_000, 1_700_000_000_999_900_000, 1_700_000_001_000_000_000])
@example([1_700_000_000_500_000_000, 1_700_000_000_501_000_000, 1_700_000_000_501_999_999])
def test_the_envelope_time_is_datetimes_rfc3339_at_every_millisecond_and_second(
    times: list[int],
) -> None:
    # The text is cached per millisecond and its date and seconds per second:
    # whatever order the clock gives, each is the same as datetime's.
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from market_client import _protocol

    for ns in sorted(times) + times + [t + 1_000_000 for t in times]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_protocol, "time", SimpleNamespace(time_ns=lambda ns=ns: ns))
            text = _protocol.rfc3339_now()
        when = datetime.fromtimestamp(ns // 1_000_000 / 1000, timezone.utc)
        assert text == when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- book and sequencer ----------------------------------------------------------
prices = st.integers(1, 40).map(lambda i: f"{100 + i / 100:.2f}")
changes = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), prices, st.integers(0, 5)), min_size=1, max_size=6
)


@settings(max_examples=200, deadline=None)
@given(st.lists(changes, max_size=40))
def test_applying_deltas_equals_rebuilding_from_the_final_state(deltas: list[Any]) -> None:
    book = LocalBook()
    book.load([["100.00", 1]], [["101.00", 1]], 0)
    truth: dict[str, dict[Decimal, int]] = {
        "buy": {Decimal("100.00"): 1},
        "sell": {Decimal("101.00"): 1},
    }
    for seq, delta in enumerate(deltas, start=1):
        book.apply([list(c) for c in delta], seq)
        for side, price, qty in delta:
            if qty:
                truth[side][Decimal(price)] = qty
            else:
                truth[side].pop(Decimal(price), None)
    rebuilt = LocalBook()
    rebuilt.load(
        [[str(p), q] for p, q in truth["buy"].items()],
        [[str(p), q] for p, q in truth["sell"].items()],
        len(deltas),
    )
    assert book.levels(None) == rebuilt.levels(None)
    bids, asks = book.levels(None)
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)


def test_bad_delta_changes_nothing() -> None:
    book = LocalBook()
    book.load([["10.00", 1]], [], 5)
    for bad in (
        [["buy", "x", 1]],
        [["sell", "x", 1]],
        [["hold", "10.00", 1]],
        [["buy", "10.00", -1]],
        [["buy", 10.0, 1]],
        [["buy", "10.00"]],
        [["buy", "10.00", True]],
        [["sell", None, 1]],
        [("hold", "10.00", 1)],
    ):
        # alone (one change: the fast path, or the general one for what it does
        # not take) and after a good change (the general path)
        for delta in (bad, [["buy", "9.00", 3], *bad]):
            with pytest.raises(BookError):
                book.apply(delta, 6)
            assert book.levels(None) == ([(Decimal("10.00"), 1)], []) and book.seq == 5


def test_one_change_in_any_accepted_shape_applies_the_same() -> None:
    for delta in ([["sell", "11.00", 2]], [("sell", "11.00", 2)], (["sell", "11.00", 2],)):
        book = LocalBook()
        book.load([["10.00", 1]], [["11.00", 5]], 5)
        book.apply(delta, 6)
        assert book.levels(None) == ([(Decimal("10.00"), 1)], [(Decimal("11.00"), 2)])
        book.apply([["buy", "10.00", 0]], 7)  # 0 removes the level
        book.apply([["buy", "9.00", 0]], 8)  # an unknown level: nothing to remove
        assert book.levels(None) == ([], [(Decimal("11.00"), 2)]) and book.seq == 8


def inc(seq: int, ch: str = "book.delta") -> dict[str, Any]:
    return {"ch": ch, "sym": "S", "seq": seq, "changes": []}


def test_sequencer_passes_in_order_and_buffers_across_a_gap() -> None:
    s = Sequencer()
    assert s.feed(inc(1)) == [] and s.need_resync  # before any snapshot
    assert s.reset(3) == [] and not s.need_resync  # inc(1) is covered by the snapshot
    assert [m["seq"] for m in s.feed(inc(4))] == [4]
    assert s.feed(inc(4)) == [] and not s.need_resync  # a duplicate is dropped
    assert s.feed(inc(7)) == [] and s.need_resync and not s.synced  # a gap
    assert s.feed(inc(8)) == [] and s.feed(inc(9)) == []
    # A snapshot as of 7 releases 8 and 9 only.
    assert [m["seq"] for m in s.reset(7)] == [8, 9]
    assert not s.need_resync and [m["seq"] for m in s.feed(inc(10))] == [10]


def test_sequencer_keeps_asking_while_a_hole_remains() -> None:
    s = Sequencer()
    s.reset(0)
    s.feed(inc(5))
    s.feed(inc(9))
    assert s.reset(6) == [] and s.need_resync  # 7 and 8 are lost for good
    assert [m["seq"] for m in s.reset(8)] == [9]
    assert not s.need_resync


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 30), st.lists(st.booleans(), min_size=1, max_size=60), st.integers(0, 60))
def test_sequencer_never_applies_twice_nor_skips(start: int, drops: list[bool], snap: int) -> None:
    """Whatever is dropped, what is applied is contiguous after the last snapshot."""
    s = Sequencer()
    s.reset(start)
    applied: list[int] = []
    for i, dropped in enumerate(drops, start=start + 1):
        if not dropped:
            applied += [m["seq"] for m in s.feed(inc(i))]
        if s.need_resync and i == start + min(snap, len(drops)):
            applied = [m["seq"] for m in s.reset(i)] or applied
            if not s.need_resync:
                applied = []
    assert applied == sorted(set(applied))
    if applied:
        assert applied == list(range(applied[0], applied[-1] + 1))


def test_market_state_resyncs_on_gap_and_on_a_bad_price() -> None:
    m = MarketState()
    m.on_md(
        {
            "type": "md",
            "ch": "book.snapshot",
            "sym": "S",
            "seq": 1,
            "bids": [["10.00", 1]],
            "asks": [["11.00", 1]],
        }
    )
    assert m.on_md({"ch": "book.delta", "sym": "S", "seq": 3, "changes": []}) == "book.delta"
    assert m.take_resyncs() == ["S"] and m.take_resyncs() == []
    m.on_md({"ch": "book.delta", "sym": "S", "seq": 4, "changes": [["buy", "10.50", 2]]})
    m.load_book("S", [["10.00", 1]], [["11.00", 1]], 3)
    assert m.symbols["S"].book.best_bid() == (Decimal("10.50"), 2)
    assert m.symbols["S"].resyncs == 1
    m.on_md({"ch": "book.delta", "sym": "S", "seq": 5, "changes": [["buy", "1e", 2]]})
    assert m.take_resyncs() == ["S"] and m.malformed == 1
    assert m.on_md({"ch": "book.delta", "sym": "S"}) is None  # no seq
    assert m.on_md({"ch": "weird", "sym": "S"}) is None
    assert m.malformed == 3


@pytest.mark.parametrize("path", ["on_frames", "on_md"])
@pytest.mark.parametrize(
    "bad",
    [
        {"ch": "book.delta", "changes": [["sell", "x", 2]]},
        {"ch": "book.delta", "changes": [["buy", "10.50", True]]},
        {"ch": "book.delta", "changes": [["hold", "10.50", 1]]},
        {"ch": "trade", "price": "10.50", "qty": True, "ts_ns": 1},
        {"ch": "trade", "price": 10.5, "qty": 1, "ts_ns": 1},
        {"ch": "trade", "price": "x", "qty": 1, "ts_ns": 1},
        {"ch": "trade", "price": "10.50", "qty": 1},
    ],
)
def test_a_bad_increment_of_a_synced_symbol_is_counted_and_resynced(
    path: str, bad: dict[str, Any]
) -> None:
    # on_frames applies the usual frame itself; on_md goes through _apply: the same outcome.
    import orjson

    m = MarketState()
    m.load_book("S", [["10.00", 1]], [["11.00", 1]], 1)
    m.add_series("S", 1000, 5)
    msg = {"type": "md", "sym": "S", "seq": 2, **bad}
    if path == "on_frames":
        assert m.on_frames([orjson.dumps(msg)]) == []
    else:
        assert m.on_md(msg) is None
    state = m.symbols["S"]
    assert m.malformed == 1 and m.take_resyncs() == ["S"]
    assert state.book.levels(None) == ([(Decimal("10.00"), 1)], [(Decimal("11.00"), 1)])
    assert not state.recent_trades and not state.series[1000].candles
    assert not state.sequencer.synced  # whatever comes next waits for the new snapshot


# -- candles -----------------------------------------------------------------------
trades = st.lists(
    st.tuples(st.integers(0, 5_000), st.integers(9000, 9100), st.integers(1, 9)), max_size=120
)


@settings(max_examples=200, deadline=None)
@given(trades, st.sampled_from([1000, 2000, 60_000]), st.integers(1, 8))
def test_candles_equal_a_direct_recomputation(
    ts: list[tuple[int, int, int]], interval: int, depth: int
) -> None:
    series = CandleSeries(interval, depth)
    t = 0
    ordered = []
    for seq, (dt_ms, cents, qty) in enumerate(ts, start=1):
        t += dt_ms * 1_000_000
        ordered.append((t, Decimal(cents) / 100, qty, seq))
        series.add_trade(*ordered[-1])
    buckets: dict[int, list[tuple[Decimal, int]]] = defaultdict(list)
    width = interval * 1_000_000
    for t_ns, price, qty, _ in ordered:
        buckets[t_ns - t_ns % width].append((price, qty))
    expected = [
        {
            "t_ns": k,
            "o": v[0][0],
            "h": max(p for p, _ in v),
            "l": min(p for p, _ in v),
            "c": v[-1][0],
            "v": sum(q for _, q in v),
            "n": len(v),
        }
        for k, v in sorted(buckets.items())
    ][-depth:]
    assert series.copies() == expected


def test_candle_seed_then_only_newer_trades() -> None:
    series = CandleSeries(1000, 5)
    series.seed([{"t_ns": 0, "o": "1", "h": "2", "l": "1", "c": "2", "v": 3, "n": 2}], 10)
    assert not series.add_trade(500_000_000, Decimal(5), 1, 10)  # already counted
    assert series.add_trade(600_000_000, Decimal(5), 1, 11)
    (candle,) = series.copies()
    assert (candle["h"], candle["c"], candle["v"], candle["n"]) == (Decimal(5), Decimal(5), 4, 3)
    with pytest.raises(ValueError, match="multiple of 1000"):
        CandleSeries(1500, 5)
    with pytest.raises(ValueError, match="depth"):
        CandleSeries(1000, 0)


# -- ring buffer -------------------------------------------------------------------
def test_sequencer_buffer_is_bounded_and_a_dropped_hole_is_seen() -> None:
    seq = Sequencer(max_buffer=100)
    seq.reset(0)
    for n in range(2, 100_002):  # seq 1 never comes: everything is buffered
        seq.feed({"seq": n})
    assert len(seq.buffer) == 100
    assert seq.reset(1) == []  # 2..99_901 were dropped: still a hole
    assert seq.need_resync and not seq.synced
    assert len(seq.reset(100_001 - 1)) == 1 and seq.synced


def test_market_state_memory_is_bounded_under_a_flood_of_gaps() -> None:
    market = MarketState(max_buffer=50)
    market.load_book("ABC", [], [], 0)
    for n in range(2, 10_000):
        market.on_md(
            {
                "type": "md",
                "ch": "trade",
                "sym": "ABC",
                "seq": n,
                "price": "1.00",
                "qty": 1,
                "ts_ns": n,
            }
        )
    state = market.symbols["ABC"]
    assert len(state.sequencer.buffer) == 50
    assert len(state.recent_trades) <= state.recent_trades.maxlen  # type: ignore[operator]
    assert market.take_resyncs() == ["ABC"] and market.take_resyncs() == []
    market.unsync_all()
    assert not state.recent_trades and not state.sequencer.buffer
    assert market.out_of_sync() == ["ABC"]  # readable at its last state meanwhile
    market.load_book("ABC", [["1.00", 3]], [], 5)
    assert market.out_of_sync() == []


# -- reconnection ---------------------------------------------------------------
def test_backoff_doubles_to_the_cap_with_jitter_below() -> None:
    policy = ReconnectPolicy()  # 0.1 s doubling to 5 s
    top = [policy.delay(n, rand=lambda: 0.0) for n in range(10)]
    assert top == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]
    low = [policy.delay(n, rand=lambda: 1.0) for n in range(3)]
    assert low == [pytest.approx(0.05), pytest.approx(0.1), pytest.approx(0.2)]
    assert policy.delay(10_000) <= 5.0  # no float overflow on a long outage
    assert ReconnectPolicy(jitter=0).delay(2) == pytest.approx(0.4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"maximum": float("inf")},
        {"initial": 2, "maximum": 1},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"deadline": -1},
        {"initial": "1"},
        {"stable_after": -1},
        {"stable_after": float("inf")},
    ],
)
def test_reconnect_policy_refuses_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        ReconnectPolicy(**kwargs)


def test_link_state_counts_outages_and_deadline() -> None:
    policy = ReconnectPolicy(deadline=10)
    link = LinkState("md")
    assert link.restored(0.0) == 0.0 and link.reconnects == 0  # the first connection
    link.lost(100.0)
    assert not link.up and link.disconnects == 1
    assert link.failed_attempt() == 1 and link.failed_attempt() == 2
    assert not link.overdue(109.9, policy) and link.overdue(110.0, policy)
    assert link.restored(100.25) == pytest.approx(0.25)
    assert link.stats() == {
        "up": True,
        "disconnects": 1,
        "reconnects": 1,
        "last_downtime_s": pytest.approx(0.25),
        "max_downtime_s": pytest.approx(0.25),
    }
    assert not link.overdue(1e9, policy)


def test_a_connection_that_drops_soon_after_it_came_back_does_not_reset_the_backoff() -> None:
    # A gateway that drops every connection at once (a 20 MB frame, say):
    # the attempts go on counting, so the delays grow to the cap.
    policy = ReconnectPolicy(stable_after=5, jitter=0)
    link = LinkState("md")
    link.restored(0.0)
    delays = []
    now = 10.0
    for _ in range(8):
        link.lost(now, policy)  # the first after 10 s up; then each 0.1 s after it came back
        delays.append(policy.delay(link.attempts))
        now += delays[-1]
        link.restored(now)
        now += 0.1
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    # One that stayed up long enough was good: the next outage starts afresh.
    link.lost(now + 5, policy)
    assert link.attempts == 0 and policy.delay(link.attempts) == 0.1


def test_a_stream_that_goes_back_is_counted_and_resynced_a_repeat_only_counted() -> None:
    seq_of = Sequencer()
    seq_of.reset(10)
    delta = lambda n: {"ch": "book.delta", "seq": n}  # noqa: E731
    assert seq_of.feed(delta(9)) == []  # the stream catching up with the snapshot
    assert (seq_of.repeated, seq_of.restarted, seq_of.need_resync) == (0, 0, False)
    assert seq_of.feed(delta(11)) == [delta(11)]
    assert seq_of.feed(delta(11)) == []  # a repeat of the last increment
    assert (seq_of.repeated, seq_of.restarted, seq_of.synced) == (1, 0, True)
    assert seq_of.feed(delta(3)) == []  # the stream restarted below the book
    assert (seq_of.restarted, seq_of.synced, seq_of.need_resync) == (1, False, True)
    assert seq_of.reset(2) == [delta(3)]  # the new stream's snapshot, then what followed


def test_market_state_reports_a_restarted_stream_once() -> None:
    m = MarketState()
    m.load_book("S", [["10.00", 1]], [["11.00", 1]], 5)
    delta = {"type": "md", "ch": "book.delta", "sym": "S", "changes": [["buy", "10.00", 2]]}
    assert len(m.on_frames([orjson.dumps({**delta, "seq": 6})])) == 1
    m.on_frames([orjson.dumps({**delta, "seq": 2})])
    assert m.resync_wanted
    assert m.take_restarts() == [{"sym": "S", "seq": 2}] and m.take_restarts() == []
    assert m.take_resyncs() == ["S"]


def test_a_log_throttle_lets_one_a_period_through_with_the_count_held_back() -> None:
    from market_client._logs import LogThrottle, held_back

    now = [0.0]
    throttle = LogThrottle(period=10, clock=lambda: now[0])
    assert throttle.take() == 0  # the first, at once
    assert [throttle.take() for _ in range(5)] == [None] * 5
    now[0] = 9.9
    assert throttle.take() is None
    now[0] = 10.0
    assert throttle.take() == 6  # the next period: with the six held back
    assert throttle.take() is None
    assert held_back(0) == "" and held_back(6) == " (6 more like it were not logged)"


def test_ring_buffer_keeps_the_newest() -> None:
    log = TransactionLog(3)
    for i in range(5):
        log.append({"i": i})
    assert [e["i"] for e in log.get()] == [2, 3, 4]
    assert [e["i"] for e in log.get(2)] == [3, 4] and log.get(0) == []
    log.configure(2)
    assert [e["i"] for e in log.get()] == [3, 4] and log.capacity == 2
    log.configure(10)
    log.append({"i": 5})
    assert [e["i"] for e in log.get()] == [3, 4, 5]
    log.clear()
    assert log.get() == [] and len(log) == 0
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="capacity"):
            log.configure(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        log.get(-1)


# -- public surface ------------------------------------------------------------------
PUBLIC_API = {
    "AuthError", "BestBidAsk", "BlockingClient", "BlockingEvents", "BookReply", "BookSnapshot",
    "CandleDict", "ConnectError", "ConnectionLost", "Event", "EventOverflow", "EventStream",
    "FillDict", "GatewayError", "HandshakeReply", "HttpxWsTransport", "LoginReply",
    "MarketClient", "MarketClientError", "OrderDict", "OrderReply", "PicowsTransport",
    "Portfolio", "PositionDict", "Quote", "ReconnectFailed", "ReconnectPolicy", "RequestSession",
    "RequestTimeout", "SessionClosed", "SymbolDict", "TooManyInFlight", "TransportClosed",
    "TransportOpenError", "TrioWebsocketTransport", "WebSocket", "WebSocketTransport",
    "WebsocketsTransport", "__version__", "compiled",
}  # fmt: skip


def test_all_matches_the_public_names() -> None:
    public = {
        n
        for n in dir(market_client)
        if not n.startswith(("_", "@")) and not inspect.ismodule(getattr(market_client, n))
    }
    assert set(market_client.__all__) - {"__version__"} == public
    assert set(market_client.__all__) == PUBLIC_API, "a public name was added or removed"
    assert market_client.__all__ == sorted(market_client.__all__)
    for name in market_client.__all__:
        obj = getattr(market_client, name)
        if name != "__version__":
            assert obj.__doc__, f"{name} has no docstring"


def test_exception_tree() -> None:
    from market_client import (
        AuthError,
        ConnectError,
        ConnectionLost,
        EventOverflow,
        GatewayError,
        MarketClientError,
        ReconnectFailed,
        RequestTimeout,
        SessionClosed,
    )

    for cls in (
        GatewayError,
        AuthError,
        ConnectError,
        ConnectionLost,
        ReconnectFailed,
        RequestTimeout,
        SessionClosed,
        EventOverflow,
    ):
        assert issubclass(cls, MarketClientError)
    assert issubclass(RequestTimeout, TimeoutError)
    assert issubclass(AuthError, GatewayError)
    err = GatewayError("invalid_price", "off tick", "order.place", {"x": 1})
    assert (err.code, err.message, err.op, err.response) == (
        "invalid_price",
        "off tick",
        "order.place",
        {"x": 1},
    )


def _order(status: str, filled: int, oid: str = "o-1") -> dict[str, Any]:
    return {"order_id": oid, "sym": "ABC", "status": status, "filled_qty": filled, "qty": 5}


def test_a_late_reply_cannot_revive_a_finished_order() -> None:
    from market_client._private import OwnOrders

    orders = OwnOrders()
    orders.apply(_order("filled", 5))  # the reader applied the fill event first
    orders.apply(_order("open", 0))  # then the waiting task applied the place reply
    assert orders.open_orders() == []


def test_reconciliation_never_goes_back_and_ignores_a_list_behind_us() -> None:
    from market_client._private import OwnOrders

    orders = OwnOrders()
    orders.apply(_order("partially_filled", 3))
    assert orders.to_check([_order("partially_filled", 2)]) == []  # the list is older
    assert orders.to_check([_order("partially_filled", 4)]) == ["o-1"]  # it is ahead
    assert not orders.settle(_order("partially_filled", 2))
    assert orders.open_orders()[0]["filled_qty"] == 3
    assert orders.to_check([]) == ["o-1"]  # no longer listed: it finished while away
    assert orders.settle(_order("filled", 5)) and orders.open_orders() == []


def test_a_restarted_gateway_may_reuse_order_ids() -> None:
    from market_client._private import OwnOrders

    orders = OwnOrders()
    orders.apply(_order("filled", 5))
    orders.gateway_restarted()
    assert orders.apply(_order("open", 0)) and len(orders) == 1
