"""The entry point of the writer process: ``python -m market_client.recording._table_worker``.

Kept apart from `WriterProcess` (``_child``), which the package imports: a
module run with ``-m`` must not be imported before it runs. The protocol is
described in ``_child``.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from typing import IO, Any

import orjson

__all__ = ["main"]

HEADER = 9
# Below the session's priority (nice 0): on a machine with no CPU to spare the
# session reads on and the writer falls behind, into the recorder's bounded buffer.
NICENESS = 10


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def lower_priority() -> None:
    """Run below the session: ``nice`` and, on Linux, the process's autogroup too.

    The writer process has a session of its own (Ctrl-C must not reach it),
    and where the kernel groups processes by session (autogroup, the default
    on desktop and server Linux), a process's nice value only ranks it among
    its own group: the group as a whole would still get as much CPU as the
    session's. So the group's nice value is set as well.
    """
    if not hasattr(os, "nice"):  # Windows: the parent starts it below normal priority
        return
    try:
        os.nice(NICENESS)
        with open("/proc/self/autogroup", "w") as group:  # Linux with autogroup only
            group.write(str(NICENESS))
    except OSError:
        pass  # refused (a sandbox) or not Linux: it still works, at the session's priority


# The cyclic GC's first threshold (CPython's default: 700). Each batch makes
# tens of thousands of short-lived containers (a record and a decoded message
# for every frame) that reference counting frees: at the default, the
# collector runs every 700 of them, and its older generations, which the open
# tables' rows reach, are walked over and over: a fifth to a third of the
# writer's CPU (docs/benchmarks.md, "What was made faster").
GC_THRESHOLD = 50_000


def collect_less() -> None:
    """Run the cyclic GC's youngest generation every `GC_THRESHOLD` containers, not 700."""
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def main() -> int:
    """Serve one recording's tables over stdin/stdout (the child's entry point)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lower_priority()
    collect_less()
    from ._batch import unpack_batch
    from ._writer import BatchWriter

    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    writer: BatchWriter | None = None
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
                writer = BatchWriter(spec["directory"], **spec["options"])
                writer.open(spec["meta"])
            elif writer is None:
                raise RuntimeError("the recorder sent data before the recording's description")
            elif kind == b"B":
                writer.write_records(unpack_batch(payload))
            elif kind == b"T":
                writer.write_records([])
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
