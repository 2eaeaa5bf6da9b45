"""The recorder's writer process and the client's book hand-offs (`Recorder.snapshot`)."""

from __future__ import annotations

import os
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from market_client.recording import RawFrame, RawGap, RawSnapshot, Recorder, Recording, iter_raw
from market_client.recording._child import WriterProcess
from market_client.testing import wait_until

pq = pytest.importorskip("pyarrow.parquet")

SYMBOLS = [{"sym": "ABC", "tick": "0.01", "min_qty": 1, "lot": 1, "status": "trading"}]
DESCRIBE = {
    "gateway_url": "http://127.0.0.1:8000/",
    "symbols": SYMBOLS,
    "protocol_version": "1.0",
    "library_version": "9.9.9",
}
T0 = 1_800_000_000_000_000_000


def md(seq: int, ch: str = "book.delta", **fields: Any) -> str:
    msg: dict[str, Any] = {"type": "md", "ch": ch, "sym": "ABC", "seq": seq, "ts_ns": T0 + seq}
    if ch == "book.delta":
        msg["changes"] = fields.pop("changes", [["buy", f"100.{seq:02d}", seq]])
    msg.update(fields)
    return orjson.dumps(msg).decode()


def tops(directory: Path) -> list[tuple[int, Decimal | None, int | None, Decimal | None]]:
    rows = Recording(directory).table("top_of_book").sort_by("recv_ns").to_pylist()
    return [(r["seq"], r["bid_price"], r["bid_qty"], r["ask_price"]) for r in rows]


@pytest.mark.anyio
async def test_a_resync_reply_resumes_the_book_tables(tmp_path: Path) -> None:
    snapshot = md(1, "book.snapshot", bids=[["100.00", 1]], asks=[["101.00", 2]])
    async with Recorder(tmp_path, flush_interval=0.05) as recorder:
        recorder.describe(**DESCRIBE)
        recorder.feed("md", snapshot, T0 + 1)
        recorder.feed("md", md(2), T0 + 2)
        # seq 3 never came: the client resyncs; 4 and 5 arrive before the reply.
        recorder.feed("md", md(4), T0 + 4)
        recorder.feed("md", md(5, "trade", price="100.50", qty=1, trade_id="t5"), T0 + 5)
        book_at_4 = [(Decimal("100.04"), 4), (Decimal("100.02"), 2), (Decimal("100.00"), 1)]
        recorder.snapshot("ABC", 4, book_at_4, [("101.00", 2)], T0 + 6, "resync")
        recorder.feed("md", md(6), T0 + 7)
    assert recorder.stats()["tables_error"] is None
    assert tops(tmp_path) == [
        (1, Decimal("100.00"), 1, Decimal("101.00")),
        (2, Decimal("100.02"), 2, Decimal("101.00")),
        # the resync at 4, with the trade at 5 (held meanwhile) replayed on top
        (5, Decimal("100.04"), 4, Decimal("101.00")),
        (6, Decimal("100.06"), 6, Decimal("101.00")),
    ]
    snaps = Recording(tmp_path).table("book_snapshots").to_pylist()
    assert {(r["seq"], r["source"]) for r in snaps} == {(1, "md"), (4, "resync")}
    records = list(iter_raw(tmp_path, snapshots=True))
    assert records[4] == RawSnapshot(
        T0 + 6,
        "ABC",
        4,
        [["100.04", 4], ["100.02", 2], ["100.00", 1]],
        [["101.00", 2]],
        "resync",
    )
    assert RawSnapshot not in {type(r) for r in iter_raw(tmp_path)}  # opt-in for readers


@pytest.mark.anyio
async def test_the_handover_starts_the_book_tables_at_once(tmp_path: Path) -> None:
    async with Recorder(tmp_path, flush_interval=0.05) as recorder:
        recorder.describe(**DESCRIBE)
        recorder.snapshot("ABC", 10, [("99.99", 5)], [], T0, "handover")
        recorder.feed("md", md(11), T0 + 11)
        recorder.snapshot("ABC", "x", [], [], T0, "handover")  # type: ignore[arg-type]
        recorder.snapshot("ABC", 11, [("not a price", 1)], [], T0, "handover")
    stats = recorder.stats()
    assert stats["feed_errors"] == 2 and stats["fed"] == 2
    assert tops(tmp_path) == [
        (10, Decimal("99.99"), 5, None),
        (11, Decimal("100.11"), 11, None),
    ]


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and sessions are POSIX")
async def test_a_dead_writer_process_is_reported_and_the_raw_layer_goes_on(
    tmp_path: Path,
) -> None:
    async with Recorder(tmp_path, flush_interval=0.02) as recorder:
        recorder.describe(**DESCRIBE)
        recorder.feed("md", md(1), T0 + 1)
        await wait_until(lambda: recorder.stats()["table_process"] is not None)
        pid = recorder.stats()["table_process"]["pid"]
        if sys.platform != "win32":
            # Its own session: a Ctrl-C in the terminal does not reach it.
            assert os.getsid(pid) != os.getsid(0)
        os.kill(pid, signal.SIGKILL)
        seq = 2
        while recorder.stats()["tables_error"] is None:  # noticed at its next batch
            recorder.feed("md", md(seq), T0 + seq)
            seq += 1
            await anyio.sleep(0.02)
        stats = recorder.stats()
        assert stats["error"] is None and stats["state"] == "open"
        assert "SIGKILL" in stats["tables_error"] or "-9" in stats["tables_error"]
        assert stats["table_process"]["running"] is False
        recorder.feed("md", md(seq), T0 + seq)
    assert [f.raw for f in iter_raw(tmp_path)] == [md(s) for s in range(1, seq + 1)]
    leftovers = await anyio.to_thread.run_sync(lambda: list(tmp_path.glob("**/*.tmp")))
    assert all(p.name.startswith(".") for p in leftovers)  # nothing looks complete that is not


@pytest.mark.anyio
async def test_the_writer_process_is_joined_on_exit(tmp_path: Path) -> None:
    async with Recorder(tmp_path, flush_interval=0.02) as recorder:
        recorder.describe(**DESCRIBE)
        recorder.feed("md", md(1), T0 + 1)
        await wait_until(lambda: recorder.stats()["table_process"] is not None)
        assert recorder._proc is not None
        proc = recorder._proc.proc
    assert proc.returncode == 0  # waited for, exited cleanly: no orphan, no zombie
    stats = recorder.stats()
    assert stats["rows"]["book_deltas"] == 1 and stats["parquet_files"] == 1
    assert stats["table_process"]["running"] is False
    assert list(iter_raw(tmp_path)) == [RawFrame(T0 + 1, "md", md(1))]


@pytest.mark.anyio
async def test_a_raw_only_recorder_writes_no_tables(tmp_path: Path) -> None:
    async with Recorder(tmp_path, tables=False, flush_interval=0.02) as recorder:
        recorder.describe(**DESCRIBE)
        recorder.feed("md", md(1), T0 + 1)
    stats = recorder.stats()
    assert stats["rows"] == {} and stats["parquet_files"] == 0 and stats["raw_records"] == 1
    assert not await anyio.to_thread.run_sync(lambda: list(tmp_path.glob("**/*.parquet")))
    assert list(iter_raw(tmp_path)) == [RawFrame(T0 + 1, "md", md(1))]


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP and SIGKILL are POSIX")
async def test_a_batch_the_dead_writer_process_had_in_hand_is_marked_as_a_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    send, answer = WriterProcess._send, WriterProcess._answer

    def send_and_stop(self: WriterProcess, kind: bytes, payload: bytes) -> None:
        if kind == b"B" and sent.count(b"B") == 1:
            os.kill(self.pid, signal.SIGSTOP)  # the second batch is never read
        sent.append(kind)
        send(self, kind, payload)

    def kill_and_answer(self: WriterProcess) -> None:
        if self.unanswered and sent.count(b"B") == 2:
            os.kill(self.pid, signal.SIGKILL)  # dies with the second batch in its pipe
        answer(self)

    monkeypatch.setattr(WriterProcess, "_send", send_and_stop)
    monkeypatch.setattr(WriterProcess, "_answer", kill_and_answer)
    async with Recorder(tmp_path, batch_frames=1, flush_interval=60) as recorder:
        recorder.describe(**DESCRIBE)
        for seq in (1, 2, 3):  # a batch each
            recorder.feed("md", md(seq), T0 + seq)
            await wait_until(lambda seq=seq: recorder.stats()["batches"] == seq)  # type: ignore[misc]
        assert recorder.stats()["tables_error"] is not None
        recorder.feed("md", md(4), T0 + 4)
    stats = recorder.stats()
    assert stats["error"] is None and stats["dropped"] == 1
    assert list(iter_raw(tmp_path, gaps=True)) == [
        RawFrame(T0 + 1, "md", md(1)),  # written by the writer process before it died
        RawGap(T0 + 2, 1, T0 + 2, T0 + 2),  # sent, never answered: maybe lost
        RawFrame(T0 + 3, "md", md(3)),  # written by the session's process from then on
        RawFrame(T0 + 4, "md", md(4)),
    ]
    # The dead process's raw file was finished.
    assert not await anyio.to_thread.run_sync(lambda: list(tmp_path.glob("raw/.*")))
