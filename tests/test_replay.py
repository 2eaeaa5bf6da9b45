"""The replay gateway: a recording served back through the protocol, and the fill model.

The socket tests record the busy simulator for a moment and replay it at
``--speed max``, or replay a recording written here line by line (every kind
of raw line, frames in unusual but valid JSON, so that any re-encoding would
show); the model tests drive `ReplayExchange` without sockets.
"""

from __future__ import annotations

import base64
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
from market_client.recording._raw import RawWriter
from market_client.simulator import serve
from market_client.simulator._accounts import Session
from market_client.simulator._exchange import OpError, SymbolSpec
from market_client.simulator._outbox import Outbox, SharedFrame, frame_bytes
from market_client.simulator._replay import (
    BLOCK_FRAMES,
    ReplayExchange,
    ReplayFrame,
    ReplaySource,
    parse_time,
)
from market_client.simulator._replay_app import ReplayGateway
from market_client.testing import Simulator, wait_until

from .rawws import raw_md

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


# -- the frames a replay sends: the recorded ones, as they are -----------------------------

T0 = 1_796_000_000_000_000_000  # recv_ns of the hand-made recording's first line
SYMBOLS = {
    "ABC": {"tick": "0.01", "min_qty": 1, "lot": 1, "status": "trading"},
    "XYZ": {"tick": "0.05", "min_qty": 10, "lot": 10, "status": "trading"},
}


def md_line(recv_ns: int, text: str, *, binary: bool = False) -> dict[str, Any]:
    line: dict[str, Any] = {"recv_ns": recv_ns, "ch": "md", "raw": text}
    if binary:
        line["bin"] = True
    return line


def write_recording(directory: Path, increments: int = 3 * BLOCK_FRAMES) -> None:
    """A recording of every kind of raw line, its MD frames in unusual (valid) JSON.

    Spaces, another key order, an escaped character: what the replay sends
    is byte-for-byte these, so any decode-and-encode on the way would show.
    """
    lines: list[dict[str, Any]] = []
    t = T0

    def at() -> int:
        nonlocal t
        t += 1_000_000  # 1 ms apart
        return t

    snapshot = (
        '{"type":"md","ch":"book.snapshot","sym":"%s","seq":10,"bids":[["%s",5]],'
        '"asks":[["%s",5]],"ts_ns":1}'
    )
    lines.append(md_line(at(), snapshot % ("ABC", "100.00", "100.01"), binary=True))
    lines.append(md_line(at(), snapshot % ("XYZ", "50.00", "50.05")))
    lines.append(
        md_line(
            at(),
            '{"type": "md", "ch": "book.delta", "sym": "ABC", "seq": 11, '
            '"changes": [["buy", "100.00", 7]], "ts_ns": 2}',
        )
    )
    lines.append({"recv_ns": at(), "ch": "cmd", "raw": '{"type":"event","event":"x","seq":1}'})
    lines.append(
        md_line(
            at(),
            '{"sym":"ABC","ch":"trade","type":"md","seq":12,"trade_id":"t-\\u00e9",'
            '"price":"100.01","qty":1,"aggressor":"buy","ts_ns":3}',
        )
    )
    lines.append(md_line(at(), '{"type":"md","ch":"heartbeat","ts_ns":4}'))
    lines.append({"recv_ns": at(), "gap": {"dropped": 2, "first_ns": t, "last_ns": t}})
    lines.append(
        {
            "recv_ns": at(),
            "snapshot": {"sym": "ABC", "seq": 12, "bids": [], "asks": [], "source": "resync"},
        }
    )
    lone = '{"type":"md","ch":"trade","sym":"ABC","trade_id":"\ud800"}'.encode(
        "utf-8", "surrogatepass"
    )
    lines.append({"recv_ns": at(), "ch": "md", "b64": base64.b64encode(lone).decode()})
    lines.append(
        {"recv_ns": at(), "ch": "md", "b64": base64.b64encode(b"\xff\xfe").decode(), "bin": True}
    )
    lines.append(md_line(at(), "not json"))
    lines.append(md_line(at(), "[1, 2]"))
    lines.append(md_line(at(), '{"type":"md","ch":"book.delta","sym":"NOPE","seq":1}'))
    lines.append(
        md_line(
            at(),
            '{"type":"md","ch":"book.delta","sym":"ABC","seq":13,'
            '"changes":[["sell","100.02",3],["sell","100.01",0]],"ts_ns":5}',
            binary=True,
        )
    )
    # Then enough increments for several blocks, the two symbols interleaved.
    for i in range(increments):
        if i % 3:
            lines.append(
                md_line(
                    at(),
                    f'{{"type":"md","ch":"book.delta","sym":"ABC","seq":{14 + i},'
                    f'"changes":[["buy","99.{90 + i % 9}",{i % 4}]],"ts_ns":{i}}}',
                )
            )
        else:
            lines.append(
                md_line(
                    at(),
                    f'{{"ts_ns":{i}, "type":"md", "ch":"book.delta", "sym":"XYZ", "seq":{11 + i}, '
                    f'"changes":[["sell","50.{5 + 5 * (i % 3):02d}",{10 * (i % 3)}]]}}',
                )
            )
    writer = RawWriter(directory, rotate_bytes=1 << 30, rotate_seconds=1e9)
    writer.meta["symbols"] = SYMBOLS
    writer.write_block(b"".join(orjson.dumps(line) + b"\n" for line in lines), len(lines), T0)
    writer.close()


def frames_read_one_by_one(directory: Path, names: set[str]) -> tuple[list[ReplayFrame], int]:
    """The frames a replay should read, decoded the plain way (iter_raw, a frame at a time)."""
    frames = []
    bad = 0
    for recv_ns, channel, raw in iter_raw(directory, include_tmp=True):
        if channel != "md":
            continue
        try:
            text = raw if isinstance(raw, str) else raw.decode()
            msg = orjson.loads(text)
        except (UnicodeDecodeError, orjson.JSONDecodeError):
            bad += 1
            continue
        if not isinstance(msg, dict):
            bad += 1
            continue
        if msg.get("sym") in names and msg.get("ch") != "heartbeat":
            frames.append(ReplayFrame(recv_ns, msg["sym"], text, msg))
    return frames, bad


def test_the_source_reads_every_kind_of_line_as_iter_raw_does(tmp_path: Path) -> None:
    write_recording(tmp_path)
    expected, bad = frames_read_one_by_one(tmp_path, {"ABC", "XYZ"})
    source = ReplaySource(tmp_path)
    preroll = list(source.preroll())
    blocks = list(source.blocks())
    assert preroll + [f for block in blocks for f in block] == expected
    assert [f.msg["ch"] for f in preroll] == ["book.snapshot", "book.snapshot"]
    assert source.bad_frames == bad == 4
    assert len(blocks) > 2
    assert all(0 < len(block) <= BLOCK_FRAMES for block in blocks)
    assert list(source) == []  # taken

    # One symbol, and a window of receive times that ends inside a block.
    start, end = expected[5].recv_ns, expected[BLOCK_FRAMES + 7].recv_ns
    abc = [f for f in expected if f.sym == "ABC"]
    source = ReplaySource(tmp_path, symbols=["ABC"], start_ns=start, end_ns=end)
    assert list(source.preroll()) == [f for f in abc if f.recv_ns < start or f is abc[0]]
    assert list(source) == [f for f in abc if start <= f.recv_ns <= end]


def test_a_line_that_is_not_json_fails_the_source_as_it_fails_iter_raw(tmp_path: Path) -> None:
    writer = RawWriter(tmp_path, rotate_bytes=1 << 30, rotate_seconds=1e9)
    writer.meta["symbols"] = SYMBOLS
    good = orjson.dumps(md_line(T0, '{"type":"md","ch":"book.delta","sym":"ABC","seq":1}'))
    writer.write_block(good + b"\n{torn\n" + good + b"\n", 3, T0)
    writer.close()
    with pytest.raises(orjson.JSONDecodeError):
        list(iter_raw(tmp_path))
    with pytest.raises(orjson.JSONDecodeError):
        list(ReplaySource(tmp_path))


@pytest.mark.parametrize("speed", [math.inf, 1000.0], ids=["max", "paced"])
async def test_a_subscriber_gets_the_recorded_frames_of_its_symbols_byte_for_byte(
    tmp_path: Path, speed: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_recording(tmp_path)
    expected = [
        f.text
        for f in frames_read_one_by_one(tmp_path, {"ABC"})[0]
        if f.msg["ch"] != "book.snapshot"
    ]
    batches: list[int] = []
    offer_many = Outbox.offer_many

    def counted(self: Outbox, frames: Any) -> int:
        batches.append(len(frames))
        return offer_many(self, frames)

    monkeypatch.setattr(Outbox, "offer_many", counted)
    with anyio.fail_after(20):
        async with (
            serve(replay=tmp_path, speed=speed) as replay,
            raw_md(replay.url, symbols="ABC") as ws,
        ):
            first = orjson.loads(await ws.recv())
            assert (first["ch"], first["sym"], first["seq"]) == ("book.snapshot", "ABC", 10)
            got: list[str] = []
            while len(got) < len(expected):
                raw = await ws.recv()
                text = raw if isinstance(raw, str) else raw.decode()
                if '"heartbeat"' not in text:  # the replay gateway's own
                    got.append(text)
            gateway = replay.gateway
            assert isinstance(gateway, ReplayGateway)
            await gateway.done.wait()
    assert got == expected  # the recorded text, not a re-encoding of it
    assert '"trade_id":"t-\\u00e9"' in got[1]
    if math.isinf(speed):
        # At full speed each subscriber gets its frames a block at a time.
        assert sum(batches) == len(expected)
        assert len(batches) < len(expected) / 10
    else:
        assert batches == []  # paced: a frame at a time, as before


async def test_at_full_speed_a_small_queue_waits_and_loses_nothing(tmp_path: Path) -> None:
    write_recording(tmp_path)
    expected = [
        f.text
        for f in frames_read_one_by_one(tmp_path, {"ABC", "XYZ"})[0]
        if f.msg["ch"] != "book.snapshot"
    ]
    with anyio.fail_after(20):
        async with (
            serve(replay=tmp_path, speed=math.inf, queue_size=8) as replay,
            raw_md(replay.url) as ws,
        ):
            got: list[str] = []
            while len(got) < len(expected) + 2:
                raw = await ws.recv()
                text = raw if isinstance(raw, str) else raw.decode()
                if '"heartbeat"' not in text:
                    got.append(text)
            gateway = replay.gateway
            assert isinstance(gateway, ReplayGateway)
            await gateway.done.wait()
            stats = gateway.stats
            assert stats.md_sent == len(expected)
            assert stats.md_dropped_slow == 0
    assert got[2:] == expected


async def test_outbox_offer_many_and_put_many() -> None:
    sent: list[str] = []
    all_sent = anyio.Event()

    async def send_text(text: str) -> None:
        sent.append(text)
        if len(sent) == 10:
            all_sent.set()
        await anyio.lowlevel.checkpoint()

    frames = [SharedFrame(str(i)) for i in range(10)]
    box = Outbox("u-1", max_queue=3)
    assert box.offer_many([]) == 0
    assert box.offer_many(frames) == 3  # as many as there is room for, never a 1013
    assert box.offer_many(frames[3:]) == 0
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(box.run_writer, send_text, None)
            assert await box.put_many(frames[3:]) == 7  # waits for the writer to make room
            await all_sent.wait()
            box.close()
            assert await box.put_many(frames) == 0
            assert box.offer_many(frames) == 0
            tg.cancel_scope.cancel()
    assert sent == [str(i) for i in range(10)]
    assert box.close_code == 1000


def test_frames_are_framed_as_wsproto_frames_them() -> None:
    from wsproto.frame_protocol import FrameProtocol

    framer = FrameProtocol(client=False, extensions=[])
    for text in ["", "a" * 125, "a" * 126, "\u00e9" * 63, "\u00e9" * 64, "x" * 65535, "x" * 65536]:
        assert frame_bytes(text) == bytes(framer.send_data(text, fin=True)), len(text)
        assert SharedFrame(text).wire == frame_bytes(text)


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


def test_a_one_level_delta_is_checked_before_the_book_moves() -> None:
    ex = exchange_with([["100.00", 3]], [["100.02", 5]])
    book = ex.market.symbols["ABC"].book
    for change in (["buy", "100.00", "x"], ["buy", "100.001", 1], ["buy", 5, 1], ["buy"]):
        assert not ex.apply(
            {"type": "md", "ch": "book.delta", "sym": "ABC", "seq": 11, "changes": [change]}
        )
    assert ex.bad_frames == 4
    assert book.levels("buy") == [(10000, 3)]
    assert ex.market.symbols["ABC"].seq == 10
    delta(ex, 11, ["buy", "100.00", 0])
    delta(ex, 12, ["sell", "100.03", 4])
    assert book.levels("buy") == []
    assert book.levels("sell") == [(10002, 5), (10003, 4)]
    ex.market.symbols["ABC"].gap = 1  # admin.md_gap: applied, not sent
    assert not ex.apply(
        {
            "type": "md",
            "ch": "book.delta",
            "sym": "ABC",
            "seq": 13,
            "changes": [["sell", "100.03", 0]],
        }
    )
    assert book.levels("sell") == [(10002, 5)]
    assert ex.market.symbols["ABC"].seq == 13


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
