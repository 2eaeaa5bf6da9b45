"""The recorder's buffer: frames kept as they come, handed to the writer process as one block.

`FrameBuffer` keeps, for every record, the object itself in a list (the
frame's ``bytes`` or ``str`` exactly as the socket returned it: no copy, no
encoding) and its receive time in another list; the few records that
are not market data (CMD frames, gaps, books) also note their place and code
in a short list. MD frames the session's reader took from the
socket together go in at once (`FrameBuffer.extend_md`, through
`Recorder.feed_many`), with two C-level extends and a sum, while the buffer
has room for them (`FrameBuffer.room`, `FrameBuffer.limit`): no Python step
per frame.
`FrameBuffer.parts`, in the recorder's worker thread, turns the list into the
packed block with a few C-level joins and sums, and everything else per frame
(the raw layer's JSON lines, compression, the table rows) is done by the
writer process, from `unpack_batch`'s records.

A packed batch (native byte order: both ends are on one machine) is a
header (record count), the codes, the receive times, the lengths and
the contents. A ``str`` frame is stored as UTF-8 with ``surrogatepass``
(lone surrogates kept exactly); a gap or a snapshot as its JSON.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from itertools import repeat
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
_CHANNELS = {"md": MD_TEXT, "cmd": CMD_TEXT}  # a text frame's code (+1: the same as bytes)
_AS_BYTES = bytes([MD_BYTES, MD_BYTES, CMD_BYTES, CMD_BYTES, GAP, SNAPSHOT]).ljust(256, b"\0")
_HEADER = struct.Struct("=Q")


class FrameBuffer:
    """Frames, gaps and books in arrival order (see the module's docstring).

    MD frames received together go in at once through `extend_md` while
    ``room`` and ``limit`` (the recorder sets both) allow all of them; every
    other record through the other methods.

    Attributes:
        frames: Every record's object: a frame as received (``bytes`` or
            ``str``), a gap's or a book's JSON.
        times: Every record's receive time, ns.
        size: The sum of ``len()`` of ``frames`` (bytes, or characters).
        room: Records `extend_md` may append before the recorder must look.
        limit: ``size`` at which `extend_md` must let the recorder look.
    """

    __slots__ = ("frames", "gaps", "limit", "others", "room", "size", "times")

    def __init__(self, room: int = 1 << 62, limit: int = 1 << 62) -> None:
        self.frames: list[Any] = []
        # A list, not an array("q"): the reader extends it with one int for
        # the frames it read together, and an array parses every item (a
        # 61-bit int the slow way); `parts` converts it once a batch in the
        # worker thread.
        self.times: list[int] = []
        self.size = 0
        self.room = room
        self.limit = limit
        self.others: list[tuple[int, int]] = []  # (index, text code) of records not MD frames
        self.gaps = 0

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frames_held(self) -> int:
        """Frames and books held (gap records not counted)."""
        return len(self.frames) - self.gaps

    def extend_md(self, raws: Sequence[str | bytes], recv_ns: int) -> bool:
        """Append MD frames received together, with one receive time, if all fit.

        Returns:
            True when they went in; False (nothing appended) when ``room`` or
            ``limit`` would be passed: the recorder must look at each.
        """
        n = len(raws)
        size = sum(map(len, raws))
        if len(self.frames) + n > self.room or self.size + size > self.limit:
            return False
        self.times.extend(repeat(recv_ns, n))
        self.frames.extend(raws)
        self.size += size
        return True

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
        if type(raw) is not str and type(raw) is not bytes:
            # A str subclass (its own __str__ may differ) or a mutable buffer:
            # kept as a plain copy of its own.
            raw = (
                raw.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
                if isinstance(raw, str)
                else memoryview(raw).tobytes()  # bytes-like only: bytes(7) is seven NUL bytes
            )
        self._add(code, raw, recv_ns)

    def add_gap(self, dropped: int, first_ns: int, last_ns: int) -> None:
        """Append a gap record: ``dropped`` frames received from ``first_ns`` to ``last_ns``."""
        self._add(GAP, orjson.dumps([dropped, first_ns, last_ns]), last_ns)
        self.gaps += 1

    def add_snapshot(self, book: dict[str, Any], recv_ns: int) -> None:
        """Append a book loaded outside the MD stream (``sym``, ``seq``, ``bids``, ``asks``...)."""
        self._add(SNAPSHOT, orjson.dumps(book), recv_ns)

    def _add(self, code: int, item: str | bytes, recv_ns: int) -> None:
        if type(recv_ns) is not int or not -(1 << 63) <= recv_ns < 1 << 63:
            raise TypeError(f"recv_ns must be an int64 of ns, got {recv_ns!r}")
        self.times.append(recv_ns)
        if code != MD_TEXT:
            self.others.append((len(self.frames), code))
        self.frames.append(item)
        self.size += len(item)

    def parts(self) -> list[bytes | bytearray | memoryview]:
        """The packed buffer in pieces, to be written one after the other without a join.

        Two C-level passes over the records (a join and their lengths) where
        they are all ``bytes`` (picows) or ASCII ``str`` (`websockets`) but
        for a few gaps, books or CMD frames, as usual; any other batch is
        encoded record by record.
        """
        frames = self.frames
        codes = bytearray(len(frames))  # MD_TEXT everywhere
        for i, code in self.others:
            codes[i] = code
        try:
            data = b"".join(frames)  # all bytes (picows): the usual case, and one pass
            codes = codes.translate(_AS_BYTES)
            lengths = list(map(len, frames))
        except TypeError:
            data, lengths = self._text_parts(codes)
        return [
            _HEADER.pack(len(frames)),
            codes,
            memoryview(array("q", self.times)).cast("B"),
            memoryview(array("q", lengths)).cast("B"),
            data,
        ]

    def _text_parts(self, codes: bytearray) -> tuple[bytes, list[int]]:
        """Contents and lengths of a batch that holds ``str`` (fixing ``codes`` of the rest).

        ASCII text, as usual, takes one join and one encoding, the few other
        records (gaps, books, a CMD frame as bytes) decoded beside it; anything
        else is encoded record by record.
        """
        frames = items = self.frames
        others = [i for i, _ in self.others if not isinstance(frames[i], str)]
        try:
            if others:
                items = frames.copy()
                for i in others:
                    items[i] = bytes(items[i]).decode("ascii")
            text = "".join(items)
            data = text.encode("utf-8", "surrogatepass")
        except (TypeError, UnicodeDecodeError):  # an MD frame as bytes; not ASCII
            data, text = b"", ""
        if data and len(data) == len(text):  # ASCII: a character is a byte
            for i in others:
                codes[i] = _AS_BYTES[codes[i]]
            return data, list(map(len, items))
        encoded = [f.encode("utf-8", "surrogatepass") if isinstance(f, str) else f for f in frames]
        for i, f in enumerate(frames):
            if not isinstance(f, str):
                codes[i] = _AS_BYTES[codes[i]]
        return b"".join(encoded), list(map(len, encoded))

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
