"""Repeated warnings, rate-limited: the first of a kind at once, then one a period with a count.

A hostile or broken gateway can make the client warn once per frame (a
thousand responses with one ``corr_id``, a flood of malformed frames). Each
place that warns per frame keeps a `LogThrottle`: the first warning goes out
at once, later ones of the same kind at most once per ``period`` seconds,
each saying how many were held back since the one before. The counters in
``stats()`` still count every one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["LogThrottle", "held_back"]

PERIOD = 10.0  # seconds between two warnings of one kind


class LogThrottle:
    """When a warning of one kind may be logged.

    Args:
        period: Seconds between two warnings that are let through.
        clock: A monotonic clock in seconds.
    """

    __slots__ = ("_clock", "_until", "held", "period")

    def __init__(self, period: float = PERIOD, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.held = 0  # warnings held back since the last one let through
        self._clock = clock
        self._until = -float("inf")

    def take(self) -> int | None:
        """None: hold this warning back (it is counted); else log it now.

        Returns:
            How many were held back since the last one let through, or None.
        """
        now = self._clock()
        if now < self._until:
            self.held += 1
            return None
        held, self.held = self.held, 0
        self._until = now + self.period
        return held


def held_back(held: int) -> str:
    """The end of a let-through warning: how many like it were held back (``""`` for none)."""
    return f" ({held} more like it were not logged)" if held else ""
