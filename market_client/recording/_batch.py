"""The recorder's buffer: frames copied as they come into one block the writer process reads.

`FrameBuffer` keeps every record's bytes in one ``bytearray``, and its code,
receive time and length in three lists; handing a batch to the writer
process is three C-level conversions (`FrameBuffer.parts`) and writing the
buffers to its pipe, with no Python step per record in the recorder's
worker thread. The session's MD reader appends a frame itself while the
buffer has room (`FrameBuffer.room`, `FrameBuffer.limit`): four C-level
appends and no call (a list's append is less than half the cost of an
``array``'s, whose every append parses its argument). A frame is copied,
not kept: the reader frees each frame's object as it would unrecorded, so
the memory it reads next is memory it has just used (kept, the frames'
objects made every allocation a fresh one, and the worker thread had to
walk them all to join and free them while holding the GIL).

A packed batch (native byte order: both ends are on one machine) is a
header (record count), the codes, the receive times, the lengths and
the contents. A ``str`` frame is stored as UTF-8 with ``surrogatepass``
(lone surrogates kept exactly); a gap or a snapshot as its JSON.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

import orjson

from ._raw import RawFrame, RawGap, RawSnapshot

__all__ = ["MD_BYTES", "MD_TEXT", "FrameBuffer", "unpack_batch"]

# One code byte per record.
MD_TEXT, MD_BYTES, CMD_TEXT, CMD_BYTES, GAP, SNAPSHOT = range(6)
_FRAMES = {
    MD_TEXT: ("md", True),
    MD_BYTES: ("md", False),
    CMD_TEXT: ("cmd", True),
    CMD_BYTES: ("cmd", False),
}
_CHANNELS = {"md": MD_TEXT, "cmd": CMD_TEXT}  # a text frame's code (+1: the same as bytes)
_HEADER = struct.Struct("=Q")


class FrameBuffer:
    """Frames, gaps and books in arrival order, packed as they come (see the module's docstring).

    The session's MD reader appends an MD frame itself while ``len(codes) <
    room`` and ``len(data) < limit`` (the recorder sets both): its receive
    time (an int64 of ns) to ``times``, `MD_BYTES` (a ``bytes`` frame) or
    `MD_TEXT` (a ``str``) to ``codes``, and its bytes (a ``str`` encoded as
    UTF-8 with ``surrogatepass``) to ``lengths`` and ``data``; every other
    record comes through the methods, which check what they are given.

    Attributes:
        data: Every record's bytes, one after the other.
        codes: Every record's code (its channel and whether it is text).
        times: Every record's receive time, ns.
        lengths: Every record's length in ``data``.
        room: Records the MD reader may append before the recorder must look.
        limit: ``len(data)`` at which the MD reader must let the recorder look.
        gaps: Gap records held.
    """

    __slots__ = ("codes", "data", "gaps", "lengths", "limit", "room", "times")

    def __init__(self, room: int = 1 << 62, limit: int = 1 << 62) -> None:
        self.data = bytearray()
        self.codes: list[int] = []
        self.times: list[int] = []
        self.lengths: list[int] = []
        self.room = room
        self.limit = limit
        self.gaps = 0

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def size(self) -> int:
        """Bytes held (a ``str`` frame counts its UTF-8 bytes)."""
        return len(self.data)

    @property
    def frames_held(self) -> int:
        """Frames and books held (gap records not counted)."""
        return len(self.codes) - self.gaps

    def add_frame(self, channel: str, raw: str | bytes, recv_ns: int) -> None:
        """Append one frame (``channel`` ``"md"`` or ``"cmd"``) exactly as received.

        Raises:
            ValueError: Another channel.
            TypeError: ``raw`` is neither ``str`` nor bytes-like, or
                ``recv_ns`` not an int64.
        """
        code = _CHANNELS.get(channel)
        if code is None:
            raise ValueError(f"no such channel in a recording: {channel!r}")
        if isinstance(raw, str):
            # Its text, whatever a subclass's own methods say.
            body: Any = str.encode(raw, "utf-8", "surrogatepass")
        else:
            body = memoryview(raw)  # bytes-like only: bytes(7) would be seven NUL bytes
            code += 1
        self._add(code, body, recv_ns)

    def add_gap(self, dropped: int, first_ns: int, last_ns: int) -> None:
        """Append a gap record: ``dropped`` frames received from ``first_ns`` to ``last_ns``."""
        self._add(GAP, orjson.dumps([dropped, first_ns, last_ns]), last_ns)
        self.gaps += 1

    def add_snapshot(self, book: dict[str, Any], recv_ns: int) -> None:
        """Append a book loaded outside the MD stream (``sym``, ``seq``, ``bids``, ``asks``...)."""
        self._add(SNAPSHOT, orjson.dumps(book), recv_ns)

    def _add(self, code: int, body: Any, recv_ns: int) -> None:
        if type(recv_ns) is not int or not -(1 << 63) <= recv_ns < 1 << 63:
            raise TypeError(f"recv_ns must be an int64 of ns, got {recv_ns!r}")
        data = self.data
        start = len(data)
        data += body  # (first: what can fail, a bad item, fails before a change)
        self.lengths.append(len(data) - start)  # bytes, whatever the item's format
        self.times.append(recv_ns)
        self.codes.append(code)

    def parts(self) -> list[bytes | bytearray | memoryview]:
        """The packed buffer in pieces, to be written one after the other without a join."""
        return [
            _HEADER.pack(len(self.codes)),
            bytes(self.codes),
            memoryview(array("q", self.times)).cast("B"),
            memoryview(array("q", self.lengths)).cast("B"),
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
    lengths = array("q")
    lengths.frombytes(payload[at + 9 * n : at + 17 * n])
    data = memoryview(payload)[at + 17 * n :]
    if (
        len(codes) != n
        or len(times) != n
        or len(lengths) != n
        or sum(lengths) != len(data)
        or (n and min(lengths) < 0)
    ):
        raise ValueError("not a packed batch: truncated")
    out: list[RawFrame | RawGap | RawSnapshot] = []
    append = out.append
    new_frame = tuple.__new__  # RawFrame(...) without its Python-level __new__
    contents = bytes(data)  # slices of bytes are bytes: one copy in all
    start = 0
    for code, recv_ns, length in zip(codes, times, lengths, strict=True):
        end = start + length
        piece = contents[start:end]
        start = end
        frame = _FRAMES.get(code)
        if frame is not None:
            channel, text = frame
            raw = piece.decode("utf-8", "surrogatepass") if text else piece
            append(new_frame(RawFrame, (recv_ns, channel, raw)))
        elif code in (GAP, SNAPSHOT):
            try:
                if code == GAP:
                    dropped, first_ns, last_ns = orjson.loads(piece)
                    append(RawGap(recv_ns, dropped, first_ns, last_ns))
                else:
                    append(RawSnapshot.from_book(recv_ns, orjson.loads(piece)))
            except (TypeError, KeyError, AttributeError) as exc:  # (orjson's own is a ValueError)
                raise ValueError(f"not a packed batch: a bad record: {exc}") from exc
        else:
            raise ValueError(f"not a packed batch: record code {code}")
    return out
