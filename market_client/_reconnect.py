"""Sans-I/O reconnection: the backoff policy and the bookkeeping of one link.

The client runs each channel (CMD, MD) as a supervised task that reconnects
it; what it waits between attempts, when it gives up, and what it reports
are decided here, without sockets, so they are tested without sockets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LinkState", "ReconnectPolicy"]


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a session reconnects a channel (CMD or MD) that dropped.

    The n-th attempt (from 0) waits ``min(maximum, initial * factor**n)``
    seconds scaled by a random factor in ``[1 - jitter, 1]``, so that many
    clients dropped together do not come back in lockstep. A channel that
    stays down for ``deadline`` seconds ends the session with
    `ReconnectFailed`.

    Attributes:
        initial: First delay, in seconds.
        maximum: Longest delay, in seconds.
        factor: Growth of the delay per attempt.
        jitter: Fraction of each delay that is random, from 0 to 1.
        deadline: Seconds a channel may stay down before the session ends.
        stable_after: Seconds a connection must stay up to count as good: one
            that drops sooner does not reset the backoff, which goes on
            growing (a gateway that drops every connection at once gets
            ever rarer attempts, not one every ``initial`` seconds).
    """

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5
    deadline: float = 60.0
    stable_after: float = 5.0

    def __post_init__(self) -> None:
        for name in ("initial", "maximum", "deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, got {value!r}")
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be positive and finite, got {value!r}")
        if self.maximum < self.initial:
            raise ValueError("maximum must be at least initial")
        if not 1 <= self.factor < math.inf:
            raise ValueError(f"factor must be at least 1, got {self.factor!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be from 0 to 1, got {self.jitter!r}")
        stable = self.stable_after
        if isinstance(stable, bool) or not isinstance(stable, (int, float)):
            raise TypeError(f"stable_after must be a number of seconds, got {stable!r}")
        if not 0 <= stable < math.inf:
            raise ValueError(f"stable_after must be at least 0 and finite, got {stable!r}")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt number ``attempt`` (counted from 0)."""
        # factor**attempt overflows a float near attempt 1000; the cap is long reached.
        if attempt >= 64:
            base = self.maximum
        else:
            base = min(self.maximum, self.initial * self.factor**attempt)
        return base * (1 - self.jitter * rand())


class LinkState:
    """What one channel's supervisor knows and reports: up or down, and since when.

    Args:
        name: ``"cmd"`` or ``"md"``.
    """

    __slots__ = (
        "attempts",
        "disconnects",
        "down_since",
        "last_downtime",
        "max_downtime",
        "name",
        "reconnects",
        "up",
        "up_since",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = False
        # Attempts since the last good connection (one that stayed up for the
        # policy's stable_after): failed ones, and connections that dropped sooner.
        self.attempts = 0
        self.disconnects = 0
        self.reconnects = 0
        self.down_since: float | None = None
        self.up_since: float | None = None
        self.last_downtime: float | None = None
        self.max_downtime = 0.0

    def lost(self, now: float, policy: ReconnectPolicy | None = None) -> None:
        """The link went down at ``now`` (a clock in seconds).

        With ``policy``, a connection that stayed up less than its
        ``stable_after`` counts as one more attempt: the backoff goes on.
        """
        short = (
            policy is not None
            and self.up_since is not None
            and now - self.up_since < policy.stable_after
        )
        self.attempts = self.attempts + 1 if short else 0
        self.up = False
        self.disconnects += 1
        self.down_since = now
        self.up_since = None

    def failed_attempt(self) -> int:
        """One reconnection attempt failed; returns the attempt number for the backoff."""
        self.attempts += 1
        return self.attempts

    def overdue(self, now: float, policy: ReconnectPolicy) -> bool:
        """Whether the link has been down longer than the policy allows."""
        return self.down_since is not None and now - self.down_since >= policy.deadline

    def restored(self, now: float) -> float:
        """The link is up again; returns how long it was down, in seconds."""
        self.up = True
        downtime = 0.0
        if self.down_since is not None:
            downtime = now - self.down_since
            self.reconnects += 1
            self.last_downtime = downtime
            self.max_downtime = max(self.max_downtime, downtime)
        self.down_since = None
        self.up_since = now
        return downtime

    def stats(self) -> dict[str, object]:
        """Counters for ``client.stats()``."""
        return {
            "up": self.up,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "last_downtime_s": self.last_downtime,
            "max_downtime_s": self.max_downtime,
        }
