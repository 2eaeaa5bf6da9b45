"""One shape per thing: what the gateway said stays as it said it; what we compute is Decimal.

The rule is written in docs/client.md ("What each method returns"); each
method is checked against the real simulator, on both backends.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from market_client import MarketClient
from market_client.testing import Simulator

from .support import anext_kind

pytestmark = pytest.mark.anyio


def prices_in(value: Any, key: str = "") -> list[tuple[str, object]]:
    """Every value under a price-like key (``price``, ``tick``, OHLC, cash) and in levels."""
    found: list[tuple[str, object]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in {"price", "tick", "o", "h", "l", "c", "cash", "avg_price", "realized_pnl"}:
                found.append((k, v))
            elif k in {"bids", "asks"}:
                found.extend((k, level[0]) for level in v)
            else:
                found.extend(prices_in(v, k))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(prices_in(item, key))
    return found


def assert_all(value: Any, kind: type) -> None:
    found = [(k, v) for k, v in prices_in(value) if v is not None]
    assert found, "nothing to check"
    assert all(type(v) is kind for _, v in found), found


async def test_what_the_gateway_said_keeps_its_strings(sim: Simulator) -> None:
    async with (
        MarketClient.session(sim.url, symbols=["ABC"]) as client,
        client.events("order") as events,
    ):
        assert_all(await client.get_symbols(), str)
        assert_all(await client.get_book("ABC", 5), str)
        placed = await client.place_order("ABC", "buy", "99.50", 2)
        assert_all(placed, str)
        evt = await anext_kind(events, "order.accepted")
        assert_all(evt.data, str)
        assert evt.order is not None and isinstance(evt.order["price"], str)
        assert_all(await client.list_orders(), str)
        assert_all(client.open_orders(), str)
        assert_all(client.get_transactions(), str)
        assert_all(await client.order_history(placed["order"]["order_id"]), str)
        assert_all(await client.cancel_order(placed["order"]["order_id"]), str)
        assert_all(await client.get_portfolio(), str)


async def test_what_the_library_computes_is_decimal(sim: Simulator) -> None:
    async with MarketClient.session(sim.url, symbols=["ABC"]) as client:
        snapshot = client.book_snapshot("ABC", 5)
        assert_all(snapshot, Decimal)
        assert all(isinstance(level, tuple) and len(level) == 2 for level in snapshot["bids"])
        top = client.best_bid_ask("ABC")
        assert_all(top, Decimal)
        assert top["bid"] == {"price": snapshot["bids"][0][0], "qty": snapshot["bids"][0][1]}
        await client.place_order("ABC", "buy", "100.01", 1)  # a trade, so a candle
        candles = await client.configure_candles("ABC", interval_ms=1000, depth=5)
        assert_all(candles, Decimal)
        assert_all(client.get_candles("ABC"), Decimal)
