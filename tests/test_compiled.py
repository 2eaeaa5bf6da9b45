"""The compiled (mypyc) build and the pure-Python one: ``market_client.compiled`` tells which runs.

``MARKET_CLIENT_PURE=1`` and ``MARKET_CLIENT_REQUIRE_COMPILED=1`` are what the
build reads (hatch_build.py); set for the test run too, they say which build
the run must be exercising, so that a session can never test the other one.
"""

from __future__ import annotations

import importlib.machinery
import os

import pytest

import market_client
from market_client import MarketClient, _book, _candles, _compiled, _state, _wire
from market_client.testing import open_simulator

HOT = (_wire, _book, _candles, _state)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _is_extension(module: object) -> bool:
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_flag_is_a_bool_that_matches_how_the_modules_were_loaded() -> None:
    assert type(market_client.compiled) is bool
    assert market_client.compiled is _compiled.compiled
    assert market_client.compiled == _is_extension(_state)
    # All four compile together, or none does (one mypyc group).
    assert [_is_extension(m) for m in HOT] == [market_client.compiled] * len(HOT)


@pytest.mark.skipif(not _flag("MARKET_CLIENT_PURE"), reason="MARKET_CLIENT_PURE is not set")
def test_a_pure_run_is_pure() -> None:
    assert market_client.compiled is False
    assert all(m.__file__ and m.__file__.endswith(".py") for m in HOT)


@pytest.mark.skipif(
    not _flag("MARKET_CLIENT_REQUIRE_COMPILED") or _flag("MARKET_CLIENT_PURE"),
    reason="MARKET_CLIENT_REQUIRE_COMPILED is not set",
)
def test_a_compiled_run_is_compiled() -> None:
    assert market_client.compiled is True
    for module in HOT:
        assert _is_extension(module), module.__file__
    # mypyc's native classes: their instances have no __dict__ and
    # their methods are not Python functions.
    assert type(_book.LocalBook.apply).__name__ != "function"


def test_the_hot_path_works_in_either_build() -> None:
    state = _state.MarketState()
    msgs = state.on_frames(
        [
            b'{"type":"md","ch":"book.snapshot","sym":"ABC","seq":1,'
            b'"bids":[["99.5",3]],"asks":[["100.5",2]]}',
            b'{"type":"md","ch":"book.delta","sym":"ABC","seq":2,"changes":[["buy","99.75",4]]}',
            b'{"type":"md","ch":"trade","sym":"ABC","seq":3,"price":"100.5","qty":1,'
            b'"ts_ns":1000000000}',
            b"not json",
        ]
    )
    assert [m["ch"] for m in msgs] == ["book.snapshot", "book.delta", "trade"]
    assert state.malformed == 1
    (bid, ask) = state.top("ABC")
    assert bid is not None and ask is not None
    assert (str(bid[0]), bid[1], str(ask[0]), ask[1]) == ("99.75", 4, "100.5", 2)
    with pytest.raises(_wire.PriceError):
        _wire.parse_price("1e999999999")


@pytest.mark.anyio
async def test_stats_say_which_build_runs() -> None:
    async with open_simulator() as sim, MarketClient.session(sim.url, md=False) as client:
        assert client.stats()["compiled"] is market_client.compiled
