"""Shared by the benchmarks: servers in their own processes, as users run them."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio


@contextlib.asynccontextmanager
async def server_process(*argv: str) -> AsyncIterator[str]:
    """Run ``python *argv``, a server that prints its URL on its first line; yield the URL.

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
        yield match.group(1)
    finally:
        proc.kill()
        with anyio.CancelScope(shield=True):
            await proc.wait()
            await proc.aclose()


def simulator_process(*options: str) -> contextlib.AbstractAsyncContextManager[str]:
    """The simulator gateway on a free port, with these command-line options."""
    return server_process("-m", "market_client.simulator", "--port", "0", *options)
