"""Every exception market_client raises on purpose.


    MarketClientError
    ├── GatewayError            the gateway answered a request with an error (code, message, op)
    │   └── AuthError           the gateway refused our token (401 / close 4401 / unauthorized)
    ├── RequestTimeout          no response within the deadline (also a builtin TimeoutError)
    ├── ConnectError            the gateway could not be reached or refused the WebSocket
    ├── ConnectionLost          the peer or the network broke the link; pending requests fail
    ├── SessionClosed           you closed the session; it cannot be used any more
    ├── ReconnectFailed         the link could not be restored in time (a ConnectionLost)
    ├── TooManyInFlight         max_pending requests already wait for responses; nothing was sent
    └── EventOverflow           an events() consumer fell behind and private events were missed

Misuse (opening a session twice) raises ``RuntimeError``; bad arguments (a
float price, a transport that does not run on this backend) raise
``ValueError`` or ``TypeError`` before anything is sent. A malformed frame
from the gateway never raises: it is counted in ``client.stats()`` and logged.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "AuthError",
    "ConnectError",
    "ConnectionLost",
    "EventOverflow",
    "GatewayError",
    "MarketClientError",
    "ReconnectFailed",
    "RequestTimeout",
    "SessionClosed",
    "TooManyInFlight",
]


class MarketClientError(Exception):
    """Base class of every error market_client raises on purpose."""


class GatewayError(MarketClientError):
    """The gateway answered with ``"status": "error"``.

    Attributes:
        code: The protocol's error code, e.g. ``"invalid_price"``.
        message: The gateway's human-readable explanation.
        op: The op of the failed request.
        response: The whole response frame, for logging.
    """

    def __init__(
        self, code: str, message: str, op: str | None, response: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{op or 'request'} failed: {code}: {message}")
        self.code = code
        self.message = message
        self.op = op
        self.response = response if response is not None else {}


class AuthError(GatewayError):
    """The gateway refused the token; handshake again with ``token=None`` for a new user."""


class RequestTimeout(MarketClientError, TimeoutError):
    """No response came within the request's deadline.

    The request may still have been carried out by the gateway: for orders,
    retry with the same ``client_order_id`` (a duplicate is refused) or check
    with ``order_history``. The waiter is removed at once; a late response is
    dropped and counted in ``stats()["late_responses"]``.

    Attributes:
        op: The op that timed out.
        timeout: The deadline in seconds.
    """

    def __init__(self, op: str, timeout: float) -> None:
        super().__init__(f"{op} got no response within {timeout:g} s")
        self.op = op
        self.timeout = timeout


class ConnectError(MarketClientError):
    """The gateway could not be reached (refused, unreachable, TLS failure).

    The message names the URL; check that a gateway runs there
    (``market-client sim`` starts one).
    """


class ConnectionLost(MarketClientError):
    """The connection broke (peer closed it, network failed, heartbeats stopped).

    Requests in flight fail with this at once and are never resent: an
    order may or may not have reached the gateway; reconcile with
    ``list_orders()`` or ``order_history(client_order_id=...)``.

    Attributes:
        code: The WebSocket close code, when one was received.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ReconnectFailed(ConnectionLost):
    """The session could not reconnect within its deadline and has ended."""


class SessionClosed(MarketClientError):
    """The session was closed by its owner and can no longer be used."""


class TooManyInFlight(MarketClientError):
    """``max_pending`` requests already wait for responses; this one was not sent.

    The bound keeps memory flat when responses stop coming. Wait for some
    requests to finish (or bound your own concurrency, e.g. with a
    ``CapacityLimiter``), or open the session with a larger ``max_pending``.

    Attributes:
        limit: The ``max_pending`` of the session.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} requests already in flight, nothing was sent; wait for some "
            "to finish, or open the session with a larger max_pending="
        )
        self.limit = limit


class EventOverflow(MarketClientError):
    """An ``events()`` consumer was too slow and private events were dropped for it.

    The transactions ring buffer still holds them (``get_transactions()``).

    Attributes:
        missed: How many private events this subscriber did not get.
    """

    def __init__(self, missed: int) -> None:
        super().__init__(
            f"events() consumer fell behind: {missed} private event(s) missed; "
            "they are still in get_transactions(); use a larger buffer= "
            "or consume faster"
        )
        self.missed = missed


def link_closed(channel: str, code: int | None, reason: str = "") -> ConnectionLost:
    """The one way to say a channel's socket closed: ``CMD connection closed (code 1012: …)``."""
    detail = f"code {code}" + (f": {reason}" if reason else "")
    return ConnectionLost(f"{channel} connection closed ({detail})", code)


def open_error(channel: str, status: int | None, detail: str, ws_base: str) -> MarketClientError:
    """What a refused or failed WebSocket open means to the caller.

    Args:
        channel: ``"CMD"`` or ``"MD"``.
        status: The HTTP status of a refused upgrade, if there was one.
        detail: What the transport said (no token in it).
        ws_base: The gateway's ``ws://`` or ``wss://`` address.
    """
    if status in (401, 403):
        return AuthError(
            "unauthorized",
            f"the gateway refused the {channel} connection (HTTP {status})",
            "connect",
        )
    return ConnectError(f"cannot open the {channel} WebSocket at {ws_base}: {detail}")


def fresh(exc: BaseException) -> BaseException:
    """A new instance of a stored error, so that tasks never share one traceback."""
    if isinstance(exc, ConnectionLost):
        new: BaseException = type(exc)(str(exc), exc.code)
    elif isinstance(exc, SessionClosed):
        new = SessionClosed(str(exc))
    else:
        return exc
    new.__cause__ = exc.__cause__
    return new


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def unwrap(exc: BaseException, besides: BaseException | None = None) -> BaseException:
    """What to raise at the session boundary instead of an exception group.

    Cancellations are dropped, and so is ``besides`` (the block's own
    exception, which goes on as the context of what is raised); one
    remaining exception is raised as itself; several of one type (the CMD
    and MD channels failing together, say with ``AuthError``) are reported as
    the first; several that all report the link going down as the one that
    ended the session (``ReconnectFailed``) or else the first. Anything else
    stays a group.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    cancelled = anyio.get_cancelled_exc_class()
    real = [e for e in _leaves(exc) if not isinstance(e, cancelled) and e is not besides]
    if not real:
        return besides if besides is not None and besides in _leaves(exc) else exc
    if all(type(e) is type(real[0]) for e in real):
        return real[0]
    if all(isinstance(e, ConnectionLost) for e in real):
        return next((e for e in real if isinstance(e, ReconnectFailed)), real[0])
    return exc
