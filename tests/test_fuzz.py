"""Fuzzing the client's frame handling with arbitrary frames (Hypothesis), on both backends.

The CMD and MD readers are fed frames through ``ScriptedWebSocket`` (the
transport interface, not the gateway): whatever arrives, a reader never
raises anything but the end of the link, never wakes a waiter with a frame
that does not answer it, and never leaves a book in a state it could not
have reached. Each example runs on the test's backend inside the conftest's
``fail_after`` bound.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_client import ConnectionLost, GatewayError, MarketClient, RequestSession
from market_client.testing import ScriptedWebSocket

pytestmark = pytest.mark.anyio

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
anything = st.one_of(json_values, st.sampled_from(["", "x", "ABC", "buy", "sell", "1.00"]))
prices = st.one_of(
    st.sampled_from(["100.00", "99.99", "0", "-1", "NaN", "Infinity", "1e400", "abc", ""]),
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
    anything,
)
changes = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["buy", "sell", "x"]), prices, st.integers(-2, 10)).map(list),
        anything,
    ),
    max_size=4,
)
md_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(["md", "md", "md", "event", 1])},
    optional={
        "ch": st.sampled_from(["book.delta", "trade", "book.snapshot", "status", "heartbeat", "?"]),
        "sym": st.sampled_from(["ABC", "XYZ", "", 5]),
        "seq": st.one_of(st.integers(0, 6), anything),
        "changes": st.one_of(changes, anything),
        "bids": st.one_of(changes, anything),
        "asks": st.one_of(changes, anything),
        "price": prices,
        "qty": st.one_of(st.integers(-1, 5), anything),
        "ts_ns": st.one_of(st.integers(0, 10**19), anything),
        "status": anything,
    },
)
cmd_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(["response", "event", "request", None])},
    optional={
        "corr_id": st.sampled_from(["1", "2", 1, None, "x"]),
        "status": st.sampled_from(["ok", "error", None, 3]),
        "payload": anything,
        "error": anything,
        "event": st.one_of(st.sampled_from(["order.fill", "order.accepted"]), anything),
        "seq": st.one_of(st.integers(-1, 5), anything),
        "op": anything,
    },
)


def encoded(frames: st.SearchStrategy[Any]) -> st.SearchStrategy[str | bytes]:
    return st.one_of(
        frames.map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=20),
        st.binary(max_size=20),
    )


def check_book(client: MarketClient) -> None:
    for sym, state in client._market.symbols.items():
        if not state.has_snapshot:
            continue
        snap = client.book_snapshot(sym, depth=10_000)
        for side, ordered in (("bids", snap["bids"]), ("asks", snap["asks"])):
            prices_ = [p for p, _ in ordered]
            assert all(isinstance(p, Decimal) and p.is_finite() and p > 0 for p in prices_)
            assert all(isinstance(q, int) and q > 0 for _, q in ordered)
            assert prices_ == sorted(prices_, reverse=side == "bids")
        client.best_bid_ask(sym)
    client.stats()


@FUZZ
@given(frames=st.lists(encoded(md_frames), max_size=30))
async def test_md_reader_survives_any_frames(frames: list[str | bytes]) -> None:
    client = MarketClient("http://127.0.0.1:9")
    with pytest.raises(ConnectionLost):
        await client._md._read(ScriptedWebSocket(frames), anyio.Event(), set())
    check_book(client)


@FUZZ
@given(frames=st.lists(encoded(cmd_frames), max_size=30))
async def test_cmd_reader_survives_any_frames(frames: list[str | bytes]) -> None:
    events: list[dict[str, Any]] = []
    feed = ScriptedWebSocket(frames)
    session = RequestSession(feed, on_event=events.append, timeout=5)
    outcome: list[Any] = []

    async def ask() -> None:
        try:
            outcome.append(await session.request("portfolio.get"))
        except (GatewayError, ConnectionLost) as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await anyio.lowlevel.checkpoint()
        with pytest.raises(ConnectionLost):
            await session.run()
    assert len(outcome) == 1
    if isinstance(outcome[0], dict):
        # Woken only by a response that names this request.
        answers = [
            f for f in map(_loads, frames) if isinstance(f, dict) and f.get("type") == "response"
        ]
        assert any(str(f.get("corr_id")) == "1" for f in answers)
    assert len(session.correlator) == 0
    for frame in events:
        assert isinstance(frame["event"], str) and isinstance(frame["seq"], int)
        assert isinstance(frame["payload"], dict)


def _loads(raw: str | bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
