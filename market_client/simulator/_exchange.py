"""The gateway's state and rules as a plain class: no sockets, no ``await``.

`Exchange` takes requests (already-decoded frames) and returns responses;
everything else it produces (market data, private events, disconnect
orders) goes to a `Sink` that the I/O layer implements. It is the
dispatcher: it checks the envelope, the session, the role, the rate limit
and the fault knobs, then hands the payload to the part that owns the op:

- `Accounts` (``_accounts``): users, tokens, cash and positions, events;
- `MarketData` (``_marketdata``): books, MD sequence, snapshots, candles;
- `Orders` (``_orders``): the order rules, matching and settlement;
- `Admin` (``_admin``): admin ops and fault knobs.

Tests drive it directly with a recording sink.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._protocol import PROTOCOL_VERSION, rfc3339_now
from .._wire import INT64_MAX
from ._accounts import Accounts, Session, User
from ._admin import FRAME_FAULTS, Admin, Faults
from ._engine import Order
from ._fields import Json, OpError
from ._limits import Limits
from ._marketdata import MarketData, SymbolState
from ._orders import Orders
from ._sink import NullSink, Sink
from ._symbols import DEFAULT_SYMBOLS, SymbolSpec, parse_symbols

__all__ = [
    "DEFAULT_SYMBOLS",
    "FRAME_FAULTS",
    "Exchange",
    "Faults",
    "Json",
    "Limits",
    "OpError",
    "Session",
    "Sink",
    "SymbolSpec",
    "User",
    "parse_symbols",
]

Handler = Callable[[Session, Json], Json]


class Exchange:
    """The whole simulated gateway, minus the sockets.

    Args:
        symbols: What trades here.
        sink: Receives market data, private events and admin side effects.
        secret: Key that signs tokens; a gateway restarted with the same
            secret resumes the same users (their orders are gone).
        admin_token: Handshaking with this token yields the admin user.
        rate_limit_hz: Requests per second per user (burst of the same size);
            None for no limit.
        clock_ns: Time source of timestamps, for tests.
        limits: The gateway's bounds (`Limits`; the documented defaults when None).
        monotonic: Time source of the rate limit, in seconds, for tests.
    """

    def __init__(
        self,
        symbols: Iterable[SymbolSpec] = DEFAULT_SYMBOLS,
        sink: Sink | None = None,
        *,
        secret: bytes | None = None,
        admin_token: str | None = None,
        rate_limit_hz: float | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        limits: Limits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink: Sink = sink if sink is not None else NullSink()
        self.limits = limits if limits is not None else Limits()
        self.faults = Faults()
        self._clock_ns = clock_ns
        self._last_ts = 0
        self.accounts = Accounts(
            self.sink,
            secret=secret if secret is not None else secrets.token_bytes(32),
            admin_token=admin_token,
            limits=self.limits,
            rate_limit_hz=rate_limit_hz,
            monotonic=monotonic,
        )
        self.market = MarketData(symbols, self.sink, self.now_ns, max_gap=self.limits.max_md_gap)
        self.orders = Orders(self.accounts, self.market, self.limits, self.now_ns)
        self._ops: dict[str, Handler] = {}
        self.admin = Admin(
            self.accounts, self.market, self.orders, self.sink, self.faults, self._ops
        )
        for part in (self.accounts, self.market, self.orders, self.admin):
            self._ops.update(part.ops)

    # -- the parts' state, under the names tools and tests use ------------------
    @property
    def symbols(self) -> dict[str, SymbolState]:
        """Per-symbol state (book, seq, status, candles) by name."""
        return self.market.symbols

    @property
    def users(self) -> dict[str, User]:
        """The users the gateway remembers, by id."""
        return self.accounts.users

    @property
    def rate_limit_hz(self) -> float | None:
        """Requests per second per user, or None for no limit."""
        return self.accounts.rate_limit_hz

    def now_ns(self) -> int:
        """Strictly increasing nanosecond timestamps, so candles never go back in time."""
        now = self._clock_ns()
        if now <= self._last_ts:
            now = self._last_ts + 1
        self._last_ts = now
        return now

    # -- requests ------------------------------------------------------------
    def handle(self, session: Session, frame: Any) -> Json:
        """Answer one decoded request frame (any JSON value) with one response frame."""
        corr_id: Any = None
        op: Any = None
        try:
            if not isinstance(frame, dict):
                raise OpError("bad_request", "a request must be a JSON object")
            corr_id = frame.get("msg_id")
            if not isinstance(corr_id, (str, int)) or isinstance(corr_id, bool):
                corr_id = None
            elif isinstance(corr_id, int) and not -INT64_MAX - 1 <= corr_id <= INT64_MAX:
                corr_id = None
                raise OpError("bad_request", "an integer msg_id must fit in signed 64 bits")
            op = frame.get("op")
            if not isinstance(op, str):
                op = None
                raise OpError("bad_request", "the request has no 'op' string")
            kind = frame.get("type", "request")
            if kind != "request":
                raise OpError("bad_request", "'type' must be 'request' when present")
            payload = frame.get("payload", {})
            if payload is None:
                payload = {}
            if not isinstance(payload, dict):
                raise OpError("bad_request", "payload must be a JSON object")
            role = frame.get("as")
            if role is not None and role != "admin":
                raise OpError("bad_request", "'as' must be 'admin' or absent")
            result = self.dispatch(session, op, payload, as_admin=role == "admin")
        except OpError as exc:
            return self._response(corr_id, op, error=exc)
        return self._response(corr_id, op, payload=result)

    def dispatch(self, session: Session, op: str, payload: Json, *, as_admin: bool = False) -> Json:
        """Run one op for a session.

        Raises:
            OpError: The op failed; an unexpected exception inside an op
                comes out as ``internal`` (the connection stays usable).
        """
        handler = self._ops.get(op)
        if handler is None:
            raise OpError("unknown_op", f"unknown op {op[:80]!r}")
        if not session.logged_in and op != "auth.login":
            raise OpError("not_logged_in", "send auth.login first")
        if op.startswith("admin.") and (not as_admin or not session.user.is_admin):
            raise OpError("forbidden", f'{op} needs an admin token and "as": "admin"')
        self.accounts.take_request(session.user)
        if op in self.faults.fail:
            raise OpError("internal", f"internal error in {op} (fault injected)")
        try:
            return handler(session, payload)
        except OpError:
            raise
        except Exception as exc:  # a bug in the engine must not kill the connection
            raise OpError("internal", f"internal error in {op}: {type(exc).__name__}") from exc

    @staticmethod
    def _response(
        corr_id: Any, op: Any, *, payload: Json | None = None, error: OpError | None = None
    ) -> Json:
        frame: Json = {
            "type": "response",
            "ver": PROTOCOL_VERSION,
            "corr_id": corr_id,
            "op": op,
            "ts": rfc3339_now(),
        }
        if error is None:
            frame["status"] = "ok"
            frame["payload"] = payload if payload is not None else {}
        else:
            frame["status"] = "error"
            frame["error"] = {"code": error.code, "message": error.message}
        return frame

    # -- the parts' entry points, for the I/O layer, the flow and tests -------
    def handshake(self, token: object) -> Json:
        """``POST /auth/handshake`` (see `Accounts.handshake`)."""
        return self.accounts.handshake(token)

    def user_for_token(self, token: object) -> User | None:
        """The user of a token, or None (see `Accounts.user_for_token`)."""
        return self.accounts.user_for_token(token)

    def token_for(self, user: User) -> str:
        """The token that resumes ``user``."""
        return self.accounts.token_for(user)

    def new_user(self, *, simulated: bool = False) -> User:
        """Create a user with a fresh id."""
        return self.accounts.new_user(simulated=simulated)

    def place(self, user: User, payload: Json) -> tuple[Order, list[Json]]:
        """Check and run one order (see `Orders.place`)."""
        return self.orders.place(user, payload)

    def cancel(self, user: User, order: Order) -> None:
        """Cancel a live resting order of ``user``."""
        self.orders.cancel(user, order)

    def order_json(self, order: Order) -> Json:
        """Wire form of an order."""
        return self.orders.order_json(order)

    def snapshot(self, sym: str) -> Json:
        """A full-depth ``book.snapshot`` MD message of ``sym`` as of now."""
        return self.market.snapshot(sym)

    def candles(
        self,
        sym: str,
        interval_ms: int,
        limit: int = 50,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Json:
        """Candles of ``sym`` built from its trades, oldest first (the ``candles.get`` reply)."""
        return self.market.candles(sym, interval_ms, limit, since_ns, until_ns)

    def halt(self, sym: str) -> None:
        """Halt ``sym``: cancel its resting orders, reject new ones."""
        self.admin.halt(sym)
