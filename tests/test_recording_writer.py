"""The recorder's writer without sockets: raw round trip, rotation, drop policy, metadata."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from market_client.recording import RawFrame, RawGap, RawSnapshot, Recorder, Recording, iter_raw
from market_client.recording._batch import FrameBuffer, unpack_batch
from market_client.recording._child import WriterProcess
from market_client.recording._raw import decode_line, encode_frame
from market_client.recording._tables import TableBuilder, tick_scale
from market_client.recording._writer import BatchWriter, clean_url, finish_leftovers
from market_client.testing import wait_until

pq = pytest.importorskip("pyarrow.parquet")

SYMBOLS = [
    {"sym": "ABC", "tick": "0.01", "min_qty": 1, "lot": 1, "status": "trading"},
    {"sym": "ETH", "tick": "0.1", "min_qty": 1, "lot": 1, "status": "trading"},
]
DESCRIBE = {
    "gateway_url": "http://user:secret@127.0.0.1:8000/?token=u-1.mac",
    "symbols": SYMBOLS,
    "protocol_version": "1.0",
    "library_version": "9.9.9",
}
T0 = 1_800_000_000_000_000_000


def md(seq: int, ch: str = "book.delta", sym: str = "ABC", **fields: Any) -> str:
    msg: dict[str, Any] = {"type": "md", "ch": ch, "sym": sym, "seq": seq, "ts_ns": T0 + seq}
    if ch == "book.delta":
        msg["changes"] = fields.pop("changes", [["buy", "100.00", seq]])
    msg.update(fields)
    return orjson.dumps(msg).decode()


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"md","ch":"heartbeat","ts_ns":1}',
        'not json at all \u00e9 \U0001f600 "quoted" \\ \n',
        "lone \ud800 surrogate",
        b'{"type":"md","ch":"heartbeat"}',
        b"\xff\xfe binary \x00",
        b"",
        "",
    ],
)
def test_raw_lines_round_trip_exactly(raw: str | bytes) -> None:
    record = decode_line(encode_frame("md", raw, 123))
    assert record == RawFrame(123, "md", raw)
    assert type(record.raw) is type(raw)  # type: ignore[union-attr]


def test_raw_files_rotate_by_size_and_read_back_in_order(tmp_path: Path) -> None:
    writer = BatchWriter(tmp_path, tables=False, rotate_bytes=2_000, rotate_seconds=3600)
    writer.describe(**DESCRIBE)
    sent = []
    for batch in range(20):
        frames = [("md", md(batch * 100 + i) + "x" * i, T0 + batch * 100 + i) for i in range(100)]
        writer.write(frames)
        sent += frames
    writer.close()
    files = sorted((tmp_path / "raw").glob("*.jsonl.zst"))
    assert len(files) > 3 and not list((tmp_path / "raw").glob(".*"))
    assert [(f.channel, f.raw, f.recv_ns) for f in iter_raw(tmp_path)] == sent


def test_an_unfinished_raw_file_reads_up_to_its_last_batch(tmp_path: Path) -> None:
    writer = BatchWriter(tmp_path, tables=False)
    writer.describe(**DESCRIBE)
    writer.write([("md", md(1), T0), ("cmd", "{}", T0 + 1)])
    # Killed here: no close() (the OS closes the descriptor). The file is
    # hidden and not named *.jsonl.zst.
    assert writer.raw is not None and writer.raw._file is not None
    writer.raw._file.close()
    assert list(iter_raw(tmp_path)) == []
    assert [f.raw for f in iter_raw(tmp_path, include_tmp=True)] == [md(1), "{}"]
    assert finish_leftovers(tmp_path) == {"raw_kept": 1, "parquet_removed": 0}
    assert [f.raw for f in iter_raw(tmp_path)] == [md(1), "{}"]


def test_tables_rotate_by_age_and_carry_metadata(tmp_path: Path) -> None:
    writer = BatchWriter(tmp_path, rotate_seconds=0.05, row_group_rows=10)
    writer.describe(**DESCRIBE)
    snapshot = orjson.dumps(
        {
            "type": "md",
            "ch": "book.snapshot",
            "sym": "ETH",
            "seq": 0,
            "bids": [["2500.1", 3]],
            "asks": [["2500.2", 4]],
            "ts_ns": T0,
        }
    ).decode()
    writer.write([("md", snapshot, T0)])
    changes = [["sell", "2500.3", 1], ["sell", "2500.2", 0], ["buy", "2500.0", 9]]
    for seq, change in enumerate(changes, 1):
        writer.write([("md", md(seq, sym="ETH", changes=[change]), T0 + seq)])
        threading.Event().wait(0.06)  # age the open files (a thread-free unit test)
    writer.close()
    files = sorted((tmp_path / "book_deltas").glob("date=*/sym=ETH/*.parquet"))
    assert len(files) >= 2
    assert not list(tmp_path.glob("**/.*.tmp"))
    meta = pq.read_schema(files[0]).metadata
    assert meta[b"market_client.protocol_version"] == b"1.0"
    assert meta[b"market_client.gateway_url"] == b"http://127.0.0.1:8000/"
    assert orjson.loads(meta[b"market_client.ticks"]) == {"ABC": "0.01", "ETH": "0.1"}
    assert meta[b"market_client.table"] == b"book_deltas"
    rec = Recording(tmp_path)
    tops = rec.table("top_of_book").to_pylist()
    # A row at the snapshot and whenever the top changes (not for seq 1 nor 3).
    assert [(t["seq"], t["bid_price"], t["ask_price"], t["ask_qty"]) for t in tops] == [
        (0, Decimal("2500.1"), Decimal("2500.2"), 4),
        (2, Decimal("2500.1"), Decimal("2500.3"), 1),
    ]
    assert str(rec.dataset("book_deltas").schema.field("price").type) == "decimal128(18, 2)"


def test_bad_frames_are_counted_and_off_tick_prices_never_rounded() -> None:
    builder = TableBuilder(scale=2)
    builder.add("md", "not json", T0)
    builder.add("md", md(1, changes=[["buy", "100.001", 1]]), T0)  # finer than the scale
    builder.add("md", md(2, changes=[["buy", 100.5, 1]]), T0)  # a float
    builder.add("md", md(3, ch="trade", price="99.99", qty=1, trade_id="t-1"), T0)
    assert builder.bad_frames == 3
    assert builder.rows["trades"] == 1 and builder.rows["book_deltas"] == 0
    assert tick_scale("0.25") == 2 and tick_scale("5") == 0 and tick_scale("0.10") == 1


def test_candles_from_trades() -> None:
    builder = TableBuilder(scale=2, candles=[1000])
    prices = [("100.00", 1), ("101.00", 2), ("99.00", 3)]
    for i, (price, qty) in enumerate(prices, 1):
        msg = orjson.loads(md(i, ch="trade", price=price, qty=qty, trade_id=f"t-{i}"))
        msg["ts_ns"] = T0 + i * 100_000_000  # the same second
        builder.add("md", orjson.dumps(msg), T0)
    late = orjson.loads(md(9, ch="trade", price="98.00", qty=1, trade_id="t-9"))
    late["ts_ns"] = T0 + 2_000_000_000
    builder.add("md", orjson.dumps(late), T0)
    builder.finish_candles(T0)
    (rows,) = [r for (table, _, _), r in builder.take().items() if table == "candles"]
    t, interval, o, h, low, c, v, n, first, last, complete = (col[0] for col in rows.columns)
    assert (o, h, low, c, v, n, first, last, complete) == (
        10000,
        10100,
        9900,
        9900,
        6,
        3,
        1,
        3,
        True,
    )
    assert t == T0 and interval == 1000
    assert [col[1] for col in rows.columns][-1] is False  # the last one is still open


def test_gateway_url_loses_its_credentials() -> None:
    assert clean_url("https://u:p@[::1]:9/x?token=T#f") == "https://[::1]:9/x"


@pytest.mark.anyio
async def test_a_slow_disk_drops_new_frames_and_marks_the_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Event()
    release = threading.Event()
    recorder = Recorder(tmp_path, tables=False, max_buffer=100, batch_frames=50)
    original = WriterProcess.send

    def slow_send(self: WriterProcess, kind: bytes, payload: Any = b"", **kwargs: Any) -> None:
        if kind == b"B":
            entered.set()
            release.wait(20)  # the writer process (its disk) stalls
        original(self, kind, payload, **kwargs)

    monkeypatch.setattr(WriterProcess, "send", slow_send)
    async with recorder:
        recorder.describe(**DESCRIBE)
        for seq in range(1, 51):
            recorder.feed("md", md(seq), T0 + seq)
        await wait_until(entered.is_set)  # the worker holds these 50 in the stalled hand-off
        for seq in range(51, 201):
            recorder.feed("md", md(seq), T0 + seq)  # never blocks, never raises
        stats = recorder.stats()
        assert (stats["fed"], stats["buffered"], stats["dropped"]) == (150, 100, 50)
        release.set()
    stats = recorder.stats()
    assert stats["dropped"] == 50 and stats["gaps"] == 1 and stats["state"] == "closed"
    records = list(iter_raw(tmp_path, gaps=True))
    assert [r.raw for r in records[:150]] == [md(seq) for seq in range(1, 151)]  # type: ignore[union-attr]
    assert records[150:] == [RawGap(T0 + 200, 50, T0 + 151, T0 + 200)]


@pytest.mark.anyio
async def test_a_failing_disk_stops_the_recording_not_the_session(tmp_path: Path) -> None:
    (tmp_path / "raw").write_text("a file where the raw folder should be")
    async with Recorder(tmp_path, flush_interval=0.01) as recorder:
        recorder.describe(**DESCRIBE)
        recorder.feed("md", md(1), T0)
        while recorder.stats()["error"] is None:
            await anyio.sleep(0.01)
        recorder.feed("md", md(2), T0)
    stats = recorder.stats()
    assert stats["dropped"] == 2 and "Error" in stats["error"]


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        Recorder(tmp_path, max_buffer=0)
    with pytest.raises(ValueError, match="candle"):
        Recorder(tmp_path, candles=[0])
    with pytest.raises(ValueError, match="nothing to record"):
        Recorder(tmp_path, raw=False, tables=False)


_frames = st.tuples(
    st.sampled_from(["md", "cmd"]),
    st.one_of(st.text(), st.binary(), st.text().map(str.encode), st.just("lone \ud800 \udfff")),
    st.integers(0, 2**63 - 1),
)
_gaps = st.tuples(st.integers(1, 10**6), st.integers(0, 2**62), st.integers(0, 2**62)).map(
    lambda g: ("gap", g, g[2])
)
_books = st.builds(
    lambda seq, ns: (
        "snapshot",
        {"sym": "ABC", "seq": seq, "bids": [["1.00", 2]], "asks": [], "source": "resync"},
        ns,
    ),
    st.integers(0, 2**62),
    st.integers(0, 2**62),
)


@given(st.lists(st.one_of(_frames, _frames, _frames, _gaps, _books), max_size=40), st.booleans())
def test_a_packed_buffer_unpacks_to_the_same_records_in_order(
    batch: list[tuple[str, Any, int]], by_reader: bool
) -> None:
    # MD frames go in as the MD reader hands them over (extend_md) or
    # through add_frame: either way the same records.
    buffer = FrameBuffer()
    for channel, raw, recv_ns in batch:
        if channel == "gap":
            buffer.add_gap(*raw)
        elif channel == "snapshot":
            buffer.add_snapshot(raw, recv_ns)
        elif by_reader and channel == "md":
            buffer.extend_md([raw], recv_ns)
        else:
            buffer.add_frame(channel, raw, recv_ns)
    records = unpack_batch(buffer.pack())
    assert records == buffer.records() and len(records) == len(batch)
    assert buffer.frames_held == sum(1 for item in batch if item[0] != "gap")
    for (channel, raw, recv_ns), record in zip(batch, records, strict=True):
        if channel == "gap":
            assert record == RawGap(recv_ns, *raw)
        elif channel == "snapshot":
            assert record == RawSnapshot(recv_ns, "ABC", raw["seq"], raw["bids"], [], "resync")
        else:
            assert record == RawFrame(recv_ns, channel, raw)
            assert type(record.raw) is type(raw)  # type: ignore[union-attr]


def count_feeds(recorder: Recorder) -> list[int]:
    """The receive times (less T0) of the frames handed to ``recorder.feed`` from now on."""
    fed: list[int] = []
    feed = recorder.feed

    def counting_feed(channel: str, raw: str | bytes, recv_ns: int) -> None:
        fed.append(recv_ns - T0)
        feed(channel, raw, recv_ns)

    recorder.feed = counting_feed  # type: ignore[method-assign]
    return fed


def test_the_reader_appends_until_a_batch_is_full_then_up_to_the_buffer(tmp_path: Path) -> None:
    # Never opened, so nothing takes the buffer: what the reader appends itself,
    # what it hands to feed (the frame that fills a batch, and those with no room).
    recorder = Recorder(tmp_path, batch_frames=5, max_buffer=8)
    fed = count_feeds(recorder)
    for seq in range(1, 11):
        recorder.feed_many([md(seq).encode()], T0 + seq)
    assert fed == [5, 9, 10]
    stats = recorder.stats()
    assert (stats["fed"], stats["buffered"], stats["dropped"]) == (8, 8, 2)
    assert recorder.buffer.records() == [
        RawFrame(T0 + seq, "md", md(seq).encode()) for seq in range(1, 9)
    ]


def test_frames_read_together_go_in_at_once_with_one_receive_time(tmp_path: Path) -> None:
    # The MD reader hands over what one read of the socket brought (up to its
    # next turn): all at once while the buffer has room for all of them,
    # else each through feed (as one frame at a time would go).
    recorder = Recorder(tmp_path, batch_frames=5, max_buffer=8)
    fed = count_feeds(recorder)
    frames = [md(seq).encode() for seq in range(1, 11)]
    recorder.feed_many(frames[:3], T0 + 1)  # room for 4: in at once
    assert fed == []
    recorder.feed_many(frames[3:6], T0 + 2)  # no room for 3 more: through feed
    recorder.feed_many(frames[6:], T0 + 3)  # two fit the buffer, two are dropped
    assert fed == [2, 2, 2, 3, 3, 3, 3]
    stats = recorder.stats()
    assert (stats["fed"], stats["buffered"], stats["dropped"]) == (8, 8, 2)
    times = [T0 + 1] * 3 + [T0 + 2] * 3 + [T0 + 3] * 2
    assert recorder.buffer.records() == [
        RawFrame(t, "md", frame) for t, frame in zip(times, frames, strict=False)
    ]


@pytest.mark.anyio
async def test_a_full_batch_from_the_reader_wakes_the_writer(tmp_path: Path) -> None:
    async with Recorder(tmp_path, batch_frames=5, flush_interval=60) as recorder:
        recorder.describe(**DESCRIBE)
        for seq in range(1, 6):
            recorder.feed_many([md(seq)], T0 + seq)
        await wait_until(lambda: recorder.stats()["batches"] == 1)  # not after 60 s
        for seq in range(6, 9):
            recorder.feed_many([md(seq)], T0 + seq)
    records = list(iter_raw(tmp_path))
    assert records == [RawFrame(T0 + seq, "md", md(seq)) for seq in range(1, 9)]


@pytest.mark.anyio
async def test_a_buffer_full_of_bytes_wakes_the_writer_and_a_closed_one_takes_nothing(
    tmp_path: Path,
) -> None:
    frame = b'{"pad":"' + b"x" * 30 + b'"}'  # 40 bytes
    async with Recorder(
        tmp_path, tables=False, max_buffer_bytes=100, batch_frames=1000, flush_interval=60
    ) as recorder:
        recorder.describe(**DESCRIBE)
        await wait_until(lambda: recorder._wake is not None)  # its worker waits for frames
        for i in range(4):  # three fit (0, 40 and 80 bytes held before each)
            recorder.feed_many([frame], T0 + i)
        assert recorder.stats()["dropped"] == 1
        await wait_until(lambda: recorder.stats()["batches"] == 1)  # not after 60 s
        recorder.feed_many([frame], T0 + 4)  # room again
    recorder.feed_many([frame], T0 + 5)  # closed: counted, never buffered
    stats = recorder.stats()
    assert (stats["fed"], stats["buffered"], stats["dropped"]) == (4, 0, 2)
    records = list(iter_raw(tmp_path, gaps=True))
    assert records == [
        *(RawFrame(T0 + i, "md", frame) for i in range(3)),
        RawGap(T0 + 3, 1, T0 + 3, T0 + 3),
        RawFrame(T0 + 4, "md", frame),
    ]


def test_a_text_batch_keeps_its_gaps_books_and_bytes_frames() -> None:
    # websockets' str frames with the few records of other types among them.
    buffer = FrameBuffer()
    buffer.extend_md([md(1)], T0 + 1)
    buffer.add_gap(3, T0 + 2, T0 + 4)
    buffer.extend_md([md(5)], T0 + 5)
    buffer.add_frame("cmd", b'{"op":"x"}', T0 + 6)
    buffer.add_snapshot({"sym": "ABC", "seq": 5, "bids": [], "asks": []}, T0 + 7)
    buffer.extend_md([md(6)], T0 + 8)
    assert buffer.records() == [
        RawFrame(T0 + 1, "md", md(1)),
        RawGap(T0 + 4, 3, T0 + 2, T0 + 4),
        RawFrame(T0 + 5, "md", md(5)),
        RawFrame(T0 + 6, "cmd", b'{"op":"x"}'),
        RawSnapshot(T0 + 7, "ABC", 5, [], [], "resync"),
        RawFrame(T0 + 8, "md", md(6)),
    ]


def test_a_bad_gap_or_book_in_a_batch_is_a_value_error() -> None:
    for code, body in ((4, b"5"), (5, b"[]"), (5, b"{}")):  # GAP, SNAPSHOT
        buffer = FrameBuffer()
        buffer._add(code, body, T0)
        with pytest.raises(ValueError, match="packed batch"):
            unpack_batch(buffer.pack())


class Odd(str):
    def __str__(self) -> str:
        return "not the frame"


@pytest.mark.anyio
async def test_feed_keeps_every_frame_exactly_and_counts_what_it_refuses(tmp_path: Path) -> None:
    frames = [("md", md(1), T0), ("md", md(2).encode(), T0 + 1), ("cmd", "{}", T0 + 2)]
    frames += [("cmd", b"\xff", T0 + 3), ("md", bytearray(b"[]"), T0 + 4), ("md", "\ud800", T0 + 5)]
    frames += [("md", Odd("é"), T0 + 6)]
    async with Recorder(tmp_path, flush_interval=60) as recorder:
        for channel, raw, recv_ns in frames:
            recorder.feed(channel, raw, recv_ns)
        expected = [
            RawFrame(t, ch, bytes(raw) if isinstance(raw, bytearray) else raw)
            for ch, raw, t in frames
        ]
        records = recorder.buffer.records()
        assert records == expected  # the str subclass as its text, not its __str__
        kinds = [str, bytes, str, bytes, bytes, str, str]
        assert [type(r.raw) for r in records] == kinds  # type: ignore[union-attr]
        recorder.feed("xyz", "{}", T0)  # no such channel
        recorder.feed("md", "{}", 2**64)  # not an int64
        assert recorder.stats()["feed_errors"] == 2 and recorder.buffer.records() == expected
    with pytest.raises(ValueError, match="channel"):
        FrameBuffer().add_frame("xyz", "{}", T0)
    with pytest.raises(ValueError, match="packed batch"):
        unpack_batch(recorder.buffer.pack()[:-1])


class _Boom(Exception):
    pass


@pytest.mark.anyio
async def test_leaving_in_a_cancelled_scope_keeps_the_blocks_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The exit waits for its worker (here in the middle of a batch) and flushes:
    # a cancellation pending around it does not come out of it in place of the
    # block's own exception, and nothing buffered is lost.
    entered = threading.Event()
    original = WriterProcess.send

    def busy_send(self: WriterProcess, kind: bytes, payload: Any = b"", **kwargs: Any) -> None:
        if kind == b"B":
            entered.set()
            threading.Event().wait(0.5)  # the writer process takes its time
        original(self, kind, payload, **kwargs)

    monkeypatch.setattr(WriterProcess, "send", busy_send)
    with anyio.CancelScope() as scope:
        with pytest.raises(_Boom):
            async with Recorder(tmp_path, tables=False, flush_interval=0.01) as recorder:
                recorder.describe(**DESCRIBE)
                recorder.feed("md", md(1), T0)
                await wait_until(entered.is_set)  # the worker thread is in the hand-off
                scope.cancel()
                raise _Boom
    assert list(iter_raw(tmp_path)) == [RawFrame(T0, "md", md(1))]
