"""The gateway's rules without sockets: `Exchange` and its parts driven directly.

Each test builds an exchange with empty books and a recording sink, so what
it checks (responses, MD messages, private events, admin side effects) is
exactly what the I/O layer would send. test_simulator.py keeps only what
needs a socket.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_client._wire import ERROR_CODES
from market_client.simulator import Exchange, OpError, SymbolSpec, parse_symbols
from market_client.simulator._exchange import Limits, Session, User

ADMIN = "admin-secret"
Json = dict[str, Any]


class RecordingSink:
    """Keeps everything the exchange sends besides responses."""

    def __init__(self) -> None:
        self.sent_md: list[Json] = []
        self.sent_events: list[tuple[str, Json]] = []
        self.disconnects: list[str | None] = []
        self.flows: list[float] = []
        self.stalls: list[float] = []
        self.injected: list[tuple[str, str, str | None]] = []

    def md(self, sym: str, msg: Json) -> None:
        self.sent_md.append(msg)

    def event(self, user_id: str, frame: Json) -> None:
        self.sent_events.append((user_id, frame))

    def disconnect(self, user_id: str | None) -> None:
        self.disconnects.append(user_id)

    def set_flow(self, rate_hz: float) -> None:
        self.flows.append(rate_hz)

    def stall_md(self, seconds: float) -> None:
        self.stalls.append(seconds)

    def inject(self, channel: str, kind: str, user_id: str | None) -> int:
        self.injected.append((channel, kind, user_id))
        return 1

    def md_of(self, sym: str, ch: str | None = None) -> list[Json]:
        return [m for m in self.sent_md if m["sym"] == sym and (ch is None or m["ch"] == ch)]

    def events_of(self, user: User, kind: str | None = None) -> list[Json]:
        return [
            f
            for uid, f in self.sent_events
            if uid == user.user_id and (kind is None or f["event"] == kind)
        ]


class Desk:
    """An exchange with empty books, a recording sink and helpers to call ops."""

    def __init__(self, **options: Any) -> None:
        self.sink = RecordingSink()
        options.setdefault("admin_token", ADMIN)
        self.ex = Exchange(sink=self.sink, **options)

    def user(self) -> Session:
        return Session(self.ex.new_user(), logged_in=True)

    def admin(self) -> Session:
        user = self.ex.user_for_token(ADMIN)
        assert user is not None
        return Session(user, logged_in=True)

    def call(self, session: Session, op: Any, payload: Any = None, **envelope: Any) -> Json:
        frame = {"type": "request", "msg_id": "m-1", "op": op, "payload": payload, **envelope}
        return self.ex.handle(session, frame)

    def ok(self, session: Session, op: str, payload: Json | None = None, **envelope: Any) -> Json:
        reply = self.call(session, op, payload, **envelope)
        assert reply["status"] == "ok", reply
        return dict(reply["payload"])

    def error(self, session: Session, op: Any, payload: Any = None, **envelope: Any) -> str:
        reply = self.call(session, op, payload, **envelope)
        assert reply["status"] == "error", reply
        assert set(reply["error"]) == {"code", "message"}
        code = str(reply["error"]["code"])
        assert code in ERROR_CODES
        return code

    def place(self, session: Session, **payload: Any) -> Json:
        payload.setdefault("sym", "ABC")
        return self.ok(session, "order.place", payload)


@pytest.fixture
def desk() -> Desk:
    return Desk()


# -- envelope and dispatch -------------------------------------------------------
def test_ops_before_login_are_refused(desk: Desk) -> None:
    session = Session(desk.ex.new_user())
    assert desk.error(session, "symbols.list") == "not_logged_in"
    login = desk.ok(session, "auth.login")
    assert login["user_id"] == session.user.user_id and login["session_id"].startswith("s-")
    assert login["is_admin"] is False and login["event_seq"] == 0
    assert desk.ok(session, "auth.login")["session_id"] == login["session_id"]
    assert desk.ok(session, "symbols.list")["symbols"]


@pytest.mark.parametrize(
    "frame",
    [None, 1, "text", [1, 2], True, {"msg_id": "x"}, {"op": [1]}, {"op": {}}, {"op": 7},
     {"op": None}, {"op": "symbols.list", "payload": [1]}, {"op": "symbols.list", "payload": 3},
     {"op": "symbols.list", "type": "event"}, {"op": "symbols.list", "type": [1]},
     {"op": "symbols.list", "as": "root"}, {"op": "symbols.list", "as": {}}],
)  # fmt: skip
def test_malformed_envelopes_get_bad_request(desk: Desk, frame: Any) -> None:
    reply = desk.ex.handle(desk.user(), frame)
    assert reply["status"] == "error" and reply["error"]["code"] == "bad_request"
    assert reply["op"] is None or isinstance(reply["op"], str)


def test_corr_id_echoes_string_or_integer_msg_ids(desk: Desk) -> None:
    session = desk.user()
    for msg_id, corr_id in (("a-1", "a-1"), (7, 7), (True, None), ([1], None), (1.5, None)):
        reply = desk.ex.handle(session, {"msg_id": msg_id, "op": "symbols.list"})
        assert reply["corr_id"] == corr_id and reply["status"] == "ok"
    for huge in (2**63, 2**64 - 1, -(2**63) - 1):
        reply = desk.ex.handle(session, {"msg_id": huge, "op": "symbols.list"})
        assert reply["corr_id"] is None and reply["error"]["code"] == "bad_request"
    assert desk.error(session, "no.such.op") == "unknown_op"


def test_admin_ops_need_an_admin_token_and_the_admin_role(desk: Desk) -> None:
    user, admin = desk.user(), desk.admin()
    assert admin.user.is_admin and desk.ex.token_for(admin.user) == ADMIN
    assert desk.error(user, "admin.halt", {"sym": "ABC"}, **{"as": "admin"}) == "forbidden"
    assert desk.error(admin, "admin.halt", {"sym": "ABC"}) == "forbidden"
    assert desk.error(admin, "admin.flow", {"rate_hz": -1}, **{"as": "admin"}) == "bad_request"
    assert desk.ok(admin, "admin.flow", {"rate_hz": 0}, **{"as": "admin"}) == {"rate_hz": 0}
    assert desk.sink.flows == [0.0]


def test_a_bug_in_an_op_is_internal_and_the_fail_fault_too(desk: Desk) -> None:
    session = desk.user()
    desk.ex.faults.fail.add("portfolio.get")
    assert desk.error(session, "portfolio.get") == "internal"
    desk.ex.faults.clear()
    desk.ex.orders.ops["order.list"] = lambda s, p: 1 // 0  # type: ignore[assignment,misc]
    desk.ex._ops.update(desk.ex.orders.ops)
    reply = desk.call(session, "order.list")
    assert reply["error"]["code"] == "internal" and "ZeroDivisionError" in reply["error"]["message"]


def test_rate_limit_is_a_token_bucket_per_user() -> None:
    now = [100.0]
    desk = Desk(rate_limit_hz=2, monotonic=lambda: now[0])
    one, two = desk.user(), desk.user()
    assert [desk.call(one, "symbols.list")["status"] for _ in range(3)] == ["ok", "ok", "error"]
    assert desk.error(one, "symbols.list") == "rate_limited"
    assert desk.ok(two, "symbols.list")  # another user's bucket is full
    now[0] += 0.5  # one request's worth refills
    assert desk.ok(one, "symbols.list")
    assert desk.error(one, "symbols.list") == "rate_limited"


# -- tokens and users ----------------------------------------------------------------
def test_handshake_creates_and_resumes_users(desk: Desk) -> None:
    first = desk.ex.handshake(None)
    assert first["status"] == "ok" and first["user_id"].startswith("u-")
    again = desk.ex.handshake(first["token"])
    assert again == first
    assert desk.ex.handshake(ADMIN)["is_admin"] is True


@pytest.mark.parametrize(
    "token",
    ["", "nope", "u-123.0000", "tökén", "u-abc.\u00e9" * 3, "\udcff", "x" * 10_000, 5, 1.5,
     True, [], {}, ["u-1.2"], 2**70],
)  # fmt: skip
def test_a_token_the_gateway_did_not_issue_is_unauthorized(desk: Desk, token: Any) -> None:
    issued = desk.ex.handshake(None)["token"]
    assert desk.ex.user_for_token(token) is None
    with pytest.raises(OpError, match=r"^unauthorized"):
        desk.ex.handshake(token)
    assert desk.ex.user_for_token(issued[:-1]) is None  # truncated
    assert desk.ex.user_for_token(issued[:-1] + ("0" if issued[-1] != "0" else "1")) is None
    assert desk.ex.user_for_token(ADMIN + "x") is None


def test_tokens_survive_a_restart_with_the_same_secret() -> None:
    first = Exchange(secret=b"s3cret").handshake(None)
    assert Exchange(secret=b"s3cret").handshake(first["token"])["user_id"] == first["user_id"]
    assert Exchange(secret=b"other").user_for_token(first["token"]) is None


def test_a_signed_token_cannot_name_the_admin() -> None:
    ex = Exchange(secret=b"k", admin_token=ADMIN)
    forged = ex.accounts.token_for(User("u-admin"))  # signed, but not the admin token
    assert ex.user_for_token(forged) is None


def test_the_user_table_is_bounded_and_forgets_the_longest_idle_user() -> None:
    desk = Desk(limits=Limits(max_users=3))
    admin = desk.admin()  # the admin counts but is never forgotten
    busy = desk.user()
    desk.place(busy, side="buy", price="1.00", qty=1)  # an open order: not idle
    idle = desk.ex.handshake(None)
    newest = desk.ex.handshake(None)  # the table is full: `idle` goes
    assert set(desk.ex.users) == {admin.user.user_id, busy.user.user_id, newest["user_id"]}
    # Its token still works and brings it back with fresh cash; another idle one goes.
    back = desk.ex.user_for_token(idle["token"])
    assert back is not None and back.cash == Decimal(1_000_000)
    assert newest["user_id"] not in desk.ex.users
    # A connected user is not idle either; with nobody idle, no new user.
    assert desk.ex.accounts.connect(back)
    with pytest.raises(OpError, match=r"^rate_limited"):
        desk.ex.handshake(None)
    desk.ex.accounts.disconnect(back)
    assert desk.ex.handshake(None)["status"] == "ok"


def test_sockets_per_user_are_bounded() -> None:
    desk = Desk(limits=Limits(max_connections_per_user=2))
    user = desk.ex.new_user()
    assert desk.ex.accounts.connect(user) and desk.ex.accounts.connect(user)
    assert not desk.ex.accounts.connect(user)
    desk.ex.accounts.disconnect(user)
    assert desk.ex.accounts.connect(user)


# -- reads ------------------------------------------------------------------------
def test_read_ops_on_an_empty_exchange(desk: Desk) -> None:
    session = desk.user()
    symbols = desk.ok(session, "symbols.list")["symbols"]
    assert [s["sym"] for s in symbols] == ["ABC", "XYZ", "QQQ", "ETH"]
    assert symbols[1] == {
        "sym": "XYZ",
        "tick": "0.05",
        "min_qty": 10,
        "lot": 10,
        "status": "trading",
    }
    assert desk.ok(session, "portfolio.get") == {"cash": "1000000", "positions": []}
    assert desk.ok(session, "order.list")["orders"] == []
    book = desk.ok(session, "book.get", {"sym": "ABC"})
    assert book == {"sym": "ABC", "seq": 0, "bids": [], "asks": []}
    candles = desk.ok(session, "candles.get", {"sym": "ABC", "interval_ms": 1000})
    assert candles == {"sym": "ABC", "interval_ms": 1000, "last_seq": 0, "candles": []}


def test_book_get_depth_side_and_order(desk: Desk) -> None:
    session = desk.user()
    for price in ("99.00", "98.00", "97.00"):
        desk.place(session, side="buy", price=price, qty=1)
    for price in ("101.00", "102.00"):
        desk.place(session, side="sell", price=price, qty=2)
    book = desk.ok(session, "book.get", {"sym": "ABC", "depth": 2})
    assert book["bids"] == [["99.00", 1], ["98.00", 1]]
    assert book["asks"] == [["101.00", 2], ["102.00", 2]]
    assert desk.ok(session, "book.get", {"sym": "ABC", "side": "buy"})["asks"] == []
    assert desk.ok(session, "book.get", {"sym": "ABC", "side": "sell"})["bids"] == []
    for bad, code in (
        ({"sym": "ABC", "depth": 0}, "bad_request"),
        ({"sym": "ABC", "depth": 1001}, "bad_request"),
        ({"sym": "ABC", "depth": "5"}, "bad_request"),
        ({"sym": "ABC", "depth": True}, "bad_request"),
        ({"sym": "ABC", "side": "up"}, "invalid_side"),
        ({"sym": "ABC", "side": ["buy"]}, "invalid_side"),
        ({"sym": "NOPE"}, "unknown_symbol"),
        ({"sym": 5}, "bad_request"),
        ({}, "bad_request"),
    ):
        assert desk.error(session, "book.get", bad) == code


# -- order rules -----------------------------------------------------------------------
ORDER = {"sym": "ABC", "side": "buy", "price": "1.00", "qty": 1}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"sym": "NOPE"}, "unknown_symbol"),
        ({"sym": None}, "bad_request"),
        ({"sym": ["ABC"]}, "bad_request"),
        ({"side": "hold"}, "invalid_side"),
        ({"side": None}, "invalid_side"),
        ({"side": {"a": 1}}, "invalid_side"),
        ({"type": "stop"}, "invalid_type"),
        ({"type": 1}, "invalid_type"),
        ({"tif": "DAY"}, "invalid_tif"),
        ({"tif": ["GTC"]}, "invalid_tif"),
        ({"price": "1.005"}, "invalid_price"),
        ({"price": 100.0}, "invalid_price"),
        ({"price": 100}, "invalid_price"),
        ({"price": "-1"}, "invalid_price"),
        ({"price": "0"}, "invalid_price"),
        ({"price": "abc"}, "invalid_price"),
        ({"price": "NaN"}, "invalid_price"),
        ({"price": "Infinity"}, "invalid_price"),
        ({"price": "1e30"}, "invalid_price"),
        ({"price": "1e999999999"}, "invalid_price"),
        ({"price": "1" * 65}, "invalid_price"),
        ({"price": "10000000000.01"}, "invalid_price"),  # above 1e12 ticks
        ({"price": None}, "invalid_price"),
        ({"price": [1]}, "invalid_price"),
        ({"type": "market"}, "invalid_price"),  # a market order takes no price
        ({"qty": 0}, "invalid_qty"),
        ({"qty": 1.5}, "invalid_qty"),
        ({"qty": "1"}, "invalid_qty"),
        ({"qty": True}, "invalid_qty"),
        ({"qty": None}, "invalid_qty"),
        ({"qty": 2**63}, "invalid_qty"),
        ({"qty": 2**80}, "invalid_qty"),
        ({"qty": 10**9 + 1}, "invalid_qty"),
        ({"sym": "XYZ", "qty": 15}, "invalid_qty"),  # lot 10
        ({"client_order_id": ""}, "bad_request"),
        ({"client_order_id": "x" * 65}, "bad_request"),
        ({"client_order_id": 7}, "bad_request"),
    ],
)
def test_order_validation_codes_create_nothing(desk: Desk, change: Json, code: str) -> None:
    session = desk.user()
    assert desk.error(session, "order.place", {**ORDER, **change}) == code
    assert desk.ok(session, "order.list", {"status": "all"})["orders"] == []
    assert desk.sink.sent_events == [] and desk.sink.sent_md == []


def test_place_list_cancel_history(desk: Desk) -> None:
    session = desk.user()
    placed = desk.place(session, side="buy", price="90.00", qty=2, client_order_id="c-1")
    order = placed["order"]
    assert placed["fills"] == []
    assert order["status"] == "open" and order["leaves_qty"] == 2 and order["price"] == "90.00"
    assert order["client_order_id"] == "c-1" and order["tif"] == "GTC" and order["type"] == "limit"
    (accepted,) = desk.sink.events_of(session.user, "order.accepted")
    assert accepted["payload"]["order"] == order and accepted["seq"] == 1
    assert desk.ok(session, "order.list")["orders"] == [order]
    (delta,) = desk.sink.md_of("ABC", "book.delta")
    assert delta["changes"] == [["buy", "90.00", 2]] and delta["seq"] == 1
    cancelled = desk.ok(session, "order.cancel", {"client_order_id": "c-1"})["order"]
    assert cancelled["status"] == "cancelled" and cancelled["leaves_qty"] == 0
    assert desk.sink.events_of(session.user, "order.cancelled")[0]["payload"]["order"] == cancelled
    assert desk.sink.md_of("ABC", "book.delta")[-1]["changes"] == [["buy", "90.00", 0]]
    assert desk.ok(session, "order.list")["orders"] == []
    assert desk.ok(session, "order.list", {"status": "all"})["orders"] == [cancelled]
    history = desk.ok(session, "order.history", {"order_id": order["order_id"]})
    assert history == {"order": cancelled, "fills": []}
    assert desk.error(session, "order.cancel", {"order_id": order["order_id"]}) == "not_found"
    for bad in ({}, {"order_id": 5}, {"order_id": ["o-1"]}, {"client_order_id": {}}):
        assert desk.error(session, "order.cancel", bad) == "bad_request"
        assert desk.error(session, "order.history", bad) == "bad_request"
    for bad in ({"status": "closed"}, {"status": None}, {"status": ["all"]}):
        assert desk.error(session, "order.list", bad) == "bad_request"


def test_client_order_ids_are_unique_among_live_orders_and_private(desk: Desk) -> None:
    session, other = desk.user(), desk.user()
    order = {**ORDER, "price": "50.00", "client_order_id": "k"}
    placed = desk.ok(session, "order.place", order)["order"]
    assert desk.error(session, "order.place", order) == "duplicate_client_order_id"
    (rejected,) = desk.sink.events_of(session.user, "order.rejected")
    assert rejected["payload"]["reason"] == "duplicate_client_order_id"
    assert rejected["payload"]["order"]["status"] == "rejected"
    oid = placed["order_id"]
    assert desk.error(other, "order.cancel", {"order_id": oid}) == "not_found"
    assert desk.error(other, "order.history", {"order_id": oid}) == "not_found"
    assert desk.error(other, "order.cancel", {"client_order_id": "k"}) == "not_found"
    desk.ok(session, "order.cancel", {"order_id": oid})
    again = desk.ok(session, "order.place", order)["order"]
    assert again["status"] == "open"
    # By client_order_id: the live one first, else the latest.
    assert desk.ok(session, "order.history", {"client_order_id": "k"})["order"] == again
    desk.ok(session, "order.cancel", {"client_order_id": "k"})
    latest = desk.ok(session, "order.history", {"client_order_id": "k"})["order"]
    assert latest["order_id"] == again["order_id"] and latest["status"] == "cancelled"


def test_a_rejected_duplicate_leaves_the_client_order_id_to_the_live_order(desk: Desk) -> None:
    # The safe retry: a second place with the same id is refused, and a cancel
    # by that id then reaches the live order, not the rejected duplicate.
    session = desk.user()
    order = {**ORDER, "price": "50.00", "client_order_id": "retry-1"}
    placed = desk.ok(session, "order.place", order)["order"]
    assert desk.error(session, "order.place", order) == "duplicate_client_order_id"
    live = desk.ok(session, "order.history", {"client_order_id": "retry-1"})["order"]
    assert live["order_id"] == placed["order_id"] and live["status"] == "open"
    cancelled = desk.ok(session, "order.cancel", {"client_order_id": "retry-1"})["order"]
    assert cancelled["order_id"] == placed["order_id"] and cancelled["status"] == "cancelled"
    # Finished, it is still the one the id names, not the rejected duplicate.
    again = desk.ok(session, "order.history", {"client_order_id": "retry-1"})["order"]
    assert again["order_id"] == placed["order_id"] and again["status"] == "cancelled"


def test_fills_events_positions_and_cash(desk: Desk) -> None:
    maker, taker = desk.user(), desk.user()
    desk.place(maker, side="sell", price="100.00", qty=3)
    desk.place(maker, side="sell", price="100.50", qty=5)
    result = desk.place(taker, side="buy", price="100.50", qty=10, tif="IOC")
    fills = result["fills"]
    assert [(f["price"], f["qty"], f["liquidity"]) for f in fills] == [
        ("100.00", 3, "taker"),
        ("100.50", 5, "taker"),
    ]
    assert result["order"]["status"] == "cancelled" and result["order"]["filled_qty"] == 8
    kinds = [e["event"] for e in desk.sink.events_of(taker.user)]
    assert kinds == ["order.accepted", "order.fill", "order.fill", "order.cancelled"]
    seqs = [e["seq"] for e in desk.sink.events_of(taker.user)]
    assert seqs == [1, 2, 3, 4]
    maker_fills = desk.sink.events_of(maker.user, "order.fill")
    assert [e["payload"]["fill"]["liquidity"] for e in maker_fills] == ["maker", "maker"]
    assert [e["payload"]["order"]["status"] for e in maker_fills] == ["filled", "filled"]
    # MD: the trades first, in execution order, then one delta of every level touched.
    md = desk.sink.md_of("ABC")[2:]
    assert [m["ch"] for m in md] == ["trade", "trade", "book.delta"]
    assert [(m["trade_id"], m["price"], m["qty"]) for m in md[:2]] == [
        (f["trade_id"], f["price"], f["qty"]) for f in fills
    ]
    assert all(m["aggressor"] == "buy" for m in md[:2])
    assert md[2]["changes"] == [["sell", "100.00", 0], ["sell", "100.50", 0]]
    assert [m["seq"] for m in desk.sink.md_of("ABC")] == [1, 2, 3, 4, 5]
    spent = Decimal("100.00") * 3 + Decimal("100.50") * 5
    portfolio = desk.ok(taker, "portfolio.get")
    assert Decimal(portfolio["cash"]) == Decimal(1_000_000) - spent
    assert portfolio["positions"] == [
        {"sym": "ABC", "qty": 8, "avg_price": "100.3125", "realized_pnl": "0"}
    ]
    assert desk.ok(maker, "portfolio.get")["positions"][0]["qty"] == -8
    history = desk.ok(taker, "order.history", {"order_id": result["order"]["order_id"]})
    assert history["fills"] == fills


def test_positions_realize_pnl_and_flip(desk: Desk) -> None:
    a, b = desk.user(), desk.user()
    desk.place(a, side="sell", price="10.00", qty=5)
    desk.place(b, side="buy", price="10.00", qty=5)
    desk.place(a, side="buy", price="12.00", qty=8)
    desk.place(b, side="sell", price="12.00", qty=8)
    pa, pb = desk.ok(a, "portfolio.get"), desk.ok(b, "portfolio.get")
    assert pa["positions"] == [
        {"sym": "ABC", "qty": 3, "avg_price": "12", "realized_pnl": "-10.00"}
    ]
    assert pb["positions"] == [
        {"sym": "ABC", "qty": -3, "avg_price": "12", "realized_pnl": "10.00"}
    ]
    assert pa["cash"] == "999954.00" and pb["cash"] == "1000046.00"


def test_fok_ioc_and_market_semantics(desk: Desk) -> None:
    maker, cmd = desk.user(), desk.user()
    desk.place(maker, sym="QQQ", side="sell", price="400.00", qty=5)
    desk.place(maker, sym="QQQ", side="sell", price="400.25", qty=5)
    before = desk.ok(cmd, "book.get", {"sym": "QQQ"})
    fok = desk.place(cmd, sym="QQQ", side="buy", type="market", qty=11, tif="FOK")
    assert fok["order"]["status"] == "cancelled" and fok["fills"] == []
    assert desk.ok(cmd, "book.get", {"sym": "QQQ"}) == before  # untouched, no seq used
    fok_ok = desk.place(cmd, sym="QQQ", side="buy", price="400.00", qty=5, tif="FOK")
    assert fok_ok["order"]["status"] == "filled" and sum(f["qty"] for f in fok_ok["fills"]) == 5
    market = desk.place(cmd, sym="QQQ", side="buy", type="market", qty=7)
    assert market["order"]["status"] == "cancelled" and market["order"]["filled_qty"] == 5
    assert market["order"]["price"] is None
    far = desk.place(cmd, sym="QQQ", side="buy", price="1.00", qty=3, tif="IOC")
    assert far["order"]["status"] == "cancelled" and far["order"]["filled_qty"] == 0
    assert desk.ok(cmd, "book.get", {"sym": "QQQ"})["bids"] == []


def test_price_time_priority(desk: Desk) -> None:
    first, second, taker = desk.user(), desk.user(), desk.user()
    for who in (first, second):
        desk.place(who, sym="ETH", side="sell", price="2500.0", qty=2)
    desk.place(taker, sym="ETH", side="sell", price="2499.9", qty=1)  # better price, later
    result = desk.place(taker, sym="ETH", side="buy", price="2500.0", qty=4, tif="IOC")
    assert [(f["price"], f["qty"]) for f in result["fills"]] == [
        ("2499.9", 1),
        ("2500.0", 2),
        ("2500.0", 1),
    ]
    assert (
        desk.sink.events_of(first.user, "order.fill")[0]["payload"]["order"]["status"] == "filled"
    )
    partial = desk.sink.events_of(second.user, "order.fill")[0]["payload"]["order"]
    assert partial["status"] == "partially_filled" and partial["leaves_qty"] == 1


# -- market data, candles, halts, faults -------------------------------------------------------
def test_snapshot_is_full_depth_at_the_current_seq(desk: Desk) -> None:
    session = desk.user()
    for i in range(30):
        desk.place(session, side="buy", price=f"{50 + i}.00", qty=1)
    snap = desk.ex.snapshot("ABC")
    assert snap["ch"] == "book.snapshot" and snap["seq"] == 30 and len(snap["bids"]) == 30
    assert snap["bids"][0] == ["79.00", 1] and snap["asks"] == []


def test_md_gap_uses_seqs_without_sending(desk: Desk) -> None:
    admin, session = desk.admin(), desk.user()
    reply = desk.ok(admin, "admin.md_gap", {"sym": "ABC", "count": 2}, **{"as": "admin"})
    assert reply == {"sym": "ABC", "count": 2}
    for price in ("10.00", "10.01", "10.02"):
        desk.place(session, side="buy", price=price, qty=1)
    assert [m["seq"] for m in desk.sink.md_of("ABC")] == [3]
    for bad in ({"sym": "ABC"}, {"sym": "ABC", "count": 0}, {"sym": "ABC", "count": 2**64}):
        assert desk.error(admin, "admin.md_gap", bad, **{"as": "admin"}) == "bad_request"
    # Pending gaps are bounded.
    most = desk.ex.limits.max_md_gap
    for _ in range(3):
        desk.ok(admin, "admin.md_gap", {"sym": "XYZ", "count": most}, **{"as": "admin"})
    assert desk.ex.symbols["XYZ"].gap == most


def test_candles_from_trades(desk: Desk) -> None:
    clock = iter(range(10**18, 10**18 + 10**12, 400_000_000))  # a trade every 0.4 s
    desk = Desk(clock_ns=lambda: next(clock))
    maker, taker = desk.user(), desk.user()
    for price in ("10.00", "10.02", "10.01", "10.03"):
        desk.place(maker, side="sell", price=price, qty=1)
        desk.place(taker, side="buy", type="market", qty=1)
    trades = desk.sink.md_of("ABC", "trade")
    assert [t["price"] for t in trades] == ["10.00", "10.02", "10.01", "10.03"]
    one_s = desk.ok(taker, "candles.get", {"sym": "ABC", "interval_ms": 1000})
    assert sum(c["v"] for c in one_s["candles"]) == 4 and one_s["last_seq"] == trades[-1]["seq"]
    minute = desk.ok(taker, "candles.get", {"sym": "ABC", "interval_ms": 60_000})
    (candle,) = minute["candles"]
    assert (candle["o"], candle["h"], candle["l"], candle["c"]) == (
        "10.00",
        "10.03",
        "10.00",
        "10.03",
    )
    assert (candle["v"], candle["n"]) == (4, 4)
    newest = desk.ok(taker, "candles.get", {"sym": "ABC", "interval_ms": 1000, "limit": 1})
    assert len(newest["candles"]) == 1 and newest["candles"][0] == one_s["candles"][-1]
    start = one_s["candles"][-1]["t_ns"]
    before = desk.ok(taker, "candles.get", {"sym": "ABC", "interval_ms": 1000, "until_ns": start})
    assert before["candles"] == one_s["candles"][:-1]
    assert before["last_seq"] < one_s["last_seq"]
    since = desk.ok(taker, "candles.get", {"sym": "ABC", "interval_ms": 1000, "since_ns": start})
    assert since["candles"] == one_s["candles"][-1:]
    for bad in (
        {"interval_ms": 1500},
        {"interval_ms": 0},
        {"interval_ms": "1000"},
        {"interval_ms": 1000, "limit": 10_001},
        {"interval_ms": 1000, "since_ns": "0"},
        {"interval_ms": 1000, "until_ns": 2**63},
        {"interval_ms": 1000, "until_ns": 1.5},
    ):
        assert desk.error(taker, "candles.get", {"sym": "ABC", **bad}) == "bad_request"


def test_halt_cancels_and_rejects_resume_reopens(desk: Desk) -> None:
    admin, session = desk.admin(), desk.user()
    resting = desk.place(session, side="buy", price="10.00", qty=1)["order"]
    desk.ok(admin, "admin.halt", {"sym": "ABC"}, **{"as": "admin"})
    (cancelled,) = desk.sink.events_of(session.user, "order.cancelled")
    assert cancelled["payload"]["order"]["order_id"] == resting["order_id"]
    assert [m["ch"] for m in desk.sink.md_of("ABC")][-2:] == ["book.delta", "status"]
    assert desk.sink.md_of("ABC", "status")[-1]["status"] == "halted"
    assert desk.error(session, "order.place", {**ORDER, "price": "10.00"}) == "halted"
    (rejected,) = desk.sink.events_of(session.user, "order.rejected")
    assert rejected["payload"]["reason"] == "halted"
    symbols = desk.ok(session, "symbols.list")["symbols"]
    assert symbols[0]["status"] == "halted"
    assert desk.ok(session, "book.get", {"sym": "ABC"})["bids"] == []
    desk.ok(admin, "admin.resume", {"sym": "ABC"}, **{"as": "admin"})
    assert desk.sink.md_of("ABC", "status")[-1]["status"] == "trading"
    assert desk.place(session, side="buy", price="10.00", qty=1)["order"]["status"] == "open"


def test_admin_disconnect_flow_and_faults(desk: Desk) -> None:
    admin, session = desk.admin(), desk.user()
    as_admin = {"as": "admin"}
    uid = session.user.user_id
    assert desk.ok(admin, "admin.disconnect", {"user_id": uid}, **as_admin) == {"user_id": uid}
    assert desk.ok(admin, "admin.disconnect", {}, **as_admin) == {"user_id": None}
    assert desk.sink.disconnects == [uid, None]
    assert desk.error(admin, "admin.disconnect", {"user_id": "u-none"}, **as_admin) == "not_found"
    assert desk.error(admin, "admin.disconnect", {"user_id": 5}, **as_admin) == "bad_request"

    def fault(payload: Json) -> Json:
        return desk.ok(admin, "admin.fault", payload, **as_admin)

    fault({"fault": "delay", "op": "book.get", "seconds": 0.5})
    fault({"fault": "drop", "op": "order.list"})
    fault({"fault": "fail", "op": "portfolio.get"})
    faults = desk.ex.faults
    assert (faults.delay, faults.drop, faults.fail) == (
        {"book.get": 0.5},
        {"order.list"},
        {"portfolio.get"},
    )
    assert fault({"fault": "md_stall", "seconds": 2}) == {"fault": "md_stall", "seconds": 2}
    assert fault({"fault": "frame", "kind": "not_json", "channel": "md", "user_id": uid}) == {
        "fault": "frame",
        "kind": "not_json",
        "sockets": 1,
    }
    assert desk.sink.injected == [("md", "not_json", uid)]
    assert fault({"fault": "frame", "kind": "bad_price", "sym": "ABC"})["sockets"] == -1
    (bad,) = desk.sink.md_of("ABC", "book.delta")
    assert bad["changes"] == [["buy", "not-a-price", 1]] and bad["seq"] == 1
    fault({"fault": "clear"})
    assert (faults.delay, faults.drop, faults.fail) == ({}, set(), set())
    assert desk.sink.stalls == [2.0, 0.0]
    for bad_payload in (
        {},
        {"fault": "nope"},
        {"fault": ["clear"]},
        {"fault": "delay", "op": "admin.halt", "seconds": 1},
        {"fault": "delay", "op": "no.op", "seconds": 1},
        {"fault": "delay", "op": ["book.get"], "seconds": 1},
        {"fault": "delay", "op": "book.get", "seconds": 0},
        {"fault": "delay", "op": "book.get", "seconds": True},
        {"fault": "delay", "op": "book.get", "seconds": 3601},
        {"fault": "md_stall"},
        {"fault": "md_stall", "seconds": -1},
        {"fault": "frame", "kind": "nope"},
        {"fault": "frame", "kind": "not_json", "channel": "x"},
        {"fault": "frame", "kind": "not_json", "channel": {}},
        {"fault": "frame", "kind": "not_json", "user_id": 1},
        {"fault": "frame", "kind": "bad_price"},
    ):
        assert desk.error(admin, "admin.fault", bad_payload, **as_admin) == "bad_request"


# -- every field of every op, any JSON type ----------------------------------------------------
JSON_VALUES = [None, True, 0, -1, 2**63, 2**64 - 1, 1.5, "", "x" * 300, [], [1], {}, {"a": 1}]
OPS = [
    ("book.get", ("sym", "depth", "side")),
    ("order.place", ("sym", "side", "type", "price", "qty", "tif", "client_order_id")),
    ("order.cancel", ("order_id", "client_order_id")),
    ("order.list", ("status",)),
    ("order.history", ("order_id", "client_order_id")),
    ("candles.get", ("sym", "interval_ms", "limit", "since_ns", "until_ns")),
    ("admin.halt", ("sym",)),
    ("admin.md_gap", ("sym", "count")),
    ("admin.flow", ("rate_hz",)),
    ("admin.disconnect", ("user_id",)),
    ("admin.fault", ("fault", "op", "seconds", "kind", "channel", "user_id", "sym")),
]
VALID = {
    "book.get": {"sym": "ABC"},
    "order.place": {"sym": "ABC", "side": "buy", "price": "1.00", "qty": 1},
    "order.cancel": {"order_id": "o-1"},
    "order.list": {},
    "order.history": {"order_id": "o-1"},
    "candles.get": {"sym": "ABC", "interval_ms": 1000},
    "admin.halt": {"sym": "ABC"},
    "admin.md_gap": {"sym": "ABC", "count": 1},
    "admin.flow": {"rate_hz": 1},
    "admin.disconnect": {},
    "admin.fault": {"fault": "frame", "kind": "not_json"},
}


def test_any_json_value_in_any_field_gets_an_error_code_not_internal(desk: Desk) -> None:
    admin = desk.admin()
    desk.place(admin, side="buy", price="1.00", qty=1)  # o-1 exists
    for (op, fields), value in ((o, v) for o in OPS for v in JSON_VALUES):
        for key in fields:
            reply = desk.call(admin, op, {**VALID[op], key: value}, **{"as": "admin"})
            if reply["status"] == "error":
                assert reply["error"]["code"] not in ("internal", "unknown_op"), (op, key, value)


_FUZZ_DESK = Desk()  # shared by the examples: whatever they change, no reply may be internal


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([op for op, _ in OPS]),
    st.dictionaries(
        st.sampled_from(sorted({k for _, keys in OPS for k in keys})),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
            ),
            max_leaves=5,
        ),
    ),
)
def test_random_payloads_never_get_internal(op: str, payload: Json) -> None:
    reply = _FUZZ_DESK.call(_FUZZ_DESK.admin(), op, payload, **{"as": "admin"})
    assert reply["status"] == "ok" or reply["error"]["code"] != "internal", reply


# -- symbols ------------------------------------------------------------------------------------
def test_parse_symbols() -> None:
    assert parse_symbols(None)[0].sym == "ABC"
    assert parse_symbols("XYZ,NEW")[1] == SymbolSpec("NEW", Decimal("0.01"))
    spec = parse_symbols(["BTC:0.5:30000:2"])[0]
    assert (spec.tick, spec.start_price, spec.lot, spec.min_qty) == (
        Decimal("0.5"),
        Decimal(30000),
        2,
        2,
    )
    for bad in ("abc", "A:0:1", "A:0.1:1.05", "A:x", "A:1e999999:1", ",", "A,A", "A:0.1:1:0"):
        with pytest.raises(ValueError, match="symbol"):
            parse_symbols(bad)
