"""Recording what a session sees (the ``record`` extra): raw frames and Parquet tables.

The interface the client relies on; the implementation lands with issue 16.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Literal

__all__ = ["Recorder"]


class Recorder:
    """Writes what a session receives into a directory, off the event loop.

    The client calls `describe` once, then `feed` for every MD
    frame and private CMD event as received. ``feed`` never blocks and never
    raises.
    """

    def __init__(self, directory: str | os.PathLike[str], **options: Any) -> None:
        self.directory = os.fspath(directory)
        self.options = options

    async def __aenter__(self) -> Recorder:
        raise NotImplementedError("the recorder lands with issue 16")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def describe(
        self,
        *,
        gateway_url: str,
        symbols: list[dict[str, Any]],
        protocol_version: str,
        library_version: str,
    ) -> None:
        """What the recording is of: stored in every file's metadata."""

    def feed(self, channel: Literal["md", "cmd"] | str, raw: str | bytes, recv_ns: int) -> None:
        """Hand one frame as received, with its local receive time in ns."""

    def stats(self) -> dict[str, Any]:
        """Rows, files, bytes and drops so far."""
        return {}
