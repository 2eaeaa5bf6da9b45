"""The recorder's buffer: frames copied as they come, handed to the writer process as one block.

`FrameBuffer` keeps what a batch needs in four flat buffers, filled once per
frame while the frame is still in the CPU's cache: the frame's bytes
appended to one ``bytearray``, its receive time and end offset to two
``array("q")``, and one code byte (channel, and whether it came as ``str`` or
``bytes``). Nothing per frame is left for later, and the frame object is
freed at once. `FrameBuffer.pack` is then a few copies, and everything
else per frame (the raw layer's JSON lines, compression, the table rows) is
done by the writer process, from `unpack_batch`'s records.

A packed batch (native byte order: both ends are on one machine) is a
header (record count), the codes, the receive times, the end offsets and
the contents. A ``str`` frame is stored as UTF-8 with ``surrogatepass``
(lone surrogates kept exactly); a gap or a snapshot as its JSON.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

import orjson

from ._raw import RawFrame, RawGap, RawSnapshot

__all__ = ["FrameBuffer", "unpack_batch"]

# One code byte per record.
MD_TEXT, MD_BYTES, CMD_TEXT, CMD_BYTES, GAP, SNAPSHOT = range(6)
_FRAMES = {
    MD_TEXT: ("md", True),
    MD_BYTES: ("md", False),
    CMD_TEXT: ("cmd", True),
    CMD_BYTES: ("cmd", False),
}
TEXT_CODES = {"md": MD_TEXT, "cmd": CMD_TEXT}
BYTES_CODES = {"md": MD_BYTES, "cmd": CMD_BYTES}
_HEADER = struct.Struct("=Q")


class FrameBuffer:
    """Frames, gaps and books in arrival order, in flat buffers (see the module's docstring).

    The recorder's `feed` appends to the four buffers itself (it runs once
    per frame: the same steps as `add_frame`, without the call).
    """

    __slots__ = ("codes", "data", "ends", "gaps", "times")

    def __init__(self) -> None:
        self.data = bytearray()
        self.times = array("q")
        self.ends = array("q")
        self.codes = bytearray()
        self.gaps = 0

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def frames(self) -> int:
        """Frames and books held (gap records not counted)."""
        return len(self.codes) - self.gaps

    def add_frame(self, channel: str, raw: str | bytes, recv_ns: int) -> None:
        """Append one frame (``channel`` ``"md"`` or ``"cmd"``) exactly as received.

        Raises:
            ValueError: Another channel.
            TypeError: ``raw`` is neither ``str`` nor bytes-like.
        """
        codes = TEXT_CODES if isinstance(raw, str) else BYTES_CODES
        if channel not in codes:
            raise ValueError(f"no such channel in a recording: {channel!r}")
        if isinstance(raw, str):
            data = raw.encode("utf-8", "surrogatepass")
        else:
            data = memoryview(raw).tobytes()  # bytes-like only: bytes(7) is seven NUL bytes
        self._add(codes[channel], data, recv_ns)

    def add_gap(self, dropped: int, first_ns: int, last_ns: int) -> None:
        """Append a gap record: ``dropped`` frames received from ``first_ns`` to ``last_ns``."""
        self._add(GAP, orjson.dumps([dropped, first_ns, last_ns]), last_ns)
        self.gaps += 1

    def add_snapshot(self, book: dict[str, Any], recv_ns: int) -> None:
        """Append a book loaded outside the MD stream (``sym``, ``seq``, ``bids``, ``asks``...)."""
        self._add(SNAPSHOT, orjson.dumps(book), recv_ns)

    def _add(self, code: int, data: bytes, recv_ns: int) -> None:
        self.times.append(recv_ns)  # first: what can fail (not an int64) fails before a change
        self.codes.append(code)
        self.data += data
        self.ends.append(len(self.data))

    def parts(self) -> list[bytes | bytearray | memoryview]:
        """The packed buffer in pieces, to be written one after the other without a join."""
        return [
            _HEADER.pack(len(self.codes)),
            self.codes,
            memoryview(self.times).cast("B"),
            memoryview(self.ends).cast("B"),
            self.data,
        ]

    def pack(self) -> bytes:
        """The whole buffer as one ``bytes`` (`unpack_batch` reads it back)."""
        return b"".join(self.parts())

    def records(self) -> list[RawFrame | RawGap | RawSnapshot]:
        """The records held, as `unpack_batch` gives them."""
        return unpack_batch(self.pack())


def unpack_batch(payload: bytes) -> list[RawFrame | RawGap | RawSnapshot]:
    """The records a `FrameBuffer` packed, in order, every frame exactly as it was.

    Raises:
        ValueError: ``payload`` is not a packed batch.
    """
    try:
        (n,) = _HEADER.unpack_from(payload)
    except struct.error as exc:
        raise ValueError("not a packed batch: too short") from exc
    at = _HEADER.size
    codes = payload[at : at + n]
    times = array("q")
    times.frombytes(payload[at + n : at + 9 * n])
    ends = array("q")
    ends.frombytes(payload[at + 9 * n : at + 17 * n])
    data = memoryview(payload)[at + 17 * n :]
    if len(codes) != n or len(times) != n or len(ends) != n or (n and ends[-1] != len(data)):
        raise ValueError("not a packed batch: truncated")
    out: list[RawFrame | RawGap | RawSnapshot] = []
    append = out.append
    start = 0
    for i in range(n):
        end = ends[i]
        piece = bytes(data[start:end])
        start = end
        code = codes[i]
        frame = _FRAMES.get(code)
        if frame is not None:
            channel, text = frame
            raw = piece.decode("utf-8", "surrogatepass") if text else piece
            append(RawFrame(times[i], channel, raw))
        elif code == GAP:
            dropped, first_ns, last_ns = orjson.loads(piece)
            append(RawGap(times[i], dropped, first_ns, last_ns))
        elif code == SNAPSHOT:
            append(RawSnapshot.from_book(times[i], orjson.loads(piece)))
        else:
            raise ValueError(f"not a packed batch: record code {code}")
    return out
