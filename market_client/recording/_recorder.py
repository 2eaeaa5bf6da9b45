"""`Recorder`: a bounded buffer on the event loop, handed a batch at a time to a writer process."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup

from .._wire import price_text
from ._batch import FrameBuffer
from ._child import WriterProcess
from ._raw import last_record
from ._writer import BatchWriter, finish_leftovers, recording_meta

__all__ = ["Recorder"]

log = logging.getLogger("market_client.recording")


class Recorder:
    """Writes what a session receives into a directory, off the event loop.

    The client calls `describe` once, then hands it every MD frame and
    private CMD event as received, and `snapshot` for every book it loads
    outside the MD stream: the MD reader hands the frames it read together
    to `feed_many`, CMD events go to `feed`.
    Neither blocks or raises: a frame goes into a bounded buffer. A worker
    task hands the buffer, a batch at a time, to a thread
    (``anyio.to_thread``) that writes it to the recorder's writer process
    (the buffer keeps the frames' objects: a few joins, no Python step per
    frame), which encodes the raw layer's lines, compresses and appends
    them, and builds the Parquet tables. Everything
    done per frame is done there, at a lower CPU priority than the session:
    the session's process spends on a frame only what it takes to put it in
    the buffer. A writer process that dies is reported in
    ``stats()["tables_error"]``; the session goes on, and so does the raw
    layer, written from then on by the worker thread itself (a gap record
    marks the batch the process may have lost).

    Overflow policy: when the buffer holds ``max_buffer`` frames or
    ``max_buffer_bytes`` bytes (a ``str`` frame counts its characters; the
    disk, or the writer process, cannot keep up), new frames are dropped
    and counted (``stats()["dropped"]``), and the raw layer gets a gap
    record (how many, from when to when) at the place they would have
    been; the ``top_of_book`` of every symbol pauses until its next
    snapshot. The session itself is never slowed down. A failing
    disk (an ``OSError`` while writing) stops the recording: it is logged,
    kept in ``stats()["error"]``, and every later frame is counted as
    dropped; the session goes on.

    Leaving the ``async with`` block (also by cancellation or Ctrl-C) writes
    what is buffered and closes every file, shielded from cancellation.

    Args:
        directory: Where to write (created if needed).
        raw: Write the raw layer (``raw/*.jsonl.zst``).
        tables: Write the Parquet tables.
        candles: Candle intervals in ms to derive from MD trades (e.g. ``[1000, 60000]``).
        batch_frames: Frames that wake the writer before ``flush_interval``.
        flush_interval: Seconds a frame waits at most before it is written.
        max_buffer: Most frames waiting to be written.
        max_buffer_bytes: Most bytes of frames waiting to be written (a
            ``str`` frame counts its characters).
        rotate_bytes: Close a file and start the next one at about this size.
        rotate_seconds: Close a file and start the next one at this age.
        row_group_rows: Rows per Parquet row group.
        zstd_level: zstandard level of the raw layer.

    Attributes:
        directory: Where it writes.
        options: The options it was made with.
        buffer: The `FrameBuffer` frames wait in for the worker thread (a new
            one for each batch taken). `feed_many` appends the frames of
            one read at once while it has room; `feed` takes one frame.

    Raises:
        ValueError: An option is out of range.
        ImportError: pyarrow or zstandard is missing (``pip install 'market-client[record]'``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        raw: bool = True,
        tables: bool = True,
        candles: Iterable[int] = (),
        batch_frames: int = 20_000,
        flush_interval: float = 0.5,
        max_buffer: int = 500_000,
        max_buffer_bytes: int = 256 << 20,
        rotate_bytes: int = 64 << 20,
        rotate_seconds: float = 60.0,
        row_group_rows: int = 65_536,
        zstd_level: int = 3,
    ) -> None:
        # pyarrow is only imported by the writer process: importing it here would
        # block the event loop for a fraction of a second (numpy and its thread
        # pool with it) and add them to the session's memory. zstandard is
        # imported: the raw layer falls back to this process.
        cause: Exception | None = None
        try:
            import zstandard  # noqa: F401

            found = importlib.util.find_spec("pyarrow") is not None
        except (ImportError, ValueError) as exc:
            found, cause = False, exc
        if not found:
            raise ImportError(
                "recording needs pyarrow and zstandard: pip install 'market-client[record]'"
            ) from cause
        intervals = list(candles)
        for interval in intervals:
            if not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0:
                raise ValueError(f"candle intervals are positive ms, got {interval!r}")
        for name, value in (
            ("batch_frames", batch_frames),
            ("max_buffer", max_buffer),
            ("max_buffer_bytes", max_buffer_bytes),
            ("rotate_bytes", rotate_bytes),
            ("row_group_rows", row_group_rows),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, seconds in (
            ("flush_interval", flush_interval),
            ("rotate_seconds", rotate_seconds),
        ):
            if not isinstance(seconds, (int, float)) or not seconds > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
        if not raw and not tables:
            raise ValueError("nothing to record: raw and tables are both off")
        self.directory = os.fspath(directory)
        self.options: dict[str, Any] = {
            "raw": raw,
            "tables": tables,
            "candles": intervals,
            "batch_frames": batch_frames,
            "flush_interval": flush_interval,
            "max_buffer": max_buffer,
            "max_buffer_bytes": max_buffer_bytes,
            "rotate_bytes": rotate_bytes,
            "rotate_seconds": rotate_seconds,
            "row_group_rows": row_group_rows,
            "zstd_level": zstd_level,
        }
        self._writer_options: dict[str, Any] = {
            "raw": raw,
            "tables": tables,
            "candles": intervals,
            "rotate_bytes": rotate_bytes,
            "rotate_seconds": rotate_seconds,
            "row_group_rows": row_group_rows,
            "zstd_level": zstd_level,
        }
        self._proc: WriterProcess | None = None
        # The raw layer written in this process: only once the writer process
        # could not start or died.
        self._fallback: BatchWriter | None = None
        self._proc_reported = False
        self._proc_start_error: str | None = None
        self._unanswered: FrameBuffer | None = None  # the batch the process has not answered
        self._meta: dict[str, Any] | None = None
        self._batch_frames = batch_frames
        self._flush_interval = float(flush_interval)
        self._max_buffer = max_buffer
        self._wake_at = batch_frames - 1  # frames held when the next one wakes the writer
        self._max_bytes = max_buffer_bytes
        self.buffer = self._new_buffer()
        self._inflight: FrameBuffer | None = None
        self._describe: dict[str, Any] | None = None
        self._state: Literal["unopened", "open", "closed"] = "unopened"
        self._tg: TaskGroup | None = None
        self._wake: anyio.Event | None = None
        self._error: BaseException | None = None
        self._gap_count = 0
        self._gap_first = 0
        self._gap_last = 0
        self._counts = {"dropped": 0, "gaps": 0, "batches": 0, "feed_errors": 0}
        self._taken = 0  # records handed to the writer (frames, books and gap markers)
        self._write_seconds = 0.0
        self._write_cpu = 0.0  # CPU time of the worker thread
        self._lost = 0  # frames the worker thread could not write (counted there)
        self._started = 0.0
        self._ended = 0.0

    # -- lifecycle --------------------------------------------------------------
    async def __aenter__(self) -> Recorder:
        if self._state != "unopened":
            raise RuntimeError(f"this Recorder is {self._state}; a recorder is opened once")
        await anyio.to_thread.run_sync(
            lambda: Path(self.directory).mkdir(parents=True, exist_ok=True)
        )
        self._state = "open"
        self._started = time.monotonic()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open" or self._tg is None:
            self._state = "closed"
            return
        self._state = "closed"
        tg, self._tg = self._tg, None
        tg.cancel_scope.cancel()
        try:
            # Returns once the worker is gone (a thread it started runs to its end).
            await tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                inflight, self._inflight = self._inflight, None
                batch = self._take()
                rest = [b for b in (inflight, batch) if b is not None and len(b)]
                self._max_buffer = 0  # from now on every frame is counted as dropped
                self.buffer.room = 0
                await anyio.to_thread.run_sync(self._finish, rest)
                self._ended = time.monotonic()

    def _finish(self, batches: list[FrameBuffer]) -> None:
        try:
            for batch in batches:
                self._write(batch)
            proc = self._proc
            if proc is not None and proc.error is None:
                proc.close()
                if self._check_process():  # it died writing its last batch or its files
                    self._fall_back(FrameBuffer())
            if self._fallback is not None:
                try:
                    self._fallback.close()
                except Exception as exc:
                    self._failed(exc)
        except BaseException:
            if self._proc is not None:
                self._proc.kill()  # never an orphan, whatever went wrong
            raise

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            buf = self.buffer
            # Wait unless a batch's worth is held, or the buffer is full (by bytes).
            if len(buf) < self._batch_frames and buf.size < self._max_bytes:
                self._wake = anyio.Event()
                with anyio.move_on_after(max(0.0, last + self._flush_interval - time.monotonic())):
                    await self._wake.wait()
            last = time.monotonic()
            self._inflight = self._take()
            await anyio.to_thread.run_sync(self._write, self._inflight)

    def _take(self) -> FrameBuffer:
        if self._gap_count:
            self._close_gap()  # the dropped frames came after everything buffered
        batch, self.buffer = self.buffer, self._new_buffer()
        self._taken += len(batch)
        return batch

    def _new_buffer(self) -> FrameBuffer:
        # `feed_many` appends whole reads up to the frame that wakes the writer.
        return FrameBuffer(min(self._wake_at, self._max_buffer), self._max_bytes)

    # -- the worker thread ----------------------------------------------------------
    def _write(self, batch: FrameBuffer) -> None:
        # In the worker thread: the only place the writer process and the
        # fallback writer are touched.
        started = time.perf_counter()
        cpu_started = time.thread_time()
        try:
            if self._error is not None:
                self._lost += batch.frames_held
                return
            describe, self._describe = self._describe, None
            if describe is not None:
                self._open(describe)
            elif self._meta is None and len(batch):
                self._open(
                    {
                        "gateway_url": "",
                        "symbols": [],
                        "protocol_version": "",
                        "library_version": "",
                    }
                )
            proc = self._proc
            if proc is not None and proc.error is None:
                if len(batch):
                    proc.send(b"B", batch.parts(), frames=len(batch))
                else:
                    proc.send(b"T")  # rotation by age also happens when idle
                if proc.error is None:
                    # Sent, so the one before was answered: keep this one until it is.
                    self._unanswered = batch if len(batch) else None
                elif self._check_process():
                    self._fall_back(batch)  # it did not take this batch
            elif self._check_process():  # it died before (it could not start, say)
                self._fall_back(batch)
            elif self._fallback is not None:
                self._fallback.write_records(batch.records())
            else:  # no layer left to write to
                self._lost += batch.frames_held
            if len(batch):
                self._counts["batches"] += 1
        except Exception as exc:
            self._lost += batch.frames_held
            self._failed(exc)
        finally:
            self._inflight = None
            self._write_seconds += time.perf_counter() - started
            self._write_cpu += time.thread_time() - cpu_started

    def _open(self, describe: dict[str, Any]) -> None:
        meta = recording_meta(**describe)
        if self._meta is None:
            try:
                self._proc = WriterProcess(self.directory, meta, self._writer_options)
            except OSError as exc:  # it could not start: the raw layer is written here
                self._proc_start_error = f"the writer process could not start: {exc}"
                log.exception("recording into %s: %s", self.directory, self._proc_start_error)
                self._meta = meta
                self._start_fallback()
        # A later description reaches the files opened from here on (the
        # writer process keeps the one it was started with).
        self._meta = meta

    def _check_process(self) -> bool:
        """Report a writer process that has just died (once); whether it has."""
        proc = self._proc
        if proc is None or proc.error is None or self._proc_reported:
            return False
        self._proc_reported = True
        log.error("recording into %s: the writer process stopped: %s", self.directory, proc.error)
        return True

    def _fall_back(self, batch: FrameBuffer) -> None:
        """The writer process died: write the raw layer here, from what it had not written on."""
        proc = self._proc
        assert proc is not None
        # Its raw file reads up to its last flushed batch; its Parquet files are lost.
        finish_leftovers(self.directory, pid=proc.pid)
        pending = self._unanswered if proc.unanswered else None
        self._unanswered = None
        records = pending.records() if pending is not None else []
        # It writes a batch's raw block before its table rows, where it most
        # likely died: a batch already in its raw file is not written twice.
        if (
            records
            and self._writer_options["raw"]
            and records[-1] == last_record(self.directory, proc.pid)
        ):
            pending, records = None, []
        if not self._start_fallback():
            self._lost += batch.frames_held + (pending.frames_held if pending is not None else 0)
            return
        assert self._fallback is not None
        if pending is not None:
            try:
                self._fallback.write_records(records)
            except Exception:
                self._lost += pending.frames_held  # (``batch`` is counted by the caller)
                raise
        self._fallback.write_records(batch.records())

    def _start_fallback(self) -> bool:
        if not self._writer_options["raw"]:
            self._failed(RuntimeError(self._proc_start_error or "the writer process stopped"))
            return False
        options = {**self._writer_options, "tables": False}
        self._fallback = BatchWriter(self.directory, **options)
        assert self._meta is not None
        self._fallback.open(self._meta)
        return True

    def _failed(self, exc: BaseException) -> None:
        if self._error is None:
            log.error("recording into %s stopped: %s", self.directory, exc)
            self._error = exc

    # -- the client's side --------------------------------------------------------
    def describe(
        self,
        *,
        gateway_url: str,
        symbols: list[dict[str, Any]],
        protocol_version: str,
        library_version: str,
    ) -> None:
        """Say what the recording is of: stored in every file's metadata.

        Call it before the first `feed` (the client does).

        Args:
            gateway_url: The gateway's URL (any token or credentials are stripped).
            symbols: The ``symbols.list`` entries (``sym``, ``tick``, ``min_qty``,
                ``lot``, ``status``): the ticks set the price columns' scale.
            protocol_version: The wire protocol's version.
            library_version: ``market_client``'s version.
        """
        self._describe = {
            "gateway_url": gateway_url,
            "symbols": [dict(s) for s in symbols],
            "protocol_version": protocol_version,
            "library_version": library_version,
        }

    def feed(self, channel: Literal["md", "cmd"] | str, raw: str | bytes, recv_ns: int) -> None:
        """Hand one frame as received, with its local receive time in ns.

        Never blocks, never raises: when the buffer is full the frame is
        dropped and counted, and a gap record marks the place in the raw layer.

        Args:
            channel: ``"md"`` or ``"cmd"``.
            raw: The frame exactly as received.
            recv_ns: ``time.time_ns()`` when it was received.
        """
        try:
            self._append(channel, raw, recv_ns)
        except Exception:
            self._counts["feed_errors"] += 1

    def feed_many(self, raws: Sequence[str | bytes], recv_ns: int) -> None:
        """Hand MD frames received together (one read of the socket), with one receive time.

        Never blocks, never raises. While the buffer has room for all of
        them they go in at once; otherwise each goes through `feed`.

        Args:
            raws: The frames exactly as received, in order.
            recv_ns: ``time.time_ns()`` when they were received.
        """
        if not self.buffer.extend_md(raws, recv_ns):
            for raw in raws:
                self.feed("md", raw, recv_ns)

    def snapshot(
        self,
        sym: str,
        seq: int,
        bids: Iterable[Any],
        asks: Iterable[Any],
        recv_ns: int,
        source: Literal["resync", "handover"] | str = "resync",
    ) -> None:
        """Hand a book the client loaded outside the MD stream, as the client has it.

        The client calls it after loading a ``book.get`` reply for a resync
        (``source="resync"``), and for each of its synced books when a
        recording starts mid-session (``source="handover"``): the book tables
        of that symbol go on (or start) at once instead of waiting for the
        next MD snapshot. The raw layer keeps it as a ``snapshot`` line and
        ``book_snapshots`` as rows with that ``source``. Never blocks, never
        raises (like `feed`; a bad book is counted in ``feed_errors``).

        Args:
            sym: The symbol.
            seq: The last increment the book includes.
            bids: ``(price, qty)`` levels, best first (prices as ``Decimal``
                or decimal strings).
            asks: ``(price, qty)`` levels, best first.
            recv_ns: ``time.time_ns()`` when the client loaded it.
            source: ``"resync"`` or ``"handover"``.
        """
        try:
            if type(seq) is not int or not isinstance(sym, str):
                raise TypeError("a snapshot needs a str sym and an int seq")
            bid_levels = [[price_text(price), int(qty)] for price, qty in bids]
            ask_levels = [[price_text(price), int(qty)] for price, qty in asks]
            book = {
                "sym": sym,
                "seq": seq,
                "bids": bid_levels,
                "asks": ask_levels,
                "source": str(source),
            }
            self._append("snapshot", None, recv_ns, book)
        except Exception:
            self._counts["feed_errors"] += 1

    def _append(self, channel: str, raw: Any, recv_ns: int, book: Any = None) -> None:
        buf = self.buffer
        held = len(buf)
        if held < self._max_buffer and buf.size < self._max_bytes:
            if self._gap_count:
                self._close_gap()
            if book is not None:
                buf.add_snapshot(book, recv_ns)
            else:
                buf.add_frame(channel, raw, recv_ns)
            if held >= self._wake_at:
                # A batch is full: wake the writer; the reader may fill the rest.
                if self._wake is not None:
                    self._wake.set()
                buf.room = self._max_buffer
        else:
            if type(recv_ns) is not int or not 0 <= recv_ns < 1 << 63:
                raise TypeError(f"recv_ns must be an int64 of ns, got {recv_ns!r}")
            if self._wake is not None:
                self._wake.set()  # full before a batch's worth of frames (by bytes): take it now
            self._counts["dropped"] += 1
            if self._state == "open" and self._error is None:
                if not self._gap_count:
                    self._gap_first = recv_ns
                self._gap_count += 1
                self._gap_last = recv_ns

    def _close_gap(self) -> None:
        self.buffer.add_gap(self._gap_count, self._gap_first, self._gap_last)
        self._counts["gaps"] += 1
        self._gap_count = 0

    def stats(self) -> dict[str, Any]:
        """Rows, files, bytes and drops so far.

        Returns:
            ``directory``, ``state``, ``fed`` (frames and books accepted),
            ``buffered``, ``dropped``, ``gaps``, ``batches``, ``feed_errors``,
            ``rows`` (per table, as of the writer process's last answer),
            ``raw_records``, ``raw_files``, ``raw_bytes``, ``parquet_files``,
            ``parquet_bytes`` (closed files), ``bad_frames`` (frames the tables
            could not use; the raw layer keeps them), ``write_seconds`` (wall
            time of the worker thread, waits for the writer process included),
            ``write_cpu_seconds`` (its CPU time: packing the batches and the
            pipe), ``table_seconds`` (the writer process's CPU time: both
            layers), ``table_process`` (the writer process: ``pid``,
            ``running``; None before the first batch), ``tables_error`` (why
            the writer process stopped, if it did: the raw layer goes on in
            the session's process), ``elapsed`` and ``error`` (why the whole
            recording stopped).
        """
        end = self._ended or time.monotonic()
        proc = self._proc
        child = proc.stats if proc is not None else {}
        here = self._fallback.stats() if self._fallback is not None else {}
        return {
            "directory": self.directory,
            "state": self._state,
            "fed": self._taken + len(self.buffer) - self._counts["gaps"],
            **self._counts,
            "dropped": self._counts["dropped"] + self._lost,
            "buffered": len(self.buffer) - self.buffer.gaps,
            "rows": dict(child.get("rows", {})),
            "bad_frames": child.get("bad_frames", 0),
            **{
                key: child.get(key, 0) + here.get(key, 0)
                for key in ("raw_records", "raw_files", "raw_bytes")
            },
            "parquet_files": child.get("parquet_files", 0),
            "parquet_bytes": child.get("parquet_bytes", 0),
            "write_seconds": round(self._write_seconds, 3),
            "write_cpu_seconds": round(self._write_cpu, 3),
            "table_seconds": round(child.get("busy", 0.0), 3),
            "table_process": None
            if proc is None
            else {"pid": proc.pid, "running": proc.proc.returncode is None},
            "tables_error": self._proc_start_error if proc is None else proc.error,
            "elapsed": round(end - self._started, 3) if self._started else 0.0,
            "error": None if self._error is None else repr(self._error),
        }
