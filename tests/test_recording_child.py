"""The recorder's writer process and the client's book hand-offs (`Recorder.snapshot`)."""

from __future__ import annotations

import gc
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from market_client.recording import RawFrame, RawSnapshot, Recorder, Recording, _child, iter_raw
from market_client.recording._child import WriterProcess
from market_client.recording._table_worker import GC_THRESHOLD, NICENESS, collect_less
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
        # Answered (its stats came back): the kill finds it idle.
        await wait_until(lambda: recorder.stats()["raw_records"] == 1)
        pid = recorder.stats()["table_process"]["pid"]
        if sys.platform != "win32":
            # Its own session: a Ctrl-C in the terminal does not reach it.
            assert os.getsid(pid) != os.getsid(0)
            # Below the session's priority: it falls behind, into the buffer.
            mine = os.getpriority(os.PRIO_PROCESS, 0)
            assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, mine + NICENESS)
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
    guard = recorder._proc._guard
    await anyio.to_thread.run_sync(guard.join, 5.0)
    assert not guard.is_alive()  # the watchdog's thread ended with it
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
    # What it is of, from the raw layer's header (no Parquet file to carry it).
    meta = Recording(tmp_path).metadata()
    assert (meta["gateway_url"], meta["library_version"]) == ("http://127.0.0.1:8000/", "9.9.9")
    assert meta["ticks"] == {s["sym"]: s["tick"] for s in SYMBOLS} and "format" not in meta


async def _feed_batches(recorder: Recorder, seqs: range) -> None:
    for seq in seqs:  # a batch each (batch_frames=1)
        before = recorder.stats()["batches"]
        recorder.feed("md", md(seq), T0 + seq)
        await wait_until(lambda before=before: recorder.stats()["batches"] > before)  # type: ignore[misc]


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP and SIGKILL are POSIX")
async def test_a_batch_the_dead_writer_process_never_wrote_is_written_by_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    send, answer = WriterProcess._send, WriterProcess._answer

    def send_and_stop(self: WriterProcess, kind: bytes, payload: Any) -> None:
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
        await _feed_batches(recorder, range(1, 4))
        assert recorder.stats()["tables_error"] is not None
        recorder.feed("md", md(4), T0 + 4)
    stats = recorder.stats()
    assert stats["error"] is None and stats["dropped"] == 0 and stats["gaps"] == 0
    # 1 by the writer process; 2 (sent, never read), 3 and 4 by the session's process.
    assert [f.raw for f in iter_raw(tmp_path, gaps=True)] == [md(s) for s in range(1, 5)]
    # The dead process's raw file was finished.
    assert not await anyio.to_thread.run_sync(lambda: list(tmp_path.glob("raw/.*")))


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_a_batch_the_dead_writer_process_wrote_is_not_written_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = WriterProcess._answer
    answered: list[int] = []

    def answer_then_die(self: WriterProcess) -> None:
        waiting = self.unanswered
        answer(self)  # it wrote the batch (raw layer first, then the tables)...
        if waiting and self._frames:  # the answer to a batch
            answered.append(self._frames)
            if len(answered) == 2:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
                self._waiting = True
                raise EOFError("no answer")  # ...and died before its answer came through

    monkeypatch.setattr(WriterProcess, "_answer", answer_then_die)
    async with Recorder(tmp_path, batch_frames=1, flush_interval=60) as recorder:
        recorder.describe(**DESCRIBE)
        await _feed_batches(recorder, range(1, 4))
        assert recorder.stats()["tables_error"] is not None
    stats = recorder.stats()
    assert stats["error"] is None and stats["dropped"] == 0
    assert [f.raw for f in iter_raw(tmp_path, gaps=True)] == [md(s) for s in range(1, 4)]


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_a_writer_process_that_dies_at_the_end_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    close = WriterProcess.close

    def kill_and_close(self: WriterProcess, timeout: float = 60.0) -> None:
        os.kill(self.pid, signal.SIGKILL)
        close(self, timeout)

    monkeypatch.setattr(WriterProcess, "close", kill_and_close)
    async with Recorder(tmp_path, flush_interval=60) as recorder:
        recorder.describe(**DESCRIBE)
        for seq in range(1, 6):
            recorder.feed("md", md(seq), T0 + seq)
    stats = recorder.stats()
    assert stats["tables_error"] is not None and stats["error"] is None
    assert stats["dropped"] == 0
    assert [f.raw for f in iter_raw(tmp_path)] == [md(s) for s in range(1, 6)]
    assert not await anyio.to_thread.run_sync(lambda: list(tmp_path.glob("**/.*.tmp")))


@pytest.mark.anyio
async def test_a_writer_process_that_exits_at_once_leaves_the_raw_layer_to_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    popen = subprocess.Popen

    def exits_at_once(args: list[str], **kwargs: Any) -> Any:
        return popen([sys.executable, "-c", "pass"], **kwargs)

    monkeypatch.setattr("market_client.recording._child.subprocess.Popen", exits_at_once)
    async with Recorder(tmp_path, flush_interval=0.02) as recorder:
        recorder.describe(**DESCRIBE)
        recorder.feed("md", md(1), T0 + 1)
        await wait_until(lambda: recorder.stats()["tables_error"] is not None)
        recorder.feed("md", md(2), T0 + 2)
    stats = recorder.stats()
    assert stats["error"] is None and stats["dropped"] == 0
    assert [f.raw for f in iter_raw(tmp_path)] == [md(1), md(2)]


_PYARROW_HERE = """
import sys, tempfile, anyio, orjson
from market_client.recording import Recorder

async def main():
    with tempfile.TemporaryDirectory() as tmp:
        async with Recorder(tmp, flush_interval=0.02) as recorder:
            recorder.describe(**orjson.loads(sys.argv[2]))
            recorder.feed("md", sys.argv[3], 1)
        stats = recorder.stats()
    print(orjson.dumps({
        "parquet_files": stats["parquet_files"],
        "tables_error": stats["tables_error"],
        "here": sorted(m for m in ("pyarrow", "numpy") if m in sys.modules),
    }).decode())

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.time_limit(60)
async def test_pyarrow_is_imported_by_the_writer_process_only(anyio_backend: str) -> None:
    # Imported by the session's process, pyarrow (and numpy with its thread
    # pool) would block the event loop for a fraction of a second.
    result = await anyio.run_process(
        [
            sys.executable,
            "-c",
            _PYARROW_HERE,
            anyio_backend,
            orjson.dumps(DESCRIBE).decode(),
            md(1),
        ]
    )
    out = orjson.loads(result.stdout)
    assert out == {"parquet_files": 1, "tables_error": None, "here": []}


def test_a_recorder_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what find_spec and import see as missing
    with pytest.raises(ImportError, match=r"pip install 'market-client\[record\]'"):
        Recorder(tmp_path)


def test_the_writer_process_collects_garbage_less_often() -> None:
    before = gc.get_threshold()
    try:
        collect_less()
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])
        assert GC_THRESHOLD >= 10_000  # well above CPython's default of 700
    finally:
        gc.set_threshold(*before)


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")
async def test_a_stuck_writer_process_is_killed_and_the_raw_layer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough for the child to start and answer on a loaded machine (a
    # shorter one killed it before it was stopped, on CI), short for a test.
    monkeypatch.setattr(_child, "ANSWER_TIMEOUT", 5.0)
    monkeypatch.setattr(_child, "ANSWER_PER_FRAME", 0.0)
    async with Recorder(tmp_path, flush_interval=0.02) as recorder:
        recorder.describe(**DESCRIBE)
        recorder.feed("md", md(1), T0 + 1)
        await wait_until(lambda: recorder.stats()["raw_records"] == 1)
        os.kill(recorder.stats()["table_process"]["pid"], signal.SIGSTOP)  # alive, never answers
        recorder.feed("md", md(2), T0 + 2)
        await wait_until(lambda: recorder.stats()["tables_error"] is not None)
        recorder.feed("md", md(3), T0 + 3)
    stats = recorder.stats()
    assert "-9" in stats["tables_error"] and stats["error"] is None
    assert stats["table_process"]["running"] is False
    # The batch it never answered and everything after: written by the session.
    assert [f.raw for f in iter_raw(tmp_path)] == [md(1), md(2), md(3)]
