"""The replay gateway: a recording served back through the protocol, and the fill model.

The socket tests record the busy simulator for a moment and replay it at
``--speed max``; the model tests drive `ReplayExchange` without sockets.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_client import MarketClient
from market_client.recording import iter_raw
from market_client.simulator import serve
from market_client.simulator._accounts import Session
from market_client.simulator._exchange import OpError, SymbolSpec
from market_client.simulator._replay import ReplayExchange, parse_time
from market_client.testing import Simulator, wait_until

pytestmark = pytest.mark.anyio

ABC = SymbolSpec("ABC", Decimal("0.01"))


def recorded_md(directory: Path) -> list[dict[str, Any]]:
    out = []
    for _, channel, raw in iter_raw(directory):
        msg = orjson.loads(raw)
        if channel == "md" and msg.get("ch") != "heartbeat":
            out.append(msg)
    return out


class RefBooks:
    """Books rebuilt from recorded frames, the way the tables docs say."""

    def __init__(self) -> None:
        self.books: dict[str, dict[str, dict[str, int]]] = {}

    def apply(self, msg: dict[str, Any]) -> None:
        sym = msg["sym"]
        if msg["ch"] == "book.snapshot":
            self.books[sym] = {
                "buy": dict(msg["bids"]),
                "sell": dict(msg["asks"]),
            }
        elif msg["ch"] == "book.delta":
            for side, price, qty in msg["changes"]:
                if qty:
                    self.books[sym][side][price] = qty
                else:
                    self.books[sym][side].pop(price, None)

    def levels(self, sym: str) -> tuple[list[tuple[Decimal, int]], list[tuple[Decimal, int]]]:
        book = self.books[sym]
        bids = sorted(((Decimal(p), q) for p, q in book["buy"].items()), reverse=True)
        asks = sorted((Decimal(p), q) for p, q in book["sell"].items())
        return bids, asks


async def test_replay_gives_the_recorded_md_and_books(busy_sim: Simulator, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    async with MarketClient.session(busy_sim.url, record=rec) as recorder:
        await wait_until(lambda: recorder.stats()["md_messages"] >= 300)
    recorded = recorded_md(rec)
    assert len(recorded) > 100
    last_seq = {m["sym"]: m["seq"] for m in recorded if "seq" in m}

    received: list[dict[str, Any]] = []
    books: list[tuple[dict[str, Any], Any]] = []

    async with serve(replay=rec, speed=math.inf) as replay:

        def on_md(msg: dict[str, Any]) -> None:
            received.append(msg)
            snap = client.book_snapshot(msg["sym"], depth=10_000)
            books.append((msg, (snap["seq"], snap["bids"], snap["asks"])))

        client = MarketClient.session(replay.url, on_md_event=on_md)
        async with client:
            await wait_until(
                lambda: all(client.book_snapshot(s)["seq"] >= q for s, q in last_seq.items())
            )
        assert replay.gateway.stats.md_dropped_slow == 0

    # The same messages (seq, prices, quantities) in order; a snapshot sent on
    # connect is made by the replay, at its own time.
    def timeless(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in m.items() if k != "ts_ns"} if m["ch"] == "book.snapshot" else m
            for m in msgs
        ]

    assert timeless(received) == timeless(recorded)
    assert [m for m in received if m["ch"] != "book.snapshot"] == [
        m for m in recorded if m["ch"] != "book.snapshot"
    ]
    ref = RefBooks()
    for msg, (seq, bids, asks) in books:
        ref.apply(msg)
        assert seq == msg["seq"]
        assert (bids, asks) == ref.levels(msg["sym"])


# -- the fill model, without sockets ------------------------------------------------------


def exchange_with(bids: list[list[Any]], asks: list[list[Any]], seq: int = 10) -> ReplayExchange:
    ex = ReplayExchange([ABC], clock_ns=lambda: 1_000)
    ex.apply(
        {"type": "md", "ch": "book.snapshot", "sym": "ABC", "seq": seq, "bids": bids, "asks": asks}
    )
    return ex


def session_of(ex: ReplayExchange) -> Session:
    return Session(ex.new_user(), logged_in=True)


def place(ex: ReplayExchange, session: Session, **payload: Any) -> dict[str, Any]:
    return ex.dispatch(session, "order.place", {"sym": "ABC", **payload})


def trade(ex: ReplayExchange, seq: int, price: str, qty: int, aggressor: str) -> None:
    ex.apply(
        {
            "type": "md",
            "ch": "trade",
            "sym": "ABC",
            "seq": seq,
            "trade_id": f"t-{seq}",
            "price": price,
            "qty": qty,
            "aggressor": aggressor,
            "ts_ns": seq,
        }
    )


def delta(ex: ReplayExchange, seq: int, *changes: list[Any]) -> None:
    ex.apply({"type": "md", "ch": "book.delta", "sym": "ABC", "seq": seq, "changes": list(changes)})


def test_a_crossing_order_fills_at_the_recorded_levels() -> None:
    ex = exchange_with([["99.99", 4]], [["100.01", 5], ["100.02", 3], ["100.05", 9]])
    s = session_of(ex)
    reply = place(ex, s, side="buy", type="limit", price="100.02", qty=7, tif="IOC")
    assert [(f["price"], f["qty"], f["liquidity"]) for f in reply["fills"]] == [
        ("100.01", 5, "taker"),
        ("100.02", 2, "taker"),
    ]
    # The recorded market is unchanged (own fills do not move it) ...
    assert ex.market.symbols["ABC"].book.levels("sell") == [(10001, 5), (10002, 3), (10005, 9)]
    # ... but what we took stays taken until the recording changes that level.
    again = place(ex, s, side="buy", type="market", qty=2)
    assert [(f["price"], f["qty"]) for f in again["fills"]] == [("100.02", 1), ("100.05", 1)]
    delta(ex, 11, ["sell", "100.01", 5])
    third = place(ex, s, side="buy", type="market", qty=1)
    assert [(f["price"], f["qty"]) for f in third["fills"]] == [("100.01", 1)]
    position = s.user.positions["ABC"]
    assert position.qty == 10


def test_fok_fills_fully_or_not_at_all() -> None:
    ex = exchange_with([], [["100.01", 2]])
    s = session_of(ex)
    with pytest.raises(OpError):
        ex.dispatch(s, "order.cancel", {"order_id": "o-404"})
    reply = place(ex, s, side="buy", type="limit", price="100.01", qty=3, tif="FOK")
    assert reply["fills"] == []
    assert reply["order"]["status"] == "cancelled"


def test_a_resting_order_fills_only_after_the_queue_ahead_has_traded() -> None:
    ex = exchange_with([["100.00", 10]], [["100.02", 5]])
    s = session_of(ex)
    order = place(ex, s, side="buy", type="limit", price="100.00", qty=3)["order"]
    assert order["status"] == "open"
    trade(ex, 11, "100.00", 6, "sell")
    delta(ex, 12, ["buy", "100.00", 4])
    assert s.user.open_orders[order["order_id"]].filled_qty == 0  # 4 still ahead
    trade(ex, 13, "100.00", 5, "sell")  # 4 ahead, then 1 reaches us
    delta(ex, 14, ["buy", "100.00", 0])
    assert s.user.orders[order["order_id"]].filled_qty == 1
    trade(ex, 15, "100.00", 9, "sell")
    assert s.user.orders[order["order_id"]].status == "filled"
    fills = list(ex.orders.fill_log)
    assert [(f["price"], f["qty"], f["liquidity"]) for f in fills] == [
        ("100.00", 1, "maker"),
        ("100.00", 2, "maker"),
    ]


def test_cancels_shrink_the_queue_pro_rata_and_a_trade_through_fills() -> None:
    ex = exchange_with([["100.00", 10]], [["100.02", 5]])
    s = session_of(ex)
    order = place(ex, s, side="buy", type="limit", price="100.00", qty=2)["order"]
    delta(ex, 11, ["buy", "100.00", 5])  # 5 of 10 cancelled: half of those ahead of us
    rest = ex.orders.resting["ABC"][("buy", 10000)][0]
    assert rest.ahead == 5
    delta(ex, 12, ["buy", "100.00", 20])  # joins behind us
    assert rest.ahead == 5
    trade(ex, 13, "99.99", 1, "sell")  # a seller took less than our bid: we were first
    filled = s.user.orders[order["order_id"]]
    assert filled.status == "filled"
    assert ex.orders.fill_log[-1]["price"] == "100.00"


def test_a_cancelled_resting_order_never_fills() -> None:
    ex = exchange_with([["100.00", 1]], [["100.02", 5]])
    s = session_of(ex)
    order = place(ex, s, side="buy", type="limit", price="100.00", qty=2)["order"]
    ex.dispatch(s, "order.cancel", {"order_id": order["order_id"]})
    trade(ex, 11, "99.00", 50, "sell")
    assert not ex.orders.fill_log
    assert s.user.orders[order["order_id"]].status == "cancelled"


@settings(max_examples=60, deadline=None)
@given(
    ahead=st.integers(0, 50),
    qty=st.integers(1, 20),
    trades=st.lists(st.integers(1, 15), max_size=12),
)
def test_queue_fills_are_what_trades_beyond_the_queue(
    ahead: int, qty: int, trades: list[int]
) -> None:
    ex = exchange_with([["100.00", ahead]] if ahead else [], [["100.02", 5]])
    s = session_of(ex)
    order = place(ex, s, side="buy", type="limit", price="100.00", qty=qty)["order"]
    for i, q in enumerate(trades):
        trade(ex, 11 + i, "100.00", q, "sell")
    filled = s.user.orders[order["order_id"]].filled_qty
    assert filled == min(qty, max(0, sum(trades) - ahead))
    assert sum(f["qty"] for f in ex.orders.fill_log) == filled
    assert s.user.positions.get("ABC") is None or s.user.positions["ABC"].qty == filled


def test_the_recorded_seq_and_candles_are_served() -> None:
    ex = exchange_with([["100.00", 3]], [["100.02", 5]], seq=41)
    trade(ex, 42, "100.02", 2, "buy")
    session = session_of(ex)
    book = ex.dispatch(session, "book.get", {"sym": "ABC"})
    assert book["seq"] == 42
    candles = ex.dispatch(session, "candles.get", {"sym": "ABC", "interval_ms": 1000})
    assert candles["last_seq"] == 42
    assert candles["candles"][0]["v"] == 2


def test_bad_recorded_frames_are_counted_not_applied() -> None:
    ex = exchange_with([["100.00", 3]], [["100.02", 5]])
    assert not ex.apply({"type": "md", "ch": "trade", "sym": "ABC", "seq": 11, "price": 5})
    assert not ex.apply({"type": "md", "ch": "book.delta", "sym": "ABC", "seq": 11})
    assert ex.bad_frames == 2
    assert not ex.apply({"type": "md", "ch": "trade", "sym": "NOPE", "seq": 1})


def test_parse_time() -> None:
    assert parse_time("1795622931239087136") == 1795622931239087136
    assert parse_time("1970-01-01T00:00:01Z") == 1_000_000_000
    assert parse_time("1970-01-01T00:00:00.5") == 500_000_000
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


async def test_replay_refuses_a_folder_without_a_recording(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no recording"):
        async with serve(replay=tmp_path, speed=math.inf):
            pass  # pragma: no cover
    await anyio.lowlevel.checkpoint()
