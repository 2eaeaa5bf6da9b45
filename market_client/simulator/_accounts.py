"""Users: tokens, the user table and its bound, cash and positions, private events, rate limits."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from .._protocol import PROTOCOL_VERSION, rfc3339_now
from ._engine import Order
from ._fields import Json, OpError
from ._limits import Limits
from ._sink import Sink

__all__ = ["ADMIN_USER_ID", "Accounts", "Position", "Session", "User"]

STARTING_CASH = Decimal("1000000")
ADMIN_USER_ID = "u-admin"
MAX_TOKEN = 200  # longer than any token this gateway issues
EVICTION_SCAN = 64  # users looked at per handshake when the table is full
_AVG_PRICE = Decimal("0.000001")


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


@dataclass(slots=True, eq=False)
class User:
    """A gateway user: created by a handshake, resumed by its token.

    ``orders`` holds the open orders and the newest finished ones in
    placement order; ``open_orders`` only the live ones; ``closed`` the ids
    of the finished ones, oldest first, so the oldest can be forgotten.
    """

    user_id: str
    is_admin: bool = False
    simulated: bool = False
    cash: Decimal = STARTING_CASH
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    open_orders: dict[str, Order] = field(default_factory=dict)
    closed: deque[str] = field(default_factory=deque)
    live_by_coid: dict[str, Order] = field(default_factory=dict)
    by_coid: dict[str, Order] = field(default_factory=dict)
    fills: dict[str, deque[Json]] = field(default_factory=dict)
    event_seq: int = 0
    bucket: float = 0.0
    bucket_ts: float = 0.0
    connections: int = 0

    @property
    def idle(self) -> bool:
        """Whether forgetting this user loses nothing that is still going on."""
        return not (self.is_admin or self.simulated or self.connections or self.open_orders)


@dataclass(slots=True)
class Session:
    """One CMD connection (or one HTTP request) of a user."""

    user: User
    logged_in: bool = False
    session_id: str = ""


class Accounts:
    """The user table with tokens, money, private events and request budgets.

    Args:
        sink: Receives private events.
        secret: Key that signs tokens.
        admin_token: Handshaking with this token yields the admin user.
        limits: ``max_users`` and ``max_connections_per_user`` apply here.
        rate_limit_hz: Requests per second per user (burst of the same size), or None.
        monotonic: Clock of the rate limit, in seconds.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        secret: bytes,
        admin_token: str | None,
        limits: Limits,
        rate_limit_hz: float | None,
        monotonic: Callable[[], float],
    ) -> None:
        self.sink = sink
        self.secret = secret
        self.admin_token = admin_token
        self._admin_bytes = admin_token.encode() if admin_token is not None else None
        self.limits = limits
        self.rate_limit_hz = rate_limit_hz
        self._monotonic = monotonic
        # Insertion order is recency: a user is moved to the end when seen.
        self.users: dict[str, User] = {}
        self._session_ids = itertools.count(1)
        self.ops: dict[str, Callable[[Session, Json], Json]] = {
            "auth.login": self._op_login,
            "portfolio.get": self._op_portfolio,
        }

    # -- tokens and the user table ------------------------------------------
    def _mac(self, user_id: str) -> bytes:
        return hmac.new(self.secret, user_id.encode(), hashlib.sha256).hexdigest()[:32].encode()

    def token_for(self, user: User) -> str:
        """The token that resumes ``user`` (the admin token for the admin)."""
        if user.is_admin and self.admin_token is not None:
            return self.admin_token
        return f"{user.user_id}.{self._mac(user.user_id).decode()}"

    def new_user(self, *, simulated: bool = False) -> User:
        """Create a user with a fresh id.

        Raises:
            OpError: ``rate_limited`` when the table is full of users that are not idle.
        """
        return self._admit(User(f"u-{secrets.token_hex(6)}", simulated=simulated))

    def user_for_token(self, token: object) -> User | None:
        """The user a token belongs to, or None for anything this gateway did not issue.

        A correctly signed token of a user this process does not remember
        (the gateway restarted with the same secret, or forgot an idle user)
        brings that user back with fresh cash.

        Raises:
            OpError: ``rate_limited`` when a user must come back but the table
                is full of users that are not idle.
        """
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN or not token.isascii():
            return None
        raw = token.encode()  # compare_digest refuses non-ASCII str: compare bytes
        if self._admin_bytes is not None and hmac.compare_digest(raw, self._admin_bytes):
            user = self.users.get(ADMIN_USER_ID)
            return user if user is not None else self._admit(User(ADMIN_USER_ID, is_admin=True))
        user_id, dot, mac = raw.rpartition(b".")
        if not dot or not user_id.startswith(b"u-"):
            return None
        uid = user_id.decode()
        if not hmac.compare_digest(mac, self._mac(uid)) or uid == ADMIN_USER_ID:
            return None
        user = self.users.pop(uid, None)
        if user is None:
            return self._admit(User(uid))
        self.users[uid] = user  # most recently seen
        return user

    def handshake(self, token: object) -> Json:
        """``POST /auth/handshake``: create (token None) or resume a user.

        Raises:
            OpError: ``unauthorized`` for a token this gateway did not issue,
                ``rate_limited`` when the user table is full.
        """
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

    def _admit(self, user: User) -> User:
        users = self.users
        if len(users) >= self.limits.max_users:
            self._evict_one()
        users[user.user_id] = user
        return user

    def _evict_one(self) -> None:
        """Forget the user idle longest; look at a few, so a handshake stays O(1)."""
        users = self.users
        for user in list(itertools.islice(users.values(), EVICTION_SCAN)):
            del users[user.user_id]
            if user.idle:
                return
            users[user.user_id] = user  # busy: look at it again last
        raise OpError(
            "rate_limited",
            f"the gateway holds {self.limits.max_users} users and none is idle; try later",
        )

    # -- connections and request budgets ------------------------------------
    def connect(self, user: User) -> bool:
        """Count one more socket of ``user``; False when it already has the most allowed."""
        if user.connections >= self.limits.max_connections_per_user:
            return False
        user.connections += 1
        return True

    def disconnect(self, user: User) -> None:
        """Count one socket of ``user`` less; its idle time starts now."""
        user.connections -= 1
        if self.users.get(user.user_id) is user:
            self.users[user.user_id] = self.users.pop(user.user_id)

    def take_request(self, user: User) -> None:
        """Spend one request of the user's token bucket.

        Raises:
            OpError: ``rate_limited`` when the bucket is empty.
        """
        rate = self.rate_limit_hz
        if rate is None:
            return
        now = self._monotonic()
        user.bucket = min(rate, user.bucket + (now - user.bucket_ts) * rate)
        user.bucket_ts = now
        if user.bucket < 1:
            raise OpError("rate_limited", f"more than {rate:g} requests per second; slow down")
        user.bucket -= 1

    # -- money and events ------------------------------------------------------
    def settle(self, user: User, sym: str, side: str, price: Decimal, qty: int) -> None:
        """Move cash and the position of ``user`` by one fill."""
        amount = price * qty
        user.cash += -amount if side == "buy" else amount
        position = user.positions.get(sym)
        if position is None:
            position = user.positions[sym] = Position()
        position.apply(side, price, qty)

    def event(self, user: User, kind: str, payload: Json) -> None:
        """Push one private event to ``user`` under its next event ``seq``."""
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

    # -- ops -----------------------------------------------------------------
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

    def _op_portfolio(self, session: Session, payload: Json) -> Json:
        user = session.user
        return {
            "cash": str(user.cash),
            "positions": [
                {
                    "sym": sym,
                    "qty": p.qty,
                    "avg_price": str(p.avg_price.quantize(_AVG_PRICE).normalize()),
                    "realized_pnl": str(p.realized_pnl),
                }
                for sym, p in user.positions.items()
            ],
        }
