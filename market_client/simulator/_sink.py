"""What the exchange emits besides responses, as an interface the I/O layer implements."""

from __future__ import annotations

from typing import Protocol

from ._fields import Json

__all__ = ["NullSink", "Sink"]


class Sink(Protocol):
    """Where the exchange sends what is not a response."""

    def md(self, sym: str, msg: Json) -> None:
        """Publish one market-data message of ``sym`` (already sequenced)."""

    def event(self, user_id: str, frame: Json) -> None:
        """Push one private event frame to every CMD connection of the user."""

    def disconnect(self, user_id: str | None) -> None:
        """Close that user's (or every) CMD and MD socket with code 1012."""

    def set_flow(self, rate_hz: float) -> None:
        """Change the background order-flow rate."""

    def stall_md(self, seconds: float) -> None:
        """Send no market data (nor heartbeats) for ``seconds``; their ``seq`` is used."""

    def inject(self, channel: str, kind: str, user_id: str | None) -> int:
        """Send one malformed frame of ``kind`` on the user's (or every) socket of ``channel``.

        Returns how many sockets got it.
        """


class NullSink:
    """A sink that drops everything (an exchange with no I/O attached)."""

    def md(self, sym: str, msg: Json) -> None:
        """Drop it."""

    def event(self, user_id: str, frame: Json) -> None:
        """Drop it."""

    def disconnect(self, user_id: str | None) -> None:
        """Nothing to close."""

    def set_flow(self, rate_hz: float) -> None:
        """No flow to change."""

    def stall_md(self, seconds: float) -> None:
        """Nothing to stall."""

    def inject(self, channel: str, kind: str, user_id: str | None) -> int:
        """No socket gets it."""
        return 0
