"""The raw layer: every frame as received, as zstandard-compressed JSON lines.

One line per record, in receive order. A file is one zstandard frame written
in blocks: each batch is flushed as a complete block, so a reader decodes
everything up to the last batch even from a file whose writer was killed.

Line formats (``docs/recording.md`` is the reference):

* ``{"recv_ns": N, "ch": "md", "raw": "<frame text>"}``: a text frame;
* ``... "raw": "<text>", "bin": true}``: a bytes frame that is valid UTF-8;
* ``... "b64": "<base64>", "bin": true}``: a bytes frame that is not;
* ``... "b64": "<base64 of UTF-8 with surrogates>"}``: a text frame with lone
  surrogates (not representable in JSON text);
* ``{"recv_ns": N, "gap": {"dropped": n, "first_ns": a, "last_ns": b}}``:
  ``n`` frames received from ``a`` to ``b`` were dropped (the recorder's
  buffer was full);
* ``{"recv_ns": N, "snapshot": {"sym": s, "seq": q, "bids": [[p, n], ...],
  "asks": [...], "source": "resync"}}``: a book the client loaded outside the
  MD stream (a ``book.get`` resync, or the books handed over when recording
  starts mid-session), as the client had it;
* ``{"recv_ns": N, "meta": {...}}``: the first line of every file: format,
  gateway, symbols, versions.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import orjson

__all__ = [
    "RAW_FORMAT",
    "RawFrame",
    "RawGap",
    "RawSnapshot",
    "RawWriter",
    "iter_raw",
    "last_record",
    "line_blocks",
    "raw_files",
]

RAW_FORMAT = "market_client.raw/1"
RAW_DIR = "raw"
SUFFIX = ".jsonl.zst"
TMP_SUFFIX = ".tmp"


class RawFrame(NamedTuple):
    """One frame as received.

    Attributes:
        recv_ns: Local receive time, ns since the epoch (``time.time_ns()``).
        channel: ``"md"`` or ``"cmd"`` (private events).
        raw: The frame exactly as received (``str`` or ``bytes``).
    """

    recv_ns: int
    channel: str
    raw: str | bytes


class RawGap(NamedTuple):
    """Frames the recorder dropped because its buffer was full.

    Attributes:
        recv_ns: Where the gap sits in the stream (receive time of its last dropped frame).
        dropped: How many frames were dropped.
        first_ns: Receive time of the first dropped frame.
        last_ns: Receive time of the last dropped frame.
    """

    recv_ns: int
    dropped: int
    first_ns: int
    last_ns: int


class RawSnapshot(NamedTuple):
    """A book the client loaded outside the MD stream.

    Attributes:
        recv_ns: Local time the client loaded it, ns since the epoch.
        sym: The symbol.
        seq: The last increment the book includes.
        bids: ``[price text, qty]`` levels, best first.
        asks: ``[price text, qty]`` levels, best first.
        source: ``"resync"`` (a ``book.get`` reply after a ``seq`` gap) or
            ``"handover"`` (the client's book when the recording started).
    """

    recv_ns: int
    sym: str
    seq: int
    bids: list[list[Any]]
    asks: list[list[Any]]
    source: str

    @classmethod
    def from_book(cls, recv_ns: int, book: dict[str, Any]) -> RawSnapshot:
        """From a stored book (``sym``, ``seq``; ``bids``, ``asks``, ``source`` if there)."""
        return cls(
            recv_ns,
            book["sym"],
            book["seq"],
            book.get("bids", []),
            book.get("asks", []),
            book.get("source", "resync"),
        )


def frame_record(channel: str, raw: str | bytes, recv_ns: int) -> dict[str, Any]:
    """The record of one frame as it waits to be written (`encode_records` encodes it).

    The keys are the line's, in its order; a bytes frame keeps its bytes
    until it is encoded (``"bin": true``).
    """
    if type(raw) is str:
        return {"recv_ns": recv_ns, "ch": channel, "raw": raw}
    return {"recv_ns": recv_ns, "ch": channel, "raw": raw, "bin": True}


def gap_record(dropped: int, first_ns: int, last_ns: int) -> dict[str, Any]:
    """The record that marks ``dropped`` frames received from ``first_ns`` to ``last_ns``."""
    return {
        "recv_ns": last_ns,
        "gap": {"dropped": dropped, "first_ns": first_ns, "last_ns": last_ns},
    }


def snapshot_record(snapshot: dict[str, Any], recv_ns: int) -> dict[str, Any]:
    """The record of a book loaded outside the MD stream."""
    return {"recv_ns": recv_ns, "snapshot": snapshot}


def _utf8(obj: Any) -> str:
    # orjson's fallback for the bytes of a "bin" frame: the text they hold.
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8")  # not UTF-8: the record is encoded as base64
    raise TypeError(f"{type(obj).__name__} is not a raw-layer value")


def encode_record(record: dict[str, Any]) -> bytes:
    """One JSON line (without the newline) for one record (frame, gap or snapshot)."""
    try:
        return orjson.dumps(record, default=_utf8)
    except orjson.JSONEncodeError:
        if "ch" not in record:
            raise
    # A frame JSON text cannot hold: lone surrogates in a str, or bytes that
    # are not UTF-8. Its exact code points or bytes go in base64.
    raw = record["raw"]
    line: dict[str, Any] = {"recv_ns": record["recv_ns"], "ch": record["ch"]}
    if isinstance(raw, str):
        line["b64"] = base64.b64encode(raw.encode("utf-8", "surrogatepass")).decode()
    else:
        line["b64"] = base64.b64encode(bytes(raw)).decode()
        line["bin"] = True
    return orjson.dumps(line)


# Between two records of one orjson.dumps'd list: '},{"recv_ns":'. It cannot
# occur inside a JSON string (every '"' in one is escaped as '\"'), nor inside
# a record (only the outermost object has a "recv_ns" key).
_BETWEEN = b'},{"recv_ns":'
_NEWLINE_BETWEEN = b'}\n{"recv_ns":'


def encode_records(records: list[dict[str, Any]]) -> bytes:
    """The raw-layer lines of ``records``, each ending in a newline, as one block.

    One ``orjson.dumps`` of the whole list, split into lines by the bytes
    that can only stand between two records: about a tenth of the cost of
    encoding the records one by one (the recorder's writer process does it
    for every frame). A list with a frame JSON cannot hold as text is
    encoded record by record.
    """
    if not records:
        return b""
    try:
        block = orjson.dumps(records, default=_utf8)[1:-1].replace(_BETWEEN, _NEWLINE_BETWEEN)
    except orjson.JSONEncodeError:
        pass
    else:
        if block.count(b"\n") == len(records) - 1:
            return block + b"\n"
    return b"\n".join([encode_record(record) for record in records]) + b"\n"


def encode_frame(channel: str, raw: str | bytes, recv_ns: int) -> bytes:
    """One JSON line (without the newline) for one frame."""
    return encode_record(frame_record(channel, raw, recv_ns))


def decode_line(line: bytes) -> RawFrame | RawGap | RawSnapshot | None:
    """A record from one line; ``None`` for a header line.

    Raises:
        ValueError: The line is not a record of this format.
    """
    obj = orjson.loads(line)
    if not isinstance(obj, dict) or not isinstance(obj.get("recv_ns"), int):
        raise ValueError(f"not a raw record: {line[:80]!r}")  # noqa: TRY004 - bad data
    if "meta" in obj:
        return None
    gap = obj.get("gap")
    if gap is not None:
        return RawGap(obj["recv_ns"], gap["dropped"], gap["first_ns"], gap["last_ns"])
    snap = obj.get("snapshot")
    if snap is not None:
        return RawSnapshot.from_book(obj["recv_ns"], snap)
    raw: str | bytes
    if "raw" in obj:
        raw = obj["raw"].encode("utf-8") if obj.get("bin") else obj["raw"]
    else:
        data = base64.b64decode(obj["b64"])
        raw = data if obj.get("bin") else data.decode("utf-8", "surrogatepass")
    return RawFrame(obj["recv_ns"], obj["ch"], raw)


class RawWriter:
    """Appends records to rotating ``raw/*.jsonl.zst`` files (used from one thread).

    A file is written as ``.NAME.tmp`` (hidden, not matching ``*.jsonl.zst``)
    and renamed to ``NAME`` when it is closed.

    Args:
        directory: The recording's directory (files go to ``directory/raw``).
        rotate_bytes: Start a new file once this many compressed bytes were written.
        rotate_seconds: Start a new file once the current one is this old.
        level: zstandard compression level.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        rotate_bytes: int,
        rotate_seconds: float,
        level: int = 3,
    ) -> None:
        import zstandard

        self._zstd = zstandard
        self.dir = Path(directory) / RAW_DIR
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.level = level
        self.meta: dict[str, Any] = {"format": RAW_FORMAT}
        self._file: BinaryIO | None = None
        self._compressor: Any = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._opened = 0.0
        self._count = 0
        self.files = 0  # closed files
        self.bytes = 0  # compressed bytes written, all files
        self.file_bytes = 0  # compressed bytes of the open file
        self.records = 0

    @property
    def file_open(self) -> bool:
        """Whether a file is open for writing (not yet closed and renamed)."""
        return self._file is not None

    def _open(self, first_ns: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(first_ns / 1e9))
        self._count += 1
        name = f"raw-{stamp}-{first_ns}-{os.getpid()}-{self._count}{SUFFIX}"
        self._final = self.dir / name
        self._tmp = self.dir / f".{name}{TMP_SUFFIX}"
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        self._compressor = self._zstd.ZstdCompressor(level=self.level).compressobj()
        self._opened = time.monotonic()
        self.file_bytes = 0
        header = orjson.dumps({"recv_ns": first_ns, "meta": self.meta}) + b"\n"
        self._put(self._compressor.compress(header))

    def _put(self, data: bytes) -> None:
        assert self._file is not None
        if data:
            self._file.write(data)
            self.file_bytes += len(data)
            self.bytes += len(data)

    def write_block(self, block: bytes, records: int, first_ns: int) -> None:
        """Append ``records`` lines (``block``, each ending in a newline) as one flushed block.

        zstandard compresses with the GIL released, so the session's event
        loop runs meanwhile.
        """
        if not block:
            return
        if self._file is not None and (
            self.file_bytes >= self.rotate_bytes
            or time.monotonic() - self._opened >= self.rotate_seconds
        ):
            self.close()
        if self._file is None:
            self._open(first_ns)
        compressor = self._compressor
        self._put(compressor.compress(block))
        self._put(compressor.flush(self._zstd.COMPRESSOBJ_FLUSH_BLOCK))
        assert self._file is not None
        self._file.flush()
        self.records += records

    def close(self) -> None:
        """Finish and rename the open file (if any)."""
        if self._file is None:
            return
        self._put(self._compressor.flush(self._zstd.COMPRESSOBJ_FLUSH_FINISH))
        self._file.close()
        self._file = None
        assert self._tmp is not None and self._final is not None
        os.replace(self._tmp, self._final)
        self.files += 1


def last_record(
    directory: str | os.PathLike[str], pid: int
) -> RawFrame | RawGap | RawSnapshot | None:
    """The last record the writer with process id ``pid`` flushed (read back from its files)."""
    files = [path for path in raw_files(directory, include_tmp=True) if _order(path)[1] == pid]
    last = None
    for path in files[-1:]:
        for last in _records(path):  # noqa: B007 - the loop keeps the last one
            pass
    return last


def raw_files(directory: str | os.PathLike[str], *, include_tmp: bool = False) -> list[Path]:
    """The raw files of a recording in time order (optionally with unfinished ``.tmp`` ones)."""
    folder = Path(directory) / RAW_DIR
    if not folder.is_dir():
        return []
    files = list(folder.glob(f"raw-*{SUFFIX}"))
    if include_tmp:
        files += folder.glob(f".raw-*{SUFFIX}{TMP_SUFFIX}")
    return sorted(files, key=_order)


def _order(path: Path) -> tuple[int, int, int]:
    # raw-<stamp>-<first_ns>-<pid>-<count>.jsonl.zst: order by first frame, then file number
    parts = path.name.lstrip(".").split("-")
    return int(parts[2]), int(parts[3]), int(parts[4].split(".")[0])


def iter_raw(
    directory: str | os.PathLike[str],
    *,
    gaps: bool = False,
    snapshots: bool = False,
    include_tmp: bool = False,
) -> Iterator[Any]:
    """Every frame of a recording's raw layer, in receive order, exactly as received.

    Args:
        directory: The recording's directory.
        gaps: Also yield a `RawGap` where the recorder dropped frames.
        snapshots: Also yield a `RawSnapshot` for each book the client loaded
            outside the MD stream (resyncs, the handover at the start).
        include_tmp: Also read files left unfinished by a recorder that was
            killed (everything up to its last flushed batch).

    Yields:
        `RawFrame` (``recv_ns``, ``channel``, ``raw``) tuples, `RawGap`
        tuples when ``gaps`` is true and `RawSnapshot` tuples when
        ``snapshots`` is true.
    """
    for path in raw_files(directory, include_tmp=include_tmp):
        for record in _records(path):
            if (
                record is None
                or (not gaps and isinstance(record, RawGap))
                or (not snapshots and isinstance(record, RawSnapshot))
            ):
                continue
            yield record


def raw_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata in a raw file's header line (``{}`` if it has none or is torn)."""
    import zstandard

    with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as reader:
        try:
            line = io.BufferedReader(reader).readline()
            obj = orjson.loads(line)
        except (zstandard.ZstdError, orjson.JSONDecodeError):
            return {}
    meta = obj.get("meta") if isinstance(obj, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def line_blocks(path: Path, chunk_size: int = 1 << 20) -> Iterator[list[bytes]]:
    """The whole lines of one raw file, a decompressed chunk at a time, up to a torn tail.

    Readers that decode line by line (`iter_raw`) and a block at a time (the
    replay) share this one reading of the file.
    """
    import zstandard

    decompressor = zstandard.ZstdDecompressor().decompressobj()
    pending = b""
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            try:
                data = decompressor.decompress(chunk)
            except zstandard.ZstdError:
                return  # a torn tail of a killed writer: keep what came before
            if not data:
                continue
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            yield lines


def _records(path: Path) -> Iterator[RawFrame | RawGap | RawSnapshot | None]:
    """Every line of one raw file, decoded, up to a torn tail."""
    for lines in line_blocks(path):
        for line in lines:
            yield decode_line(line)
