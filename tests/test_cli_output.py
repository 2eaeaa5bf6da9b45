"""Output for people (tables, local times, a book ladder) and for machines (JSON lines)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from market_client._cli import main
from market_client._cli._output import align_decimals, human_time
from market_client._cli._parser import interval_ms
from market_client._cli._profiles import CONFIG_DIR_ENV, TOKEN_ENV

from .support import gateway_process


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A simulator with background flow, in its own process."""
    with gateway_process("--flow-hz", "300") as url:
        yield url


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    return tmp_path


def out_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_book_is_a_two_sided_ladder(gateway: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = out_of(capsys, "book", "ABC", "--depth", "3", "--url", gateway)
    lines = text.splitlines()
    assert len(lines) <= 7  # title, header, rule, three levels: not 30 lines of JSON
    assert re.search(r"bid qty\s+bid\s+ask\s+ask qty", text)
    levels = [
        line for line in lines if re.fullmatch(r"\s*\d+\s+\d+\.\d+\s+\d+\.\d+\s+\d+\s*", line)
    ]
    assert len(levels) == 3
    bids = [float(line.split()[1]) for line in levels]
    asks = [float(line.split()[2]) for line in levels]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]


def test_json_is_one_wire_object_per_line(gateway: str, capsys: pytest.CaptureFixture[str]) -> None:
    book = out_of(capsys, "book", "ABC", "--depth", "3", "--url", gateway, "--json").splitlines()
    assert len(book) == 1 and set(json.loads(book[0])) == {"sym", "seq", "bids", "asks"}
    syms = [
        json.loads(line)
        for line in out_of(capsys, "symbols", "--url", gateway, "--json").splitlines()
    ]
    assert [s["sym"] for s in syms] == ["ABC", "XYZ", "QQQ", "ETH"] and syms[0]["tick"] == "0.01"
    candles = out_of(capsys, "candles", "ABC", "--url", gateway, "--json", "--limit", "3")
    for line in candles.splitlines():
        candle = json.loads(line)
        assert isinstance(candle["t_ns"], int) and isinstance(candle["o"], str)


def test_candles_show_local_times_not_nanoseconds(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A trade of its own first: the background flow may not have made one yet.
    for profile, side in (("maker", "sell"), ("taker", "buy")):
        out_of(capsys, "login", "--url", gateway, "--profile", profile)
        out_of(capsys, "place", "ABC", side, "2", "100.00", "--url", gateway, "--profile", profile)
    text = out_of(capsys, "candles", "ABC", "--interval", "1s", "--url", gateway)
    assert "ABC candles, 1s" in text
    assert re.search(r"^\d\d:\d\d:\d\d\s+\d+\.\d\d\s", text, re.M)
    assert not re.search(r"\d{15,}", text)


def test_watch_shows_each_event_once_and_the_top_only_when_it_changes(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = out_of(capsys, "watch", "ABC", "--count", "40", "--json", "--url", gateway)
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 40
    tops = [(x["bid"], x["ask"]) for x in lines if x["ch"] == "top"]
    assert all(a != b for a, b in itertools.pairwise(tops))
    trades = [x for x in lines if x["ch"] == "trade"]
    ids = [t["trade_id"] for t in trades]
    assert len(ids) == len(set(ids))
    assert all({"price", "qty", "aggressor"} <= set(t) for t in trades)


def test_watch_for_people_shows_trades_with_price_qty_and_side(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = out_of(capsys, "watch", "ABC", "--count", "30", "--url", gateway)
    lines = text.splitlines()
    assert len(lines) == 30
    assert any(
        re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}  ABC  trade  \d+ @ \d+\.\d\d  (buy|sell)", x)
        for x in lines
    )
    tops = [x.split("top", 1)[1] for x in lines if "  top  " in x]
    assert tops and all(a != b for a, b in itertools.pairwise(tops))


def test_intervals() -> None:
    assert [interval_ms(x) for x in ("1s", "5s", "1m", "1h", "60000", "2M")] == [
        1000,
        5000,
        60_000,
        3_600_000,
        60_000,
        120_000,
    ]


def test_prices_line_up_on_the_point() -> None:
    column = align_decimals(["100.5", "99.25", None, "7"])
    right = [x.rjust(8) for x in column]
    assert [x.index(".") for x in right if "." in x] == [5, 5]
    assert right[2].index("-") == right[3].index("7") == 4  # units column
    assert human_time(0) == "-" and re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", human_time(10**18))
