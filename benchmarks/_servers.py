"""Shared by the benchmarks: servers in their own processes, as users run them."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio


@dataclass(frozen=True)
class Server:
    """A server process: its URL, and its CPU time so far."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds the process has used (Linux ``/proc``)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def server_process(*argv: str) -> AsyncIterator[Server]:
    """Run ``python *argv``, a server that prints its URL on its first line.

    Works on Trio and on asyncio (also under plain ``asyncio.run``). The
    process is killed when the block ends.
    """
    proc = await anyio.open_process(
        [sys.executable, *argv],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = b""
        with anyio.fail_after(120):
            while b"\n" not in line:
                line += await proc.stdout.receive()
        match = re.search(r"(http://\S+)", line.decode())
        if match is None:
            raise RuntimeError(f"the server did not start: {line!r}")
        yield Server(match.group(1), proc.pid)
    finally:
        proc.kill()
        with anyio.CancelScope(shield=True):
            await proc.wait()
            await proc.aclose()


def simulator_process(*options: str) -> contextlib.AbstractAsyncContextManager[Server]:
    """The simulator gateway on a free port, with these command-line options."""
    return server_process("-m", "market_client.simulator", "--port", "0", *options)
