"""The transactions ring buffer: the newest CMD events, in arrival order."""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["TransactionLog"]


class TransactionLog:
    """A bounded log of raw CMD ``event`` frames; the oldest fall off first.

    Args:
        capacity: Most events kept (default 1000).
    """

    __slots__ = ("_items",)

    def __init__(self, capacity: int = 1000) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=self._check(capacity))

    @staticmethod
    def _check(capacity: int) -> int:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        return capacity

    @property
    def capacity(self) -> int:
        """Most events kept."""
        return self._items.maxlen or 0

    def configure(self, capacity: int) -> None:
        """Change the capacity, keeping the newest events that still fit."""
        self._items = deque(self._items, maxlen=self._check(capacity))

    def append(self, event: dict[str, Any]) -> None:
        """Record one event."""
        self._items.append(event)

    def get(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` events (all when None), oldest first."""
        if limit is None:
            return list(self._items)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
        if limit == 0:
            return []
        items = self._items
        start = max(0, len(items) - limit)
        return [items[i] for i in range(start, len(items))]

    def clear(self) -> None:
        """Drop every event."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
