"""Reading request fields: every payload field is type-checked here.

Frames come from strangers, so a field may hold any JSON value (a list, an
object, a bool, ``null``, an integer of any size). Each reader below accepts
exactly one shape and raises `OpError` with the protocol's error code for
everything else, so that bad input never reaches the engine and never shows
up as ``internal``.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from .._wire import INT64_MAX

__all__ = ["Json", "OpError", "choice", "integer", "number", "optional_int64", "text"]

Json = dict[str, Any]


class OpError(Exception):
    """A request failed with one of the protocol's error codes.

    Args:
        code: The error code (one of ``market_client._wire.ERROR_CODES``).
        message: What went wrong, for a human.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(
    payload: Json, key: str, default: int | None, lo: int, hi: int, *, code: str = "bad_request"
) -> int:
    """``payload[key]``: an integer from ``lo`` to ``hi`` (``default`` when absent)."""
    value = payload.get(key, default)
    if not _is_int(value) or not lo <= value <= hi:
        raise OpError(code, f"'{key}' must be an integer from {lo} to {hi}")
    return value


def optional_int64(payload: Json, key: str) -> int | None:
    """``payload[key]``: absent, ``null`` or a signed 64-bit integer."""
    value = payload.get(key)
    if value is None:
        return None
    if not _is_int(value) or not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise OpError("bad_request", f"'{key}' must be a signed 64-bit integer")
    return value


def number(payload: Json, key: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``payload[key]``: a number (not a bool) from ``lo`` to ``hi``."""
    value = payload.get(key)
    if (isinstance(value, float) or _is_int(value)) and (
        (lo < value if lo_open else lo <= value) and value <= hi
    ):
        return float(value)
    low = f"above {lo:g}" if lo_open else f"from {lo:g}"
    raise OpError("bad_request", f"'{key}' must be a number {low} to {hi:g}")


def text(payload: Json, key: str, *, required: bool = True, max_len: int = 200) -> str | None:
    """``payload[key]``: a string of 1 to ``max_len`` characters (or absent when not required)."""
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise OpError("bad_request", f"'{key}' must be a string of 1 to {max_len} characters")
    return value


def choice(payload: Json, key: str, default: str, allowed: tuple[str, ...], code: str) -> str:
    """``payload[key]``: one of ``allowed`` (``default`` when absent)."""
    value = payload.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        raise OpError(code, f"'{key}' must be one of {', '.join(allowed)}")
    return value
