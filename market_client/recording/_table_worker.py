"""The entry point of the table process: ``python -m market_client.recording._table_worker``.

Kept apart from `TableProcess` (``_child``), which the package imports: a
module run with ``-m`` must not be imported before it runs. The protocol is
described in ``_child``.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import IO, Any

import orjson

__all__ = ["main"]

HEADER = 9


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def main() -> int:
    """Serve one recording's tables over stdin/stdout (the child's entry point)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ._writer import TableWriter

    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    writer: TableWriter | None = None
    busy = 0.0

    def answer(extra: dict[str, Any]) -> None:
        stats = writer.stats() if writer is not None else {}
        stdout.write(orjson.dumps({**stats, "busy": round(busy, 6), **extra}) + b"\n")
        stdout.flush()

    try:
        while True:
            header = _read_exactly(stdin, HEADER)
            if header is None:
                break
            kind = header[:1]
            payload = _read_exactly(stdin, int.from_bytes(header[1:], "big"))
            if payload is None:
                break  # the parent died mid-message: keep what came before
            started = time.process_time()
            if kind == b"M":
                spec = orjson.loads(payload)
                writer = TableWriter(spec["directory"], spec["meta"], **spec["options"])
            elif writer is None:
                raise RuntimeError("the recorder sent data before the tables' description")
            elif kind == b"L":
                writer.write_lines(payload)
            elif kind == b"T":
                writer.write(())
            busy += time.process_time() - started
            answer({})
        started = time.process_time()
        if writer is not None:
            writer.close()
        busy += time.process_time() - started
        answer({"final": True})
    except BaseException as exc:  # reported to the parent, which logs it
        try:
            stdout.write(orjson.dumps({"error": f"{type(exc).__name__}: {exc}"}) + b"\n")
            stdout.flush()
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
