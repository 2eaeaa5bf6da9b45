"""The writing half of the recorder: one synchronous object a worker thread drives.

`BatchWriter.write` takes a batch of frames (and gap markers), appends them to
the raw layer as one flushed block, turns them into table rows and writes
Parquet row groups; `BatchWriter.close` finishes every file. Files are written
under a hidden ``.NAME.tmp`` name and renamed when closed, so every file named
``*.parquet`` (or ``*.jsonl.zst``) is complete.
"""

from __future__ import annotations

import datetime
import os
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ._raw import (
    RawFrame,
    RawGap,
    RawSnapshot,
    RawWriter,
    encode_records,
    frame_record,
    gap_record,
    iter_raw,
    snapshot_record,
)
from ._tables import SCHEMA_VERSION, TABLES, Rows, TableBuilder, arrow_schema, tick_scale

__all__ = [
    "GAP",
    "SNAPSHOT",
    "BatchWriter",
    "PartitionedWriter",
    "TableWriter",
    "clean_url",
    "finish_leftovers",
    "rebuild",
    "recording_meta",
]

GAP = "gap"  # channel of a gap marker in a batch: raw is (dropped, first_ns, last_ns)
SNAPSHOT = "snapshot"  # channel of a book loaded outside MD: raw is the snapshot's dict
TMP_SUFFIX = ".tmp"


def clean_url(url: str) -> str:
    """``url`` without credentials, query or fragment (a token never reaches a file)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _day(day: int) -> str:
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


class _OpenFile:
    __slots__ = ("final", "opened", "rows", "tmp", "writer")

    def __init__(self, writer: Any, tmp: Path, final: Path) -> None:
        self.writer = writer
        self.tmp = tmp
        self.final = final
        self.opened = time.monotonic()
        self.rows = 0


class PartitionedWriter:
    """Parquet files under ``TABLE/date=YYYY-MM-DD/sym=SYM/``, rotated by size and age.

    Rows wait in memory until a partition has ``row_group_rows`` of them (one
    row group is written, the file stays open), until the oldest has waited
    ``rotate_seconds`` (they are written and the file is closed), or until the
    writer closes.

    Args:
        directory: The recording's directory.
        schemas: Arrow schema of each table.
        rotate_bytes: Close a file once about this many bytes were written to it.
        rotate_seconds: Close a file once it has been open this long.
        row_group_rows: Rows per Parquet row group.
        compression: Parquet compression codec.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        schemas: dict[str, Any],
        *,
        rotate_bytes: int,
        rotate_seconds: float,
        row_group_rows: int,
        compression: str = "zstd",
    ) -> None:
        self.dir = Path(directory)
        self.schemas = schemas
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.pending: dict[tuple[str, str, int], list[Rows]] = {}
        self.pending_rows: dict[tuple[str, str, int], int] = {}
        self.pending_since: dict[tuple[str, str, int], float] = {}
        self.open: dict[tuple[str, str, int], _OpenFile] = {}
        self.files = 0
        self.bytes = 0  # bytes of closed files
        self.rows_written = 0
        self._count = 0

    def add(self, parts: dict[tuple[str, str, int], Rows]) -> None:
        """Queue rows by partition; write the row groups that are full."""
        now = time.monotonic()
        for key, rows in parts.items():
            if key not in self.pending:
                self.pending[key] = []
                self.pending_since[key] = now
            self.pending[key].append(rows)
            self.pending_rows[key] = self.pending_rows.get(key, 0) + len(rows)
        for key in list(self.pending):
            # Rows wait at most rotate_seconds; then they are written and the
            # file closed, so a file spans about rotate_seconds of data.
            due = now - self.pending_since[key] >= self.rotate_seconds
            if self.pending_rows[key] >= self.row_group_rows or due:
                self._write(key)
                if due:
                    self._close(key)
        for key in [k for k, h in self.open.items() if now - h.opened >= self.rotate_seconds]:
            self._close(key)  # idle partitions too: no file stays open for long

    def _write(self, key: tuple[str, str, int]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        chunks = self.pending.pop(key, [])
        self.pending_rows.pop(key, None)
        self.pending_since.pop(key, None)
        if not chunks:
            return
        table, sym, day = key
        schema = self.schemas[table]
        data = pa.concat_tables([rows.to_arrow(schema) for rows in chunks])
        handle = self.open.get(key)
        if handle is None:
            folder = self.dir / table / f"date={_day(day)}" / f"sym={_escape(sym)}"
            folder.mkdir(parents=True, exist_ok=True)
            self._count += 1
            name = f"part-{time.time_ns()}-{os.getpid()}-{self._count}.parquet"
            tmp = folder / f".{name}{TMP_SUFFIX}"
            writer = pq.ParquetWriter(tmp, schema, compression=self.compression)
            handle = self.open[key] = _OpenFile(writer, tmp, folder / name)
        handle.writer.write_table(data, row_group_size=max(len(data), 1))
        handle.rows += len(data)
        self.rows_written += len(data)
        if _size(handle.tmp) >= self.rotate_bytes:
            self._close(key)

    def _close(self, key: tuple[str, str, int]) -> None:
        handle = self.open.pop(key, None)
        if handle is None:
            return
        handle.writer.close()
        os.replace(handle.tmp, handle.final)
        self.files += 1
        self.bytes += _size(handle.final)

    def open_bytes(self) -> int:
        """Bytes written so far to files still open."""
        return sum(_size(h.tmp) for h in self.open.values())

    def close(self) -> None:
        """Write every pending row and close every file."""
        for key in list(self.pending):
            self._write(key)
        for key in list(self.open):
            self._close(key)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _escape(sym: str) -> str:
    # Hive paths: keep names readable, escape what a path cannot hold.
    return urllib.parse.quote(sym, safe="")


def recording_meta(
    *,
    gateway_url: str,
    symbols: list[dict[str, Any]],
    protocol_version: str,
    library_version: str,
) -> dict[str, Any]:
    """What a recording is of: the metadata of every raw and Parquet file."""
    ticks = {str(s["sym"]): str(s["tick"]) for s in symbols if "sym" in s and "tick" in s}
    scale = max((tick_scale(t) for t in ticks.values()), default=8)
    return {
        "gateway_url": clean_url(gateway_url),
        "protocol_version": protocol_version,
        "library_version": library_version,
        "symbols": {
            str(s["sym"]): {k: s.get(k) for k in ("tick", "min_qty", "lot", "status")}
            for s in symbols
            if "sym" in s
        },
        "ticks": ticks,
        "price_scale": scale,
        "schema_version": SCHEMA_VERSION,
    }


class TableWriter:
    """The Parquet tables of one recording, fed raw-layer records (used from one thread).

    Args:
        directory: The recording's directory.
        meta: `recording_meta` of the recording.
        candles: Candle intervals (ms) to derive from trades.
        rotate_bytes: Rotation size of every file.
        rotate_seconds: Rotation age of every file.
        row_group_rows: Rows per Parquet row group.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        meta: dict[str, Any],
        *,
        candles: Iterable[int] = (),
        rotate_bytes: int = 64 << 20,
        rotate_seconds: float = 60.0,
        row_group_rows: int = 65_536,
    ) -> None:
        scale = int(meta.get("price_scale", 8))
        self.builder = TableBuilder(scale, candles)
        schemas = {}
        for table in TABLES:
            file_meta = {f"market_client.{k}": _text(v) for k, v in meta.items()}
            file_meta["market_client.table"] = table
            schemas[table] = arrow_schema(table, scale, file_meta)
        self.parquet = PartitionedWriter(
            directory,
            schemas,
            rotate_bytes=rotate_bytes,
            rotate_seconds=rotate_seconds,
            row_group_rows=row_group_rows,
        )

    def write(
        self, records: Iterable[RawFrame | RawGap | RawSnapshot | None], *, take: bool = True
    ) -> None:
        """Turn records into rows and write the row groups that are due (with ``take``)."""
        builder = self.builder
        add = builder.add
        for record in records:
            if type(record) is RawFrame:
                add(record.channel, record.raw, record.recv_ns)
            elif type(record) is RawGap:
                builder.gap()
            elif type(record) is RawSnapshot:
                builder.snapshot(
                    record.sym,
                    record.seq,
                    record.bids,
                    record.asks,
                    record.recv_ns,
                    record.source,
                )
        if take:
            self.parquet.add(builder.take())

    def close(self) -> None:
        """Write every pending row (candles still open as incomplete) and close every file."""
        self.builder.finish_candles(time.time_ns())
        self.parquet.add(self.builder.take())
        self.parquet.close()

    def stats(self) -> dict[str, Any]:
        """Rows per table, frames the tables could not use, Parquet files and bytes."""
        return {
            "rows": dict(self.builder.rows),
            "bad_frames": self.builder.bad_frames,
            "parquet_files": self.parquet.files + len(self.parquet.open),
            "parquet_bytes": self.parquet.bytes,
        }


class BatchWriter:
    """Raw layer and tables of one recording in one thread (what `rebuild` uses).

    Args:
        directory: The recording's directory.
        raw: Write the raw layer.
        tables: Write the Parquet tables.
        candles: Candle intervals (ms) to derive from trades.
        rotate_bytes: Rotation size of every file.
        rotate_seconds: Rotation age of every file.
        row_group_rows: Rows per Parquet row group.
        zstd_level: Compression level of the raw layer.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        raw: bool = True,
        tables: bool = True,
        candles: Iterable[int] = (),
        rotate_bytes: int = 64 << 20,
        rotate_seconds: float = 60.0,
        row_group_rows: int = 65_536,
        zstd_level: int = 3,
    ) -> None:
        self.dir = Path(directory)
        self.candles = list(candles)
        self.raw = (
            RawWriter(
                directory,
                rotate_bytes=rotate_bytes,
                rotate_seconds=rotate_seconds,
                level=zstd_level,
            )
            if raw
            else None
        )
        self.want_tables = tables
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.row_group_rows = row_group_rows
        self.tables: TableWriter | None = None
        self.meta: dict[str, Any] = {}
        self.gaps = 0
        self.frames = 0

    @property
    def builder(self) -> TableBuilder | None:
        """The row builder (None without tables or before `describe`)."""
        return self.tables.builder if self.tables is not None else None

    def describe(
        self,
        *,
        gateway_url: str,
        symbols: list[dict[str, Any]],
        protocol_version: str,
        library_version: str,
    ) -> None:
        """Set what the recording is of; tables can be written from here on."""
        self.open(
            recording_meta(
                gateway_url=gateway_url,
                symbols=symbols,
                protocol_version=protocol_version,
                library_version=library_version,
            )
        )

    def open(self, meta: dict[str, Any]) -> None:
        """Like `describe`, with the metadata made already (`recording_meta`)."""
        self.meta = meta
        if self.raw is not None:
            self.raw.meta.update(self.meta)
        if self.want_tables:
            self.tables = TableWriter(
                self.dir,
                self.meta,
                candles=self.candles,
                rotate_bytes=self.rotate_bytes,
                rotate_seconds=self.rotate_seconds,
                row_group_rows=self.row_group_rows,
            )

    def write(self, batch: list[tuple[str, Any, int]]) -> None:
        """Write one batch of ``(channel, raw, recv_ns)`` (channel `GAP`: a gap marker)."""
        self.write_records(list(_records(batch)))

    def write_records(self, records: list[RawFrame | RawGap | RawSnapshot]) -> None:
        """Write records in order: the raw layer as one flushed block, then the tables' rows."""
        if not records:
            if self.tables is not None:
                self.tables.write(())  # rotation by age also happens when idle
            return
        if self.raw is not None:
            lines = encode_records([_line(record) for record in records])
            self.raw.write_block(lines, len(records), records[0].recv_ns)
        if self.tables is not None:
            self.tables.write(records)
        self.gaps += sum(1 for record in records if type(record) is RawGap)
        self.frames += len(records)

    def close(self) -> None:
        """Flush and close every file (candles still open are written as incomplete)."""
        try:
            if self.tables is not None:
                self.tables.close()
        finally:
            if self.raw is not None:
                self.raw.close()

    def stats(self) -> dict[str, Any]:
        """Rows per table, files, bytes (a snapshot; read from the event loop thread)."""
        raw = self.raw
        tables = (
            self.tables.stats()
            if self.tables is not None
            else {"rows": {}, "bad_frames": 0, "parquet_files": 0, "parquet_bytes": 0}
        )
        return {
            **tables,
            "raw_records": raw.records if raw is not None else 0,
            "raw_files": (raw.files + raw.file_open) if raw is not None else 0,
            "raw_bytes": raw.bytes if raw is not None else 0,
        }


def _records(batch: list[tuple[str, Any, int]]) -> Iterable[RawFrame | RawGap | RawSnapshot]:
    for channel, raw, recv_ns in batch:
        if channel == GAP:
            yield RawGap(recv_ns, *raw)
        elif channel == SNAPSHOT:
            yield RawSnapshot(
                recv_ns,
                raw["sym"],
                raw["seq"],
                raw["bids"],
                raw["asks"],
                raw.get("source", "resync"),
            )
        else:
            yield RawFrame(recv_ns, channel, raw)


def _line(record: RawFrame | RawGap | RawSnapshot) -> dict[str, Any]:
    if type(record) is RawFrame:
        return frame_record(record.channel, record.raw, record.recv_ns)
    if type(record) is RawGap:
        return gap_record(record.dropped, record.first_ns, record.last_ns)
    assert type(record) is RawSnapshot
    book = {
        "sym": record.sym,
        "seq": record.seq,
        "bids": record.bids,
        "asks": record.asks,
        "source": record.source,
    }
    return snapshot_record(book, record.recv_ns)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def finish_leftovers(
    directory: str | os.PathLike[str], *, pid: int | None = None
) -> dict[str, int]:
    """Tidy what a killed recorder left: finish raw ``.tmp`` files, delete Parquet ones.

    A raw ``.tmp`` file is readable up to its last flushed batch, so it is
    renamed to its final name; a Parquet ``.tmp`` file has no footer and is
    deleted (its rows are in the raw layer: `rebuild` writes them again).

    Args:
        directory: A recording's directory.
        pid: Only the files of the writer that had this process id (the
            others may belong to a recorder still writing).

    Returns:
        ``{"raw_kept": n, "parquet_removed": m}``.
    """
    root = Path(directory)
    owner = "*" if pid is None else str(pid)
    kept = removed = 0
    # raw-<stamp>-<first_ns>-<pid>-<n>.jsonl.zst and part-<ns>-<pid>-<n>.parquet
    for tmp in root.glob(f"raw/.raw-*-*-{owner}-*{TMP_SUFFIX}"):
        os.replace(tmp, tmp.with_name(tmp.name[1 : -len(TMP_SUFFIX)]))
        kept += 1
    for table in TABLES:
        for tmp in (root / table).glob(f"**/.part-*-{owner}-*.parquet{TMP_SUFFIX}"):
            tmp.unlink()
            removed += 1
    return {"raw_kept": kept, "parquet_removed": removed}


def rebuild(directory: str | os.PathLike[str], *, candles: Iterable[int] = ()) -> dict[str, int]:
    """Write the tables of a recording again from its raw layer.

    Use it after a crash (the tables of the files that were open are lost; the
    raw layer has every frame up to the last batch) or to add candles. Every
    table folder is replaced.

    Args:
        directory: A recording's directory (with a ``raw`` folder).
        candles: Candle intervals (ms) to derive from trades.

    Returns:
        Rows written per table.
    """
    import shutil

    root = Path(directory)
    finish_leftovers(root)
    meta = _raw_meta(root)
    staging = root / ".rebuild"
    shutil.rmtree(staging, ignore_errors=True)
    writer = BatchWriter(staging, raw=False, candles=candles, rotate_seconds=float("inf"))
    writer.describe(
        gateway_url=meta.get("gateway_url", ""),
        symbols=[{"sym": s, **v} for s, v in meta.get("symbols", {}).items()],
        protocol_version=meta.get("protocol_version", ""),
        library_version=meta.get("library_version", ""),
    )
    assert writer.tables is not None
    batch: list[RawFrame | RawGap | RawSnapshot] = []
    for record in iter_raw(root, gaps=True, snapshots=True):
        batch.append(record)
        if len(batch) >= 50_000:
            writer.tables.write(batch)
            batch = []
    writer.tables.write(batch)
    writer.close()
    for table in TABLES:
        shutil.rmtree(root / table, ignore_errors=True)
        if (staging / table).exists():
            os.replace(staging / table, root / table)
    shutil.rmtree(staging, ignore_errors=True)
    assert writer.builder is not None
    return dict(writer.builder.rows)


def _raw_meta(root: Path) -> dict[str, Any]:
    import zstandard

    from ._raw import raw_files

    for path in raw_files(root):
        with open(path, "rb") as f:
            head = zstandard.ZstdDecompressor().decompressobj().decompress(f.read(1 << 16))
        obj = orjson.loads(head.split(b"\n", 1)[0])
        if isinstance(obj, dict) and isinstance(obj.get("meta"), dict):
            return dict(obj["meta"])
    return {}
