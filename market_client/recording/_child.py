"""The recorder's writer process: both layers' files, off the session's process.

Everything a recording does per frame is Python work (the raw layer's JSON
lines, the table rows, the books the tables keep): done in a thread of the
session's process it would hold the GIL the session's reader needs, and on
a busy machine take the reader's CPU. So the recorder starts this module as
a child process (``python -m market_client.recording._table_worker``, a fresh
interpreter: the user's main script is not imported again, as
``multiprocessing``'s spawn would), at a lower CPU priority than the session,
and sends it each batch of frames as received, packed but not encoded (`FrameBuffer`).

The pipe protocol (stdin, parent to child): messages of one kind byte, an
8-byte big-endian length and the payload:

* ``M``: JSON ``{"directory", "meta", "options"}``: open the layers (first);
* ``B``: a packed batch (`FrameBuffer.parts`): write it to the raw layer, then the tables;
* ``T``: nothing came: rotate the files that are due.

After each message the child writes one JSON line to stdout: its stats, or
``{"error": ...}`` (then it exits with status 1). End of input (the parent
closed the pipe, or died) makes it write every pending row, close every file,
print its final stats with ``"final": true`` and exit 0. It ignores SIGINT
and runs in its own session: a Ctrl-C in the terminal reaches the parent,
which flushes and then closes the pipe.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["WriterProcess"]

CLOSE_TIMEOUT = 60.0
ANSWER_TIMEOUT = 30.0  # s: a child that takes longer to take or answer a message is stuck
ANSWER_PER_FRAME = 1e-3  # s more per frame of the batch (about 70 times what a frame takes)

Payload = bytes | bytearray | memoryview | list[bytes | bytearray | memoryview]


class WriterProcess:
    """The parent's handle on the child: send blocks, read acknowledgements (one thread).

    One message is in flight at a time: `send` first reads the answer to the
    previous one, so the child works on a batch while the parent gathers the
    next, and the parent never gets more than one batch ahead.

    Args:
        directory: The recording's directory.
        meta: The recording's metadata (`recording_meta`).
        options: `BatchWriter` options (layers, candles, rotation, row groups, zstd level).
    """

    def __init__(self, directory: str, meta: dict[str, Any], options: dict[str, Any]) -> None:
        env = dict(os.environ)
        # The child imports this very package, wherever it was imported from.
        here = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            [here, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        flags: dict[str, Any] = (
            {
                "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
                | subprocess.BELOW_NORMAL_PRIORITY_CLASS  # type: ignore[attr-defined]
            }
            if sys.platform == "win32"
            else {"start_new_session": True}
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "market_client.recording._table_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            **flags,
        )
        self.stats: dict[str, Any] = {}
        self.error: str | None = None
        self._waiting = False
        self._frames = 0  # in the batch last sent
        # One thread for the child's life: a timer started for every message
        # would be a thread made and ended twice a batch, each taking the GIL
        # from the session's event loop to start and to end.
        self._deadline = math.inf  # when the child is stuck, while one is set
        self._closed = threading.Event()
        self._guard = threading.Thread(
            target=self._guard_child, name="market-client-recorder-watchdog", daemon=True
        )
        self._guard.start()
        self.send(b"M", orjson.dumps({"directory": directory, "meta": meta, "options": options}))

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    @property
    def unanswered(self) -> bool:
        """Whether the last message sent was never answered (a dead child may have lost it)."""
        return self._waiting

    def _send(self, kind: bytes, payload: Payload) -> None:
        assert self.proc.stdin is not None
        parts = [payload] if isinstance(payload, (bytes, bytearray, memoryview)) else payload
        self.proc.stdin.write(kind + sum(map(len, parts)).to_bytes(8, "big"))
        for part in parts:  # one after the other: no copy of the whole
            self.proc.stdin.write(part)
        self.proc.stdin.flush()
        self._waiting = True

    def _answer(self) -> None:
        assert self.proc.stdout is not None
        if not self._waiting:
            return
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError("no answer")
        answer = orjson.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        self._waiting = False
        self.stats = answer

    def send(self, kind: bytes, payload: Payload = b"", *, frames: int = 0) -> None:
        """Send one message once the previous one is answered; a dead child is noted.

        Args:
            kind: ``b"M"`` (the description), ``b"B"`` (a packed batch) or
                ``b"T"`` (rotate what is due).
            payload: The message (bytes-like, or a list of pieces written in order).
            frames: Frames in a batch: its answer may take that much longer.
        """
        if self.error is not None:
            return
        try:
            with self._watchdog():
                self._answer()
                self._send(kind, payload)
                self._frames = frames
        except (OSError, EOFError, RuntimeError, ValueError) as exc:
            self._died(exc)

    @contextlib.contextmanager
    def _watchdog(self) -> Iterator[None]:
        """Kill a child that takes too long to answer or to read: it is stuck.

        Too long is `ANSWER_TIMEOUT`, and `ANSWER_PER_FRAME` more for every
        frame of the batch it is answering (a writer that fell behind a flood,
        at its low priority, gets batches as large as the recorder's buffer).
        The pipe's reads and writes cannot be cancelled, and the worker thread
        they block is awaited when the recorder exits: a stuck child would
        hang the session's exit. Killed, it reads as a child that died.
        """
        self._deadline = time.monotonic() + ANSWER_TIMEOUT + ANSWER_PER_FRAME * self._frames
        try:
            yield
        finally:
            self._deadline = math.inf

    def _guard_child(self) -> None:
        # Sleeps ANSWER_TIMEOUT at most, so a deadline set meanwhile (never
        # sooner than that from when it is set) is met on time.
        while True:
            left = self._deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                return
            if self._closed.wait(min(left, ANSWER_TIMEOUT)):
                return

    def _died(self, exc: BaseException) -> None:
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
        self.error = f"the writer process (pid {self.proc.pid}) stopped: {exc}" + (
            f" (exit status {code})" if code is not None else ""
        )
        self._reap()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Let the child write every pending row and close its files; wait for it.

        Args:
            timeout: Seconds to wait before the child is killed.
        """
        try:
            self._close(timeout)
        finally:
            self._closed.set()  # the watchdog's thread ends

    def _close(self, timeout: float) -> None:
        if self.proc.returncode is not None and self.proc.stdin is None:
            return
        if self.error is None:
            try:
                with self._watchdog():
                    self._answer()
            except (OSError, EOFError, RuntimeError, ValueError) as exc:
                self._died(exc)
                return
        try:
            out, _ = self.proc.communicate(timeout=timeout)  # closes stdin: the end
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            self.error = self.error or f"the writer process did not finish in {timeout} s: killed"
            return
        except OSError as exc:  # the pipe broke: it had died
            self._died(exc)
            return
        lines = out.splitlines()
        if self.error is None:
            if not lines:
                self.error = (
                    f"the writer process (pid {self.proc.pid}) stopped "
                    f"(exit status {self.proc.returncode})"
                )
            else:
                final = orjson.loads(lines[-1])
                if "error" in final:
                    self.error = f"the writer process failed while closing: {final['error']}"
                else:
                    self.stats = final

    def _reap(self) -> None:
        # A dead child is waited for and its pipes closed: no zombie, no ResourceWarning.
        self._closed.set()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.proc.stdin = None
        self.proc.stdout = None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def kill(self) -> None:
        """Kill the child now (the parent is failing): no orphan is left."""
        if self.proc.returncode is None:
            self.proc.kill()
        self._reap()
