"""The gateway's state and rules as a plain class: no sockets, no ``await``.

:class:`Exchange` takes requests (already-decoded frames) and returns
responses; everything else it produces (market data, private events,
disconnect orders) goes to a :class:`Sink` that the I/O layer implements.
Tests drive it directly with a recording sink.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from .._protocol import PROTOCOL_VERSION, rfc3339_now
from ._engine import Book, Execution, Order

__all__ = [
    "DEFAULT_SYMBOLS",
    "Exchange",
    "FRAME_FAULTS",
    "Faults",
    "OpError",
    "Session",
    "Sink",
    "SymbolSpec",
    "User",
    "parse_symbols",
]

STARTING_CASH = Decimal("1000000")
MAX_CLIENT_ORDER_ID = 64
MAX_FINISHED_ORDERS = 10_000  # per user; oldest finished orders are forgotten
CANDLE_SECONDS_KEPT = 86_400  # 1-second buckets kept per symbol
NS_PER_MS = 1_000_000
Json = dict[str, Any]


class OpError(Exception):
    """A request failed with one of the protocol's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A tradable symbol: tick size, minimum quantity, lot and a start price."""

    sym: str
    tick: Decimal
    min_qty: int = 1
    lot: int = 1
    start_price: Decimal = Decimal("100")


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("ABC", Decimal("0.01"), 1, 1, Decimal("100.00")),
    SymbolSpec("XYZ", Decimal("0.05"), 10, 10, Decimal("50.00")),
    SymbolSpec("QQQ", Decimal("0.25"), 1, 1, Decimal("400.00")),
    SymbolSpec("ETH", Decimal("0.1"), 1, 1, Decimal("2500.0")),
)


def parse_symbols(text: str | Iterable[str] | None) -> tuple[SymbolSpec, ...]:
    """Parse ``--symbols``: names (``ABC,XYZ``) or ``SYM:tick:price[:lot]`` specs.

    Known names take their default spec; an unknown bare name trades with a
    0.01 tick around 100.
    """
    if text is None:
        return DEFAULT_SYMBOLS
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
    known = {s.sym: s for s in DEFAULT_SYMBOLS}
    out: list[SymbolSpec] = []
    for part in filter(None, parts):
        name, *rest = part.split(":")
        if not name.isalnum() or not name.isupper():
            raise ValueError(f"symbol names are upper-case letters and digits, got {name!r}")
        if not rest:
            out.append(known.get(name, SymbolSpec(name, Decimal("0.01"))))
            continue
        try:
            tick = Decimal(rest[0])
            price = Decimal(rest[1]) if len(rest) > 1 else Decimal("100")
            lot = int(rest[2]) if len(rest) > 2 else 1
        except (InvalidOperation, ValueError) as exc:
            raise ValueError(f"bad symbol spec {part!r}: use SYM:tick:price[:lot]") from exc
        if tick <= 0 or price <= 0 or lot <= 0 or price % tick:
            raise ValueError(f"bad symbol spec {part!r}: tick, price, lot > 0, price on tick")
        out.append(SymbolSpec(name, tick, lot, lot, price))
    if not out:
        raise ValueError("at least one symbol is needed")
    if len({s.sym for s in out}) != len(out):
        raise ValueError("symbol names must be unique")
    return tuple(out)


@dataclass(slots=True)
class Position:
    """A user's position in one symbol."""

    qty: int = 0
    avg_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)

    def apply(self, side: str, price: Decimal, qty: int) -> None:
        """Fold one fill in: average price on increase, realized P&L on reduction."""
        signed = qty if side == "buy" else -qty
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            total = abs(self.qty) + qty
            self.avg_price = (self.avg_price * abs(self.qty) + price * qty) / total
            self.qty += signed
            return
        closing = min(abs(self.qty), qty)
        direction = 1 if self.qty > 0 else -1
        self.realized_pnl += (price - self.avg_price) * closing * direction
        flipped = qty > abs(self.qty)
        self.qty += signed
        if flipped:
            self.avg_price = price
        elif self.qty == 0:
            self.avg_price = Decimal(0)


@dataclass(slots=True)
class User:
    """A gateway user: created by a handshake, resumed by its token."""

    user_id: str
    is_admin: bool = False
    simulated: bool = False
    cash: Decimal = STARTING_CASH
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    live_by_coid: dict[str, Order] = field(default_factory=dict)
    by_coid: dict[str, Order] = field(default_factory=dict)
    fills: dict[str, list[Json]] = field(default_factory=dict)
    event_seq: int = 0
    bucket: float = 0.0
    bucket_ts: float = 0.0


@dataclass(slots=True)
class Session:
    """One CMD connection (or one HTTP request) of a user."""

    user: User
    logged_in: bool = False
    session_id: str = ""


@dataclass(slots=True)
class Faults:
    """Knobs that make the gateway misbehave on purpose, for tests.

    ``delay`` (seconds per op) and ``drop`` (ops never answered) are applied
    by the I/O layer; ``fail`` makes an op raise inside the engine, which the
    client sees as error code ``internal``. Stalling market data and sending
    malformed frames are done by the gateway (``RunningSimulator.stall_md``
    and ``RunningSimulator.inject``, or the ``admin.fault`` op).
    """

    delay: dict[str, float] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)

    def clear(self) -> None:
        """Back to a well-behaved gateway."""
        self.delay.clear()
        self.drop.clear()
        self.fail.clear()


#: Malformed frames the gateway can send on purpose (``admin.fault``).
FRAME_FAULTS = (
    "not_json",
    "not_object",
    "wrong_types",
    "unknown_type",
    "unknown_corr_id",
    "oversized",
    "bad_price",
)


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


class _SymbolState:
    __slots__ = ("book", "candles", "fmt", "gap", "last_trade_seq", "seq", "spec", "status")

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.book = Book()
        self.seq = 0
        self.last_trade_seq = 0
        self.status = "trading"
        self.gap = 0
        # 1-second buckets, oldest first: [t_ns, o, h, l, c, v, n, last_seq]
        self.candles: deque[list[int]] = deque(maxlen=CANDLE_SECONDS_KEPT)
        cache: dict[int, str] = {}
        tick = spec.tick

        def fmt(ticks: int) -> str:
            text = cache.get(ticks)
            if text is None:
                if len(cache) > 100_000:
                    cache.clear()
                text = cache[ticks] = str(ticks * tick)
            return text

        self.fmt = fmt

    def add_trade(self, ts_ns: int, price: int, qty: int, seq: int) -> None:
        start = ts_ns - ts_ns % 1_000_000_000
        candles = self.candles
        if candles and candles[-1][0] == start:
            c = candles[-1]
            c[2] = max(c[2], price)
            c[3] = min(c[3], price)
            c[4] = price
            c[5] += qty
            c[6] += 1
            c[7] = seq
        else:
            candles.append([start, price, price, price, price, qty, 1, seq])
        self.last_trade_seq = seq


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
        clock_ns: Time source, for tests.
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
    ) -> None:
        self.symbols: dict[str, _SymbolState] = {s.sym: _SymbolState(s) for s in symbols}
        self.sink: Sink = sink if sink is not None else _NullSink()
        self.secret = secret if secret is not None else secrets.token_bytes(32)
        self.admin_token = admin_token
        self.rate_limit_hz = rate_limit_hz
        self.faults = Faults()
        self.users: dict[str, User] = {}
        self._clock_ns = clock_ns
        self._last_ts = 0
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._session_ids = itertools.count(1)
        self._ops: dict[str, Callable[[Session, Json], Json]] = {
            "auth.login": self._op_login,
            "symbols.list": self._op_symbols,
            "book.get": self._op_book,
            "order.place": self._op_place,
            "order.cancel": self._op_cancel,
            "order.list": self._op_list,
            "order.history": self._op_history,
            "portfolio.get": self._op_portfolio,
            "candles.get": self._op_candles,
            "admin.halt": self._op_halt,
            "admin.resume": self._op_resume,
            "admin.disconnect": self._op_disconnect,
            "admin.md_gap": self._op_md_gap,
            "admin.flow": self._op_flow,
            "admin.fault": self._op_fault,
        }

    # -- time ----------------------------------------------------------
    def now_ns(self) -> int:
        """Monotonic nanosecond timestamps, so candles never go back in time."""
        now = self._clock_ns()
        if now <= self._last_ts:
            now = self._last_ts + 1
        self._last_ts = now
        return now

    # -- users and tokens ----------------------------------------------
    def _sign(self, user_id: str) -> str:
        mac = hmac.new(self.secret, user_id.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{user_id}.{mac}"

    def token_for(self, user: User) -> str:
        """The token that resumes ``user`` (the admin token for the admin)."""
        if user.is_admin and self.admin_token is not None:
            return self.admin_token
        return self._sign(user.user_id)

    def new_user(self, *, simulated: bool = False) -> User:
        """Create a user with a fresh id."""
        user = User(f"u-{secrets.token_hex(6)}", simulated=simulated)
        self.users[user.user_id] = user
        return user

    def user_for_token(self, token: str | None) -> User | None:
        """The user a token belongs to, or None when the token is not valid.

        A correctly signed token of a user this process has not seen (the
        gateway was restarted with the same secret) brings that user back.
        """
        if not token or len(token) > 200:
            return None
        if self.admin_token is not None and hmac.compare_digest(token, self.admin_token):
            user = self.users.get("u-admin")
            if user is None:
                user = self.users["u-admin"] = User("u-admin", is_admin=True)
            return user
        user_id, _, _ = token.rpartition(".")
        if not user_id.startswith("u-") or not hmac.compare_digest(token, self._sign(user_id)):
            return None
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = User(user_id)
        return user

    def handshake(self, token: str | None) -> Json:
        """``POST /auth/handshake``: create (token None) or resume a user."""
        if token is None:
            user = self.new_user()
        else:
            found = self.user_for_token(token)
            if found is None:
                raise OpError("unauthorized", "unknown or invalid token; handshake with null")
            user = found
        return {
            "status": "ok",
            "user_id": user.user_id,
            "token": self.token_for(user),
            "is_admin": user.is_admin,
        }

    # -- requests ------------------------------------------------------
    def handle(self, session: Session, frame: Any) -> Json:
        """Answer one decoded request frame with one response frame."""
        corr_id: Any = None
        op: Any = None
        try:
            if not isinstance(frame, dict):
                raise OpError("bad_request", "a request must be a JSON object")
            corr_id = frame.get("msg_id")
            if not isinstance(corr_id, (str, int)) or isinstance(corr_id, bool):
                corr_id = None
            op = frame.get("op")
            if not isinstance(op, str):
                op = None
                raise OpError("bad_request", "the request has no 'op' string")
            kind = frame.get("type", "request")
            if kind != "request":
                raise OpError("bad_request", f"type must be 'request', got {kind!r}")
            payload = frame.get("payload", {})
            if payload is None:
                payload = {}
            if not isinstance(payload, dict):
                raise OpError("bad_request", "payload must be a JSON object")
            role = frame.get("as")
            if role not in (None, "admin"):
                raise OpError("bad_request", "'as' must be 'admin' or absent")
            result = self.dispatch(session, op, payload, as_admin=role == "admin")
        except OpError as exc:
            return self._response(corr_id, op, error=exc)
        return self._response(corr_id, op, payload=result)

    def dispatch(self, session: Session, op: str, payload: Json, *, as_admin: bool = False) -> Json:
        """Run one op for a session; raises :class:`OpError` on failure."""
        handler = self._ops.get(op)
        if handler is None:
            raise OpError("unknown_op", f"unknown op {op!r}")
        if not session.logged_in and op != "auth.login":
            raise OpError("not_logged_in", "send auth.login first")
        if op.startswith("admin.") and (not as_admin or not session.user.is_admin):
            raise OpError("forbidden", f'{op} needs an admin token and "as": "admin"')
        self._rate_limit(session.user)
        if op in self.faults.fail:
            raise OpError("internal", f"internal error in {op} (fault injected)")
        try:
            return handler(session, payload)
        except OpError:
            raise
        except Exception as exc:  # a bug in the engine must not kill the connection
            raise OpError("internal", f"internal error in {op}: {type(exc).__name__}") from exc

    def _response(
        self, corr_id: Any, op: Any, *, payload: Json | None = None, error: OpError | None = None
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

    def _rate_limit(self, user: User) -> None:
        rate = self.rate_limit_hz
        if rate is None:
            return
        now = time.monotonic()
        user.bucket = min(rate, user.bucket + (now - user.bucket_ts) * rate)
        user.bucket_ts = now
        if user.bucket < 1:
            raise OpError("rate_limited", f"more than {rate:g} requests per second; slow down")
        user.bucket -= 1

    # -- payload validation ----------------------------------------------
    def _sym(self, payload: Json) -> _SymbolState:
        sym = payload.get("sym")
        if not isinstance(sym, str):
            raise OpError("bad_request", "'sym' (a string) is required")
        state = self.symbols.get(sym)
        if state is None:
            raise OpError("unknown_symbol", f"unknown symbol {sym!r}")
        return state

    @staticmethod
    def _int(payload: Json, key: str, default: int | None, lo: int, hi: int) -> int:
        value = payload.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise OpError("bad_request", f"'{key}' must be an integer from {lo} to {hi}")
        return value

    def _price(self, state: _SymbolState, value: Any) -> int:
        if not isinstance(value, str):
            raise OpError("invalid_price", 'price must be a decimal string such as "100.25"')
        try:
            price = Decimal(value)
        except InvalidOperation:
            raise OpError("invalid_price", f"price {value!r} is not a decimal") from None
        if not price.is_finite() or price <= 0:
            raise OpError("invalid_price", f"price {value!r} must be positive")
        ticks, rem = divmod(price, state.spec.tick)
        if rem:
            raise OpError("invalid_price", f"price {value} is not on the tick {state.spec.tick}")
        if ticks > 10**12:
            raise OpError("invalid_price", f"price {value} is out of range")
        return int(ticks)

    def _lookup(self, user: User, payload: Json) -> Order:
        order_id = payload.get("order_id")
        coid = payload.get("client_order_id")
        if isinstance(order_id, str):
            order = user.orders.get(order_id)
            if order is None:
                raise OpError("not_found", f"no order {order_id!r} of yours")
            return order
        if isinstance(coid, str):
            order = user.live_by_coid.get(coid) or user.by_coid.get(coid)
            if order is None:
                raise OpError("not_found", f"no order with client_order_id {coid!r} of yours")
            return order
        raise OpError("bad_request", "give 'order_id' or 'client_order_id' (a string)")

    # -- ops -------------------------------------------------------------
    def _op_login(self, session: Session, payload: Json) -> Json:
        if not session.logged_in:
            session.logged_in = True
            session.session_id = f"s-{next(self._session_ids)}"
        user = session.user
        return {
            "user_id": user.user_id,
            "session_id": session.session_id,
            "is_admin": user.is_admin,
            "event_seq": user.event_seq,
        }

    def _op_symbols(self, session: Session, payload: Json) -> Json:
        return {"symbols": [self.symbol_json(s) for s in self.symbols.values()]}

    @staticmethod
    def symbol_json(state: _SymbolState) -> Json:
        """Wire form of a symbol."""
        spec = state.spec
        return {
            "sym": spec.sym,
            "tick": str(spec.tick),
            "min_qty": spec.min_qty,
            "lot": spec.lot,
            "status": state.status,
        }

    def _op_book(self, session: Session, payload: Json) -> Json:
        state = self._sym(payload)
        depth = self._int(payload, "depth", 20, 1, 1000)
        side = payload.get("side", "both")
        if side not in ("both", "buy", "sell", "bids", "asks"):
            raise OpError("invalid_side", "side must be 'both', 'buy' or 'sell'")
        fmt = state.fmt
        bids = (
            []
            if side in ("sell", "asks")
            else [[fmt(p), q] for p, q in state.book.levels("buy", depth)]
        )
        asks = (
            []
            if side in ("buy", "bids")
            else [[fmt(p), q] for p, q in state.book.levels("sell", depth)]
        )
        return {"sym": state.spec.sym, "seq": state.seq, "bids": bids, "asks": asks}

    def snapshot(self, sym: str) -> Json:
        """A full-depth ``book.snapshot`` MD message of ``sym`` as of now."""
        state = self.symbols[sym]
        fmt = state.fmt
        return {
            "type": "md",
            "ch": "book.snapshot",
            "sym": sym,
            "seq": state.seq,
            "bids": [[fmt(p), q] for p, q in state.book.levels("buy")],
            "asks": [[fmt(p), q] for p, q in state.book.levels("sell")],
            "ts_ns": self.now_ns(),
        }

    def _op_place(self, session: Session, payload: Json) -> Json:
        order, fills = self.place(session.user, payload)
        return {"order": self.order_json(order), "fills": fills}

    def place(self, user: User, payload: Json) -> tuple[Order, list[Json]]:
        """Validate and run one order; returns it and the user's fills."""
        state = self._sym(payload)
        spec = state.spec
        side = payload.get("side")
        if side not in ("buy", "sell"):
            raise OpError("invalid_side", "side must be 'buy' or 'sell'")
        otype = payload.get("type", "limit")
        if otype not in ("limit", "market"):
            raise OpError("invalid_type", "type must be 'limit' or 'market'")
        tif = payload.get("tif", "GTC")
        if tif not in ("GTC", "IOC", "FOK"):
            raise OpError("invalid_tif", "tif must be 'GTC', 'IOC' or 'FOK'")
        qty = payload.get("qty")
        if (
            not isinstance(qty, int)
            or isinstance(qty, bool)
            or qty < spec.min_qty
            or qty % spec.lot
            or qty > 10**9
        ):
            raise OpError(
                "invalid_qty",
                f"qty must be an integer >= {spec.min_qty}, a multiple of the lot {spec.lot}",
            )
        raw_price = payload.get("price")
        if otype == "limit":
            price: int | None = self._price(state, raw_price)
        elif raw_price is not None:
            raise OpError("invalid_price", "a market order takes no price")
        else:
            price = None
        coid = payload.get("client_order_id")
        if coid is not None and (
            not isinstance(coid, str) or not 0 < len(coid) <= MAX_CLIENT_ORDER_ID
        ):
            raise OpError(
                "bad_request",
                f"client_order_id must be a string of 1 to {MAX_CLIENT_ORDER_ID} characters",
            )
        now = self.now_ns()
        order = Order(
            f"o-{next(self._order_ids)}",
            coid,
            user.user_id,
            spec.sym,
            side,
            otype,
            price,
            qty,
            tif,
            now,
        )
        reason = None
        if state.status != "trading":
            reason = OpError("halted", f"{spec.sym} is halted")
        elif coid is not None and coid in user.live_by_coid:
            reason = OpError(
                "duplicate_client_order_id", f"client_order_id {coid!r} is already on a live order"
            )
        if reason is not None:
            order.status = "rejected"
            self._remember(user, order)
            self._event(
                user, "order.rejected", {"order": self.order_json(order), "reason": reason.code}
            )
            raise reason

        self._remember(user, order)
        self._event(user, "order.accepted", {"order": self.order_json(order)})
        if tif == "FOK" and state.book.available(side, price) < qty:
            executions: list[Execution] = []
            changes: dict[tuple[str, int], int] = {}
        else:
            executions, changes = state.book.match(order)
        fills = self._settle(state, executions, now)
        if changes:
            self._md_delta(state, changes, now)
        if order.live and order.order_id not in state.book.by_id:
            # IOC / market remainder, or an FOK that could not fill: cancelled.
            order.status = "cancelled"
            self._finish(user, order)
            self._event(user, "order.cancelled", {"order": self.order_json(order)})
        return order, fills

    def _remember(self, user: User, order: Order) -> None:
        user.orders[order.order_id] = order
        if order.client_order_id is not None:
            user.by_coid[order.client_order_id] = order
            if order.live:
                user.live_by_coid[order.client_order_id] = order
        if not order.live:
            self._finish(user, order)

    def _finish(self, user: User, order: Order) -> None:
        """Forget what a finished order no longer needs; bound the history."""
        coid = order.client_order_id
        if coid is not None and user.live_by_coid.get(coid) is order:
            del user.live_by_coid[coid]
        if user.simulated:
            user.orders.pop(order.order_id, None)
            user.fills.pop(order.order_id, None)
            if coid is not None and user.by_coid.get(coid) is order:
                del user.by_coid[coid]
            return
        if len(user.orders) > MAX_FINISHED_ORDERS:
            for old_id in list(itertools.islice(user.orders, len(user.orders) // 10)):
                old = user.orders[old_id]
                if not old.live:
                    del user.orders[old_id]
                    user.fills.pop(old_id, None)

    def _settle(self, state: _SymbolState, executions: list[Execution], now: int) -> list[Json]:
        """Trades on MD, fills to both owners, cash and positions updated."""
        taker_fills: list[Json] = []
        sym = state.spec.sym
        tick = state.spec.tick
        fmt = state.fmt
        for ex in executions:
            trade_id = f"t-{next(self._trade_ids)}"
            price_text = fmt(ex.price)
            price = ex.price * tick
            state.seq += 1
            seq = state.seq
            state.add_trade(now, ex.price, ex.qty, seq)
            self._publish(
                state,
                {
                    "type": "md",
                    "ch": "trade",
                    "sym": sym,
                    "seq": seq,
                    "trade_id": trade_id,
                    "price": price_text,
                    "qty": ex.qty,
                    "aggressor": ex.taker.side,
                    "ts_ns": now,
                },
            )
            for order, liquidity in ((ex.maker, "maker"), (ex.taker, "taker")):
                fill = {
                    "trade_id": trade_id,
                    "order_id": order.order_id,
                    "sym": sym,
                    "side": order.side,
                    "price": price_text,
                    "qty": ex.qty,
                    "liquidity": liquidity,
                    "ts_ns": now,
                }
                owner = self.users.get(order.user_id)
                if owner is None:
                    continue
                signed_cash = price * ex.qty
                owner.cash += -signed_cash if order.side == "buy" else signed_cash
                owner.positions.setdefault(sym, Position()).apply(order.side, price, ex.qty)
                if not owner.simulated:
                    owner.fills.setdefault(order.order_id, []).append(fill)
                if liquidity == "taker":
                    taker_fills.append(fill)
                self._event(owner, "order.fill", {"order": self.order_json(order), "fill": fill})
                if liquidity == "maker" and not order.live:
                    self._finish(owner, order)
        taker = executions[-1].taker if executions else None
        if taker is not None and taker.status == "filled":
            owner = self.users.get(taker.user_id)
            if owner is not None:
                self._finish(owner, taker)
        return taker_fills

    def _md_delta(self, state: _SymbolState, changes: dict[tuple[str, int], int], now: int) -> None:
        fmt = state.fmt
        self._publish_delta(state, [[side, fmt(p), q] for (side, p), q in changes.items()], now)

    def _publish_delta(self, state: _SymbolState, changes: list[list[Any]], now: int) -> None:
        """Publish one ``book.delta`` of wire-form changes under the symbol's next ``seq``."""
        state.seq += 1
        self._publish(
            state,
            {
                "type": "md",
                "ch": "book.delta",
                "sym": state.spec.sym,
                "seq": state.seq,
                "changes": changes,
                "ts_ns": now,
            },
        )

    def _publish(self, state: _SymbolState, msg: Json) -> None:
        if state.gap > 0:  # admin.md_gap: the seq is used, the message is not sent
            state.gap -= 1
            return
        self.sink.md(state.spec.sym, msg)

    def _event(self, user: User, kind: str, payload: Json) -> None:
        if user.simulated:  # background-flow participants have no connections
            return
        user.event_seq += 1
        self.sink.event(
            user.user_id,
            {
                "type": "event",
                "ver": PROTOCOL_VERSION,
                "event": kind,
                "seq": user.event_seq,
                "ts": rfc3339_now(),
                "payload": payload,
            },
        )

    def _op_cancel(self, session: Session, payload: Json) -> Json:
        user = session.user
        order = self._lookup(user, payload)
        if not order.live:
            raise OpError("not_found", f"order {order.order_id} is not open (it is {order.status})")
        self.cancel(user, order)
        return {"order": self.order_json(order)}

    def cancel(self, user: User, order: Order) -> None:
        """Cancel a live resting order of ``user``."""
        state = self.symbols[order.sym]
        changes = state.book.cancel(order)
        order.status = "cancelled"
        self._finish(user, order)
        if changes:
            self._md_delta(state, changes, self.now_ns())
        self._event(user, "order.cancelled", {"order": self.order_json(order)})

    def _op_list(self, session: Session, payload: Json) -> Json:
        status = payload.get("status", "open")
        if status not in ("open", "all"):
            raise OpError("bad_request", "status must be 'open' or 'all'")
        orders = session.user.orders.values()
        return {"orders": [self.order_json(o) for o in orders if status == "all" or o.live]}

    def _op_history(self, session: Session, payload: Json) -> Json:
        user = session.user
        order = self._lookup(user, payload)
        return {"order": self.order_json(order), "fills": list(user.fills.get(order.order_id, ()))}

    def _op_portfolio(self, session: Session, payload: Json) -> Json:
        user = session.user
        q = Decimal("0.000001")
        return {
            "cash": str(user.cash),
            "positions": [
                {
                    "sym": sym,
                    "qty": p.qty,
                    "avg_price": str(p.avg_price.quantize(q).normalize()),
                    "realized_pnl": str(p.realized_pnl),
                }
                for sym, p in user.positions.items()
            ],
        }

    def _op_candles(self, session: Session, payload: Json) -> Json:
        state = self._sym(payload)
        interval_ms = self._int(payload, "interval_ms", None, 1000, 86_400_000)
        if interval_ms % 1000:
            raise OpError("bad_request", "interval_ms must be a positive multiple of 1000")
        limit = self._int(payload, "limit", 50, 1, 10_000)
        since = payload.get("since_ns")
        until = payload.get("until_ns")
        for key, value in (("since_ns", since), ("until_ns", until)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise OpError("bad_request", f"'{key}' must be an integer (nanoseconds)")
        return self.candles(state.spec.sym, interval_ms, limit, since, until)

    def candles(
        self,
        sym: str,
        interval_ms: int,
        limit: int = 50,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Json:
        """Candles of ``sym`` built from its trades, oldest first.

        Only intervals with at least one trade appear. A candle is included
        when ``since_ns <= t_ns < until_ns``. ``last_seq`` is the MD ``seq``
        of the newest trade included (of any trade so far when ``until_ns``
        is not given).
        """
        state = self.symbols[sym]
        width = interval_ms * NS_PER_MS
        fmt = state.fmt
        merged: list[list[int]] = []  # newest first while building
        last_seq = 0
        for c in reversed(state.candles):
            start = c[0] - c[0] % width
            if until_ns is not None and start >= until_ns:
                continue
            if since_ns is not None and start < since_ns:
                break
            if merged and merged[-1][0] == start:
                m = merged[-1]
                m[1] = c[1]  # walking back in time: the open is the older one
                m[2] = max(m[2], c[2])
                m[3] = min(m[3], c[3])
                m[5] += c[5]
                m[6] += c[6]
            else:
                if len(merged) == limit:
                    break
                merged.append([start, c[1], c[2], c[3], c[4], c[5], c[6]])
            last_seq = max(last_seq, c[7])
        if until_ns is None:
            last_seq = state.last_trade_seq
        return {
            "sym": sym,
            "interval_ms": interval_ms,
            "last_seq": last_seq,
            "candles": [
                {
                    "t_ns": m[0],
                    "o": fmt(m[1]),
                    "h": fmt(m[2]),
                    "l": fmt(m[3]),
                    "c": fmt(m[4]),
                    "v": m[5],
                    "n": m[6],
                }
                for m in reversed(merged)
            ],
        }

    # -- admin -----------------------------------------------------------
    def _op_halt(self, session: Session, payload: Json) -> Json:
        state = self._sym(payload)
        self.halt(state.spec.sym)
        return {"sym": state.spec.sym, "status": state.status}

    def halt(self, sym: str) -> None:
        """Halt ``sym``: cancel its resting orders, reject new ones."""
        state = self.symbols[sym]
        state.status = "halted"
        for order in list(state.book.resting()):
            owner = self.users.get(order.user_id)
            if owner is not None:
                self.cancel(owner, order)
            else:  # pragma: no cover - every resting order has an owner
                state.book.cancel(order)
        self.sink.md(
            sym,
            {"type": "md", "ch": "status", "sym": sym, "status": "halted", "ts_ns": self.now_ns()},
        )

    def _op_resume(self, session: Session, payload: Json) -> Json:
        state = self._sym(payload)
        state.status = "trading"
        self.sink.md(
            state.spec.sym,
            {
                "type": "md",
                "ch": "status",
                "sym": state.spec.sym,
                "status": "trading",
                "ts_ns": self.now_ns(),
            },
        )
        return {"sym": state.spec.sym, "status": state.status}

    def _op_disconnect(self, session: Session, payload: Json) -> Json:
        user_id = payload.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise OpError("bad_request", "'user_id' must be a string")
        if user_id is not None and user_id not in self.users:
            raise OpError("not_found", f"no user {user_id!r}")
        self.sink.disconnect(user_id)
        return {"user_id": user_id}

    def _op_md_gap(self, session: Session, payload: Json) -> Json:
        state = self._sym(payload)
        state.gap += self._int(payload, "count", None, 1, 1_000_000)
        return {"sym": state.spec.sym, "count": state.gap}

    def _op_flow(self, session: Session, payload: Json) -> Json:
        rate = payload.get("rate_hz")
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 100_000:
            raise OpError("bad_request", "rate_hz must be a number from 0 to 100000")
        self.sink.set_flow(float(rate))
        return {"rate_hz": rate}

    def _op_fault(self, session: Session, payload: Json) -> Json:
        fault = payload.get("fault")
        if fault == "clear":
            self.faults.clear()
            self.sink.stall_md(0)
            return {"fault": fault}
        if fault == "md_stall":
            seconds = payload.get("seconds")
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                raise OpError("bad_request", "md_stall needs 'seconds', a number")
            if not 0 <= seconds <= 3600:
                raise OpError("bad_request", "'seconds' must be from 0 to 3600")
            self.sink.stall_md(float(seconds))
            return {"fault": fault, "seconds": seconds}
        if fault in ("delay", "drop", "fail"):
            op = payload.get("op")
            if not isinstance(op, str) or op not in self._ops or op.startswith("admin."):
                raise OpError("bad_request", "'op' must name a non-admin op")
            if fault == "delay":
                seconds = payload.get("seconds")
                if not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
                    raise OpError("bad_request", "delay needs 'seconds' from 0 to 3600")
                self.faults.delay[op] = float(seconds)
            else:
                getattr(self.faults, fault).add(op)
            return {"fault": fault, "op": op}
        if fault == "frame":
            kind = payload.get("kind")
            channel = payload.get("channel", "cmd")
            user_id = payload.get("user_id")
            if kind not in FRAME_FAULTS:
                raise OpError("bad_request", f"'kind' must be one of {', '.join(FRAME_FAULTS)}")
            if channel not in ("cmd", "md"):
                raise OpError("bad_request", "'channel' must be 'cmd' or 'md'")
            if user_id is not None and not isinstance(user_id, str):
                raise OpError("bad_request", "'user_id' must be a string")
            if kind == "bad_price":
                # A real seq, so that a client's sequencer accepts it and must
                # find the bad price itself.
                self._publish_delta(self._sym(payload), [["buy", "not-a-price", 1]], self.now_ns())
                return {"fault": fault, "kind": kind, "sockets": -1}
            sent = self.sink.inject(channel, kind, user_id)
            return {"fault": fault, "kind": kind, "sockets": sent}
        raise OpError(
            "bad_request", "'fault' must be one of clear, md_stall, delay, drop, fail, frame"
        )

    # -- wire forms --------------------------------------------------------
    def order_json(self, order: Order) -> Json:
        """Wire form of an order."""
        fmt = self.symbols[order.sym].fmt
        return {
            "order_id": order.order_id,
            "client_order_id": order.client_order_id,
            "user_id": order.user_id,
            "sym": order.sym,
            "side": order.side,
            "type": order.type,
            "price": None if order.price is None else fmt(order.price),
            "qty": order.qty,
            "filled_qty": order.filled_qty,
            "leaves_qty": order.leaves_qty,
            "status": order.status,
            "tif": order.tif,
            "ts_ns": order.ts_ns,
        }


class _NullSink:
    def md(self, sym: str, msg: Json) -> None:
        pass

    def event(self, user_id: str, frame: Json) -> None:
        pass

    def disconnect(self, user_id: str | None) -> None:
        pass

    def set_flow(self, rate_hz: float) -> None:
        pass

    def stall_md(self, seconds: float) -> None:
        pass

    def inject(self, channel: str, kind: str, user_id: str | None) -> int:
        return 0
