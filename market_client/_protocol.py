"""Sans-I/O protocol core: envelopes both ways, response parsing, request correlation.

Nothing here awaits or touches a socket. The CMD link turns requests into
text with `encode_request`, hands responses to a `Correlator`, which wakes
the waiter whose ``msg_id`` matches the ``corr_id``, and turns the response
into a payload or a `GatewayError` with `payload_or_raise`. The names and
limits both ends share are in ``_wire``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, TypeVar

import orjson

from ._exceptions import AuthError, GatewayError, TooManyInFlight
from ._logs import LogThrottle, held_back
from ._wire import CMD_FRAME_LIMIT

__all__ = [
    "PROTOCOL_VERSION",
    "Correlator",
    "Waiter",
    "decode_frame",
    "encode_request",
    "is_event",
    "payload_or_raise",
    "rfc3339_now",
]

PROTOCOL_VERSION = "1.0"
log = logging.getLogger("market_client")


# (millisecond, its text, second, its text up to the seconds): the text is
# made once per millisecond, and datetime is called once per second. A bot
# that answers one trade every few milliseconds makes a new millisecond at
# every request: then the formatting is a few string operations instead of
# datetime's (2.7 µs, and over 20 µs on a cold cache: the path from a market
# move to the order out). One tuple, replaced whole: threads (`BlockingClient`)
# never see one field of it new and another old.
_last_ts: tuple[int, str, int, str] = (-1, "", -1, "")


def rfc3339_now() -> str:
    """Current UTC time as RFC 3339 with milliseconds (``2026-12-04T18:07:20.123Z``)."""
    global _last_ts
    ms = time.time_ns() // 1_000_000
    last = _last_ts
    if ms != last[0]:
        second, milli = divmod(ms, 1000)
        prefix = last[3]
        if second != last[2]:
            prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        last = _last_ts = (ms, f"{prefix}{milli:03d}Z", second, prefix)
    return last[1]


def encode_request(
    op: str, payload: Mapping[str, Any], msg_id: str, as_role: str | None = None
) -> str:
    """The JSON text of one request with its envelope filled in.

    Raises:
        ValueError: The payload cannot be encoded (an integer beyond 64 bits,
            a value JSON has no form for), or the frame would be over the
            gateway's 64 KiB limit, which closes the socket for every request.
    """
    frame: dict[str, Any] = {
        "type": "request",
        "ver": PROTOCOL_VERSION,
        "msg_id": msg_id,
        "ts": rfc3339_now(),
        "op": op,
        "payload": payload,
    }
    if as_role is not None:
        frame["as"] = as_role
    try:
        data = orjson.dumps(frame)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise ValueError(f"{op}: the payload cannot be sent as JSON ({exc})") from None
    if len(data) > CMD_FRAME_LIMIT:
        raise ValueError(
            f"{op}: the request is {len(data):,} bytes, over the gateway's "
            f"{CMD_FRAME_LIMIT:,}-byte frame limit; nothing was sent"
        )
    return data.decode()


def payload_or_raise(frame: Mapping[str, Any], op: str) -> dict[str, Any]:
    """A response's payload, or its error raised as `GatewayError`.

    Raises:
        AuthError: The code is ``unauthorized``.
        GatewayError: Any other error.
    """
    if frame.get("status") == "ok":
        payload = frame.get("payload")
        return payload if isinstance(payload, dict) else {}
    error = frame.get("error")
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code", "internal"))
    message = str(error.get("message", "the gateway gave no error message"))
    cls = AuthError if code == "unauthorized" else GatewayError
    raise cls(code, message, op, dict(frame))


def is_event(frame: Mapping[str, Any]) -> bool:
    """Whether an ``event`` frame has the fields every consumer relies on."""
    seq = frame.get("seq")
    return (
        isinstance(frame.get("event"), str)
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and isinstance(frame.get("payload"), dict)
    )


def decode_frame(raw: str | bytes) -> dict[str, Any] | None:
    """Decode one frame; None when it is not a JSON object (the caller counts it)."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return frame if isinstance(frame, dict) else None


class Waiter(Protocol):
    """What a pending request is woken with: exactly one of these is called once."""

    def set_result(self, frame: dict[str, Any]) -> None:
        """The response frame arrived."""

    def set_error(self, exc: BaseException) -> None:
        """The request can no longer be answered (connection lost, session closed)."""


W = TypeVar("W", bound=Waiter)


class Correlator(Generic[W]):
    """The table of requests in flight: ``msg_id -> waiter``.

    * `add` registers a waiter under a fresh id (refused when the table
      is full, so memory stays bounded);
    * `resolve` wakes the waiter matching a response's ``corr_id``;
      a response for an id that timed out or was cancelled is *late*, one for
      an id never issued is *unsolicited*: both are dropped and counted;
    * `fail_all` fails every waiter at once (connection lost), so no
      request is ever left hanging.

    Args:
        max_pending: Most requests in flight at once.
        remember_abandoned: How many abandoned ids are remembered to tell a
            late response from an unsolicited one.
    """

    def __init__(self, max_pending: int = 10_000, remember_abandoned: int = 4096) -> None:
        self.max_pending = max_pending
        self._pending: dict[str, W] = {}
        self._ids = itertools.count(1)
        self._abandoned: deque[str] = deque(maxlen=remember_abandoned)
        self._abandoned_set: set[str] = set()
        self.late = 0
        self.unsolicited = 0
        self._unknown_warnings = LogThrottle()

    def __len__(self) -> int:
        return len(self._pending)

    def next_id(self) -> str:
        """A ``msg_id`` unique on this connection."""
        return str(next(self._ids))

    def check_room(self) -> None:
        """Raise `TooManyInFlight` when ``max_pending`` requests are in flight."""
        if len(self._pending) >= self.max_pending:
            raise TooManyInFlight(self.max_pending)

    def add(self, waiter: W, msg_id: str | None = None) -> str:
        """Register ``waiter`` under ``msg_id`` (default: a fresh one); returns the id.

        Raises:
            TooManyInFlight: ``max_pending`` requests are already in flight.
        """
        self.check_room()
        if msg_id is None:
            msg_id = self.next_id()
        self._pending[msg_id] = waiter
        return msg_id

    def abandon(self, msg_id: str) -> None:
        """Forget a request that timed out or was cancelled (idempotent)."""
        if self._pending.pop(msg_id, None) is not None:
            if len(self._abandoned) == self._abandoned.maxlen:
                self._abandoned_set.discard(self._abandoned[0])
            self._abandoned.append(msg_id)
            self._abandoned_set.add(msg_id)

    def resolve(self, frame: dict[str, Any]) -> bool:
        """Deliver a response frame; False when nobody was waiting for it."""
        corr_id = frame.get("corr_id")
        key = corr_id if isinstance(corr_id, str) else str(corr_id)
        waiter = self._pending.pop(key, None)
        if waiter is None:
            if key in self._abandoned_set:
                self.late += 1
                log.debug("dropped a late response to request %s (%s)", key, frame.get("op"))
            else:
                self.unsolicited += 1
                held = self._unknown_warnings.take()
                if held is not None:
                    log.warning(
                        "dropped a response to unknown request %.80r (%.80s)%s",
                        corr_id,
                        frame.get("op"),
                        held_back(held),
                    )
            return False
        waiter.set_result(frame)
        return True

    def fail_all(self, exc: BaseException) -> int:
        """Fail every pending waiter with ``exc``; returns how many there were."""
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.set_error(exc)
        return len(pending)
