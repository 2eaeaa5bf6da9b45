"""Every bound of the gateway, filled: the rule that holds it and the frames that still fit.

The numbers are those of `Limits` and docs/protocol.md ("Bounds of this
gateway"). Where filling a bound for real would take seconds (100,000 price
levels a side), the test builds the largest frame the bound allows and
measures it instead.
"""

from __future__ import annotations

import argparse

import orjson
import pytest

from market_client._wire import MAX_CLIENT_ORDER_ID, MD_FRAME_LIMIT
from market_client.simulator import DEFAULT_SYMBOLS
from market_client.simulator.__main__ import add_arguments, config_from
from market_client.simulator._candles import CANDLE_SECONDS_KEPT, CandleSeries
from market_client.simulator._exchange import Limits
from market_client.simulator._orders import MAX_QTY

from .test_gateway_rules import ORDER, Desk

DEFAULTS = Limits()


def size(payload: object) -> int:
    return len(orjson.dumps(payload))


def coid(i: int) -> str:
    return f"{i:0{MAX_CLIENT_ORDER_ID}d}"


def test_open_orders_per_user_are_capped_and_the_extra_one_is_rejected() -> None:
    desk = Desk(limits=Limits(max_open_orders=3))
    session, other = desk.user(), desk.user()
    for i in range(3):
        desk.place(session, side="buy", price=f"1.0{i}", qty=1)
    # Reported as a halt or a duplicate client_order_id is: an error reply, a
    # `rejected` order kept in the history and an `order.rejected` event.
    assert (
        desk.error(session, "order.place", {**ORDER, "client_order_id": "x"}) == "too_many_orders"
    )
    (event,) = desk.sink.events_of(session.user, "order.rejected")
    assert event["payload"]["reason"] == "too_many_orders"
    assert event["payload"]["order"]["status"] == "rejected"
    assert desk.ok(session, "order.history", {"client_order_id": "x"})["order"]["status"] == (
        "rejected"
    )
    # Orders that never rest are not capped; nor is another user.
    assert desk.place(session, side="buy", price="1.00", qty=1, tif="IOC")["order"]["status"] == (
        "cancelled"
    )
    assert desk.place(session, side="sell", type="market", qty=1)["order"]["filled_qty"] == 1
    desk.place(other, side="buy", price="1.00", qty=1)
    # Once one is no longer open, there is room again.
    assert desk.place(session, side="buy", price="1.00", qty=1)["order"]["status"] == "open"


def test_order_list_all_at_the_default_bounds_fits_a_frame() -> None:
    desk = Desk()
    session = desk.user()
    user = session.user
    closed_kept = DEFAULTS.max_closed_orders
    for i in range(closed_kept + 10):
        desk.ex.place(
            user, {**ORDER, "price": "99999999.99", "tif": "IOC", "client_order_id": coid(i)}
        )
    assert len(user.orders) == closed_kept  # the oldest 10 are forgotten ...
    assert len(user.by_coid) == closed_kept  # ... with their client_order_id
    assert coid(0) not in user.by_coid and coid(closed_kept + 9) in user.by_coid
    for i in range(DEFAULTS.max_open_orders):
        desk.ex.place(user, {**ORDER, "price": f"{10_000_000 + i}.99", "client_order_id": coid(-i)})
    assert desk.error(session, "order.place", ORDER) == "too_many_orders"
    reply = desk.call(session, "order.list", {"status": "all"})
    assert len(reply["payload"]["orders"]) == closed_kept + DEFAULTS.max_open_orders
    assert size(reply) < MD_FRAME_LIMIT // 4
    snapshot = desk.ex.snapshot("ABC")
    assert len(snapshot["bids"]) == DEFAULTS.max_open_orders and size(snapshot) < MD_FRAME_LIMIT


def test_price_levels_per_side_are_capped() -> None:
    desk = Desk(limits=Limits(max_levels_per_side=3))
    one, two = desk.user(), desk.user()
    for price in ("1.00", "1.01", "1.02"):
        desk.place(one, side="buy", price=price, qty=1)
    assert desk.error(two, "order.place", {**ORDER, "price": "1.03"}) == "too_many_orders"
    assert desk.place(two, side="buy", price="1.01", qty=5)["order"]["status"] == "open"
    assert desk.place(two, side="sell", price="2.00", qty=1)["order"]["status"] == "open"
    assert len(desk.ex.snapshot("ABC")["bids"]) == 3


def test_the_largest_snapshot_the_level_bound_allows_fits_a_frame() -> None:
    # Widest level: the highest price of the symbol with the longest price text,
    # and a level total of every user's every open order at the largest qty.
    widest = max((str(DEFAULTS.max_price_ticks * s.tick) for s in DEFAULT_SYMBOLS), key=len)
    level_qty = DEFAULTS.max_users * DEFAULTS.max_open_orders * MAX_QTY
    levels = [[widest, level_qty]] * DEFAULTS.max_levels_per_side
    snapshot = {
        "type": "md",
        "ch": "book.snapshot",
        "sym": "X" * 40,
        "seq": 2**63 - 1,
        "bids": levels,
        "asks": levels,
        "ts_ns": 2**63 - 1,
    }
    assert size(snapshot) < MD_FRAME_LIMIT


def test_one_order_makes_a_bounded_number_of_executions() -> None:
    desk = Desk(limits=Limits(max_fills_per_order=3))
    makers, taker = desk.user(), desk.user()
    for _ in range(5):
        desk.place(makers, side="sell", price="1.00", qty=1)
    fok = desk.place(taker, side="buy", price="1.00", qty=4, tif="FOK")
    assert fok["order"]["status"] == "cancelled" and fok["fills"] == []
    result = desk.place(taker, side="buy", price="1.00", qty=5)  # GTC
    assert len(result["fills"]) == 3
    # The remainder would cross the book if it rested: it is cancelled.
    assert result["order"]["status"] == "cancelled" and result["order"]["filled_qty"] == 3
    book = desk.ok(taker, "book.get", {"sym": "ABC"})
    assert book["bids"] == [] and book["asks"] == [["1.00", 2]]


def test_fills_kept_per_order_are_the_newest() -> None:
    desk = Desk(limits=Limits(max_fills_per_order=3))
    maker, taker = desk.user(), desk.user()
    order = desk.place(maker, side="sell", price="1.00", qty=5)["order"]
    for _ in range(5):
        desk.place(taker, side="buy", price="1.00", qty=1)
    history = desk.ok(maker, "order.history", {"order_id": order["order_id"]})
    assert history["order"]["status"] == "filled" and len(history["fills"]) == 3
    trades = desk.sink.md_of("ABC", "trade")
    assert [f["trade_id"] for f in history["fills"]] == [t["trade_id"] for t in trades[-3:]]


def test_the_largest_history_the_fill_bound_allows_fits_a_frame() -> None:
    desk = Desk()
    session = desk.user()
    placed = desk.place(session, side="buy", price="99999999.99", qty=MAX_QTY, client_order_id="c")
    fill = {
        "trade_id": f"t-{2**63}",
        "order_id": placed["order"]["order_id"] + "0" * 18,
        "sym": "ABC",
        "side": "sell",
        "price": "99999999.99",
        "qty": MAX_QTY,
        "liquidity": "maker",
        "ts_ns": 2**63 - 1,
    }
    history = {"order": placed["order"], "fills": [fill] * DEFAULTS.max_fills_per_order}
    assert size(history) < MD_FRAME_LIMIT


def test_candle_buckets_are_bounded() -> None:
    series = CandleSeries()
    assert series.buckets.maxlen == CANDLE_SECONDS_KEPT
    ns = 1_000_000_000
    series.buckets.extend([s * ns, 100, 101, 99, 100, 1, 1, s] for s in range(CANDLE_SECONDS_KEPT))
    series.add(CANDLE_SECONDS_KEPT * ns, 100, 1, CANDLE_SECONDS_KEPT)
    assert len(series.buckets) == CANDLE_SECONDS_KEPT and series.buckets[0][0] == ns
    last_seq, candles = series.query(1000, 10_000, None, None, str)
    assert last_seq == CANDLE_SECONDS_KEPT and len(candles) == 10_000
    assert size(candles) < MD_FRAME_LIMIT // 8


@pytest.mark.parametrize("field", ["order_id", "client_order_id"])
def test_client_order_id_entries_leave_with_their_orders(field: str) -> None:
    desk = Desk(limits=Limits(max_closed_orders=2))
    session = desk.user()
    user = session.user
    for i in range(6):
        placed = desk.place(session, side="buy", price="1.00", qty=1, client_order_id=f"c{i}")
        key = placed["order"][field]
        desk.ok(session, "order.cancel", {field: key})
    assert set(user.by_coid) == {"c4", "c5"} and user.live_by_coid == {}
    assert len(user.orders) == 2 and set(user.fills) <= set(user.orders)
    assert desk.error(session, "order.history", {"client_order_id": "c0"}) == "not_found"


def test_the_cli_sets_the_open_order_cap_and_the_user_table() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from(parser.parse_args(["--max-open-orders", "5", "--max-users", "7"]))
    assert (config.max_open_orders, config.max_users) == (5, 7)
    default = config_from(parser.parse_args([]))
    assert (default.max_open_orders, default.max_users) == (
        DEFAULTS.max_open_orders,
        DEFAULTS.max_users,
    )
